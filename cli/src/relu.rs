//! `cryptgpu relu`: private ReLU of N fixed-point values between three parties.
//!
//! The party program ([`program`]) is generic over the transport: [`run`] drives it as three
//! in-process parties, and `cryptgpu party ... relu` runs it as one party of three processes
//! (see [`crate::party`]), so both execute the same code.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use cryptgpu_net::{Counters, LinkModel, Transport};
use cryptgpu_ring::{Backend, FixedPoint, RingTensor};
use cryptgpu_sharing::compare::{relu_cost, relu_pieces};
use cryptgpu_sharing::convert::MsbVariant;
use cryptgpu_sharing::timing::peak_rss_bytes;
use cryptgpu_sharing::{run_local, KeySource, Party, RunConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::device::BackendChoice;
use crate::net::NetArgs;
use crate::party::{digest, key_label, key_source, PartyJob};

/// Arguments of `cryptgpu relu`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Number of values (party 0's input).
    #[arg(long, default_value_t = 1 << 20)]
    n: usize,
    /// Inputs are uniform in [-range, range].
    #[arg(long, default_value_t = 8.0)]
    range: f64,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fractional bits of the fixed-point encoding.
    #[arg(long, default_value_t = FixedPoint::DEFAULT_FRAC_BITS)]
    frac_bits: u32,
    /// `lean` (7-round MSB + 2-round x·b: 9 rounds, fewer bytes) or `low-latency` (6-round MSB +
    /// 1-round x·b: 7 rounds).
    #[arg(long, value_enum, default_value_t = MsbChoice::Lean)]
    msb: MsbChoice,
    /// Device for the parties' local computation.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// INSECURE: derive the parties' PRG keys from this public seed instead of the OS, so that two
    /// runs (in-process and three processes) give bit-identical shares. For tests only.
    #[arg(long, value_name = "SEED")]
    insecure_key_seed: Option<u64>,
    /// The links between the parties.
    #[command(flatten)]
    net: NetArgs,
    /// Print a JSON object as the last line of standard output.
    #[arg(long)]
    json: bool,
}

/// Which MSB protocol the ReLU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MsbChoice {
    /// ReLU in 9 rounds, about 47.6 B per element per party.
    Lean,
    /// ReLU in 7 rounds, about 61.0 B per element per party.
    LowLatency,
}

impl MsbChoice {
    fn variant(self) -> MsbVariant {
        match self {
            MsbChoice::Lean => MsbVariant::Lean,
            MsbChoice::LowLatency => MsbVariant::LowLatency,
        }
    }

    fn name(self) -> &'static str {
        match self {
            MsbChoice::Lean => "lean",
            MsbChoice::LowLatency => "low-latency",
        }
    }
}

/// What the run measured.
#[derive(serde::Serialize)]
struct Report {
    op: &'static str,
    n: usize,
    backend: &'static str,
    /// The MSB protocol (`lean` or `low-latency`).
    msb: &'static str,
    frac_bits: u32,
    seed: u64,
    /// Wall time of the private ReLU (slowest party).
    seconds: f64,
    /// Rounds of the private ReLU (MSB + `x * [b]`, per piece of `RELU_PIECE` elements).
    rounds: u64,
    /// Pieces the ReLU ran in (`relu_pieces`).
    pieces: u64,
    /// Bytes each party sent during the private ReLU.
    bytes_sent_per_party: [u64; 3],
    /// The documented ReLU cost per party (`relu_cost`).
    bytes_formula_per_party: [u64; 3],
    /// ReLU bytes per element, averaged over the parties.
    bytes_per_element_per_party: f64,
    /// Where the PRG keys came from (`os`, or `insecure-seed:S`).
    keys: String,
    /// The links' model (`--net`).
    net: LinkModel,
    /// The least time the operation takes over such links: its rounds times the latency plus the
    /// busiest link's bytes over the bandwidth.
    lower_bound_seconds: f64,
    /// Outputs that differ from the plaintext ReLU of the encoded input (bit-exact comparison, at
    /// party 0, the receiver).
    mismatches: usize,
    /// FNV-1a digest of the revealed ring elements (compares runs bit for bit).
    result_digest: String,
    /// The process's peak resident memory (the three parties together, inputs and outputs
    /// included; Linux only).
    peak_rss_bytes: Option<u64>,
}

/// One party's report in a three-process run (`cryptgpu party ... relu`).
#[derive(serde::Serialize)]
struct PartyReport {
    op: &'static str,
    party: usize,
    n: usize,
    backend: &'static str,
    msb: &'static str,
    frac_bits: u32,
    seed: u64,
    /// Wall time of the private ReLU at this party.
    seconds: f64,
    /// Rounds of the private ReLU.
    rounds: u64,
    /// Pieces the ReLU ran in (`relu_pieces`).
    pieces: u64,
    /// Bytes this party sent during the private ReLU.
    bytes_sent: u64,
    /// The documented ReLU cost of this party.
    bytes_formula: u64,
    /// Bytes this party sent over the whole run.
    total_bytes_sent: u64,
    /// Where the PRG keys came from.
    keys: String,
    /// The links' model (`--net`).
    net: LinkModel,
    /// What this party received: the ReLU at party 0, nothing at the others.
    received: &'static [&'static str],
    /// Outputs that differ from the plaintext ReLU of the encoded input (party 0 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    mismatches: Option<usize>,
    /// FNV-1a digest of the revealed ring elements (party 0 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    result_digest: Option<String>,
}

/// What the party program returns: the ReLU (at party 0, its receiver; `None` elsewhere), its
/// time and its traffic.
pub type PartyResult = (Option<RingTensor>, f64, Counters);

/// A prepared ReLU job: the public parameters; party 0's demo input comes from the public seed
/// ([`input`](Job::input)), made when it is shared and again for the check, so no copy stays
/// alive during the ReLU.
pub struct Job {
    n: usize,
    range: f64,
    seed: u64,
    msb: MsbChoice,
    backend: BackendChoice,
    json: bool,
    net: LinkModel,
    keys: KeySource,
    codec: FixedPoint,
}

impl Job {
    /// Checks the arguments (the input is made on demand).
    pub fn prepare(args: &Args) -> Result<Job> {
        if args.n == 0 {
            bail!("--n must be positive");
        }
        if !(args.range.is_finite() && args.range > 0.0) {
            bail!("--range must be a positive number");
        }
        let codec = FixedPoint::new(args.frac_bits).context("invalid --frac-bits")?;
        let n = args.n;
        for v in [-args.range, args.range] {
            codec.encode(v).context("--range too large for the encoding")?;
        }
        Ok(Job {
            n,
            range: args.range,
            seed: args.seed,
            msb: args.msb,
            backend: args.backend,
            json: args.json,
            net: args.net.link,
            keys: key_source(args.insecure_key_seed)?,
            codec,
        })
    }

    /// Party 0's input: `n` values uniform in `[-range, range]` from the public seed, encoded
    /// (`prepare` checked that both ends encode).
    fn input(&self) -> cryptgpu_ring::Result<RingTensor> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let data = (0..self.n)
            .map(|_| self.codec.encode(rng.gen_range(-self.range..=self.range)))
            .collect::<cryptgpu_ring::Result<Vec<u64>>>();
        RingTensor::new(&[self.n], data?)
    }

    /// Outputs that differ from the plaintext ReLU of the encoded input.
    fn mismatches(&self, revealed: &RingTensor) -> cryptgpu_ring::Result<usize> {
        let x = self.input()?;
        Ok(x.data().iter().zip(revealed.data()).filter(|(&x, &y)| y != if (x as i64) < 0 { 0 } else { x }).count())
    }
}

/// The party program: party 0 inputs `x`; the parties compute ReLU privately (timed,
/// [`Party::relu_values`]: the DReLU bits are not needed) and open it to party 0 only.
pub fn program<B: Backend, T: Transport>(p: &mut Party<B, T>, job: &Job) -> cryptgpu_sharing::Result<PartyResult> {
    let x = if p.id() == 0 { Some(job.input()?) } else { None };
    let xs = p.input(0, x.as_ref(), &[job.n])?;
    drop(x);
    let before = p.counters();
    let start = Instant::now();
    let y = p.relu_values(&xs, job.msb.variant())?;
    drop(xs);
    let seconds = start.elapsed().as_secs_f64();
    let cost = p.counters().since(&before);
    Ok((p.reveal_to(&y, 0)?, seconds, cost))
}

impl PartyJob for Job {
    fn name(&self) -> &'static str {
        "relu"
    }

    fn public_params(&self) -> String {
        format!(
            "relu n={} range={} seed={} msb={} frac_bits={}",
            self.n,
            self.range,
            self.seed,
            self.msb.name(),
            self.codec.frac_bits()
        )
    }

    fn codec(&self) -> FixedPoint {
        self.codec
    }

    fn keys(&self) -> KeySource {
        self.keys
    }

    fn backend(&self) -> BackendChoice {
        self.backend
    }

    fn net(&self) -> LinkModel {
        self.net
    }

    fn run_party<B: Backend, T: Transport>(&self, p: &mut Party<B, T>) -> Result<()> {
        let (revealed, seconds, cost) = program(p, self)?;
        let n = self.n;
        let report = PartyReport {
            op: "relu",
            party: p.id(),
            n,
            backend: p.backend().name(),
            msb: self.msb.name(),
            frac_bits: self.codec.frac_bits(),
            seed: self.seed,
            seconds,
            rounds: cost.rounds,
            pieces: relu_pieces(n),
            bytes_sent: cost.bytes_sent,
            bytes_formula: relu_cost(self.msb.variant(), p.id(), n).1,
            total_bytes_sent: p.counters().bytes_sent,
            keys: key_label(self.keys),
            net: self.net,
            received: if revealed.is_some() { &["relu"] } else { &[] },
            mismatches: revealed.as_ref().map(|r| self.mismatches(r)).transpose()?,
            result_digest: revealed.as_ref().map(|r| digest(r.data())),
        };
        println!("party {}: private ReLU of {n} values on {} ({} MSB)", report.party, report.backend, report.msb);
        println!("  time           {:.4} s", report.seconds);
        println!("  rounds         {} ({} piece(s))", report.rounds, report.pieces);
        println!("  bytes sent     {} (formula {})", report.bytes_sent, report.bytes_formula);
        match (report.mismatches, &report.result_digest) {
            (Some(m), Some(d)) => {
                println!("  mismatches     {m} against the plaintext ReLU");
                println!("  result digest  {d}");
            }
            _ => println!("  received       nothing (the ReLU was opened to party 0 alone)"),
        }
        if self.json {
            println!("{}", serde_json::to_string(&report)?);
        }
        Ok(())
    }
}

/// The in-process driver: the three parties on threads.
pub fn run(args: &Args) -> Result<()> {
    let job = Job::prepare(args)?;
    let (n, codec) = (job.n, job.codec);
    let device = args.backend.open()?;
    let backend = device.name();
    let config = RunConfig { codec, keys: job.keys, net: job.net, ..RunConfig::default() };
    let out = run_local(device, config, |p| program(p, &job))?;

    let revealed = out[0].value.0.as_ref().context("party 0 received no result")?;
    let mismatches = job.mismatches(revealed)?;
    let costs: [Counters; 3] = std::array::from_fn(|i| out[i].value.2);
    let bytes = costs.map(|c| c.bytes_sent);
    let report = Report {
        op: "relu",
        n,
        backend,
        msb: args.msb.name(),
        frac_bits: codec.frac_bits(),
        seed: args.seed,
        seconds: out.iter().map(|o| o.value.1).fold(0.0, f64::max),
        rounds: costs[0].rounds,
        pieces: relu_pieces(n),
        bytes_sent_per_party: bytes,
        bytes_formula_per_party: std::array::from_fn(|i| relu_cost(args.msb.variant(), i, n).1),
        bytes_per_element_per_party: bytes.iter().sum::<u64>() as f64 / (3 * n) as f64,
        keys: key_label(job.keys),
        net: job.net,
        lower_bound_seconds: job.net.lower_bound(&costs).as_secs_f64(),
        mismatches,
        result_digest: digest(revealed.data()),
        peak_rss_bytes: peak_rss_bytes(),
    };
    println!("private ReLU of {n} values on {backend}, {} fractional bits", report.frac_bits);
    println!("  time           {:.4} s", report.seconds);
    if !job.net.is_none() {
        println!("  links          --net {} (lower bound {:.4} s)", job.net, report.lower_bound_seconds);
    }
    println!(
        "  rounds         {} ({} MSB, {} piece(s); documented {})",
        report.rounds,
        report.msb,
        report.pieces,
        relu_cost(args.msb.variant(), 0, n).0
    );
    println!(
        "  bytes sent     {:?} per party (formula {:?}; {:.2} B per element per party)",
        report.bytes_sent_per_party, report.bytes_formula_per_party, report.bytes_per_element_per_party
    );
    if let Some(peak) = report.peak_rss_bytes {
        println!(
            "  peak memory    {:.2} GB ({:.1} B per element per party)",
            peak as f64 / 1e9,
            peak as f64 / (3 * n) as f64
        );
    }
    println!("  mismatches     {} against the plaintext ReLU", report.mismatches);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
