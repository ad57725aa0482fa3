//! `cryptgpu matmul`: a private fixed-point matrix product between three parties.
//!
//! Party 0 inputs the left matrix, party 1 the right one (both made from the public `--seed`, as a
//! benchmark); the product is opened to party 0 alone, which checks it against f64.
//!
//! The party program ([`program`]) is generic over the transport: [`run`] drives it as three
//! in-process parties, and `cryptgpu party ... matmul` runs it as one party of three processes
//! (see [`crate::party`]), so both execute the same code.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use cryptgpu_net::{Counters, LinkModel, Transport};
use cryptgpu_ring::{Backend, FixedPoint, RingTensor};
use cryptgpu_sharing::trunc::{product_cost, TruncMode};
use cryptgpu_sharing::{run_local, KeySource, Party, RunConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::device::BackendChoice;
use crate::net::NetArgs;
use crate::party::{digest, key_label, key_source, PartyJob};

/// Arguments of `cryptgpu matmul`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Rows of the left matrix (party 0's input).
    #[arg(long, default_value_t = 512)]
    m: usize,
    /// Inner dimension.
    #[arg(long, default_value_t = 512)]
    k: usize,
    /// Columns of the right matrix (party 1's input).
    #[arg(long, default_value_t = 512)]
    n: usize,
    /// Seed of the random input matrices (entries uniform in [-1, 1]).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fractional bits of the fixed-point encoding.
    #[arg(long, default_value_t = FixedPoint::DEFAULT_FRAC_BITS)]
    frac_bits: u32,
    /// Device for the parties' local computation.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// INSECURE: derive the parties' PRG keys from this public seed instead of the OS, so that two
    /// runs (in-process and three processes) give bit-identical results. For tests only.
    #[arg(long, value_name = "SEED")]
    insecure_key_seed: Option<u64>,
    /// The links between the parties.
    #[command(flatten)]
    net: NetArgs,
    /// Print a JSON object as the last line of standard output.
    #[arg(long)]
    json: bool,
}

/// What the run measured.
#[derive(serde::Serialize)]
struct Report {
    op: &'static str,
    m: usize,
    k: usize,
    n: usize,
    backend: &'static str,
    frac_bits: u32,
    seed: u64,
    /// Wall time of the private product (slowest party).
    seconds: f64,
    /// Rounds of the private product.
    rounds: u64,
    /// Bytes each party sent during the private product.
    bytes_sent_per_party: [u64; 3],
    /// The documented cost (exact truncation): 24·m·n, 16·m·n and 16·m·n bytes.
    bytes_formula_per_party: [u64; 3],
    /// Bytes sent over the whole run (key setup, inputs, product, opening to party 0).
    total_bytes_sent_per_party: [u64; 3],
    /// Where the PRG keys came from (`os`, or `insecure-seed:S`).
    keys: String,
    /// The links' model (`--net`).
    net: LinkModel,
    /// The least time the operation takes over such links: its rounds times the latency plus the
    /// busiest link's bytes over the bandwidth.
    lower_bound_seconds: f64,
    /// Largest |revealed - f64 product of the original inputs| (at party 0, the receiver).
    max_abs_error: f64,
    /// FNV-1a digest of the revealed ring elements (compares runs bit for bit).
    result_digest: String,
}

/// One party's report in a three-process run (`cryptgpu party ... matmul`).
#[derive(serde::Serialize)]
struct PartyReport {
    op: &'static str,
    party: usize,
    m: usize,
    k: usize,
    n: usize,
    backend: &'static str,
    frac_bits: u32,
    seed: u64,
    /// Wall time of the private product at this party.
    seconds: f64,
    /// Rounds of the private product.
    rounds: u64,
    /// Bytes this party sent during the private product.
    bytes_sent: u64,
    /// The documented cost: 8·m·n bytes.
    bytes_formula: u64,
    /// Bytes this party sent over the whole run.
    total_bytes_sent: u64,
    /// Where the PRG keys came from.
    keys: String,
    /// The links' model (`--net`).
    net: LinkModel,
    /// What this party received: the product at party 0, nothing at the others.
    received: &'static [&'static str],
    /// Largest |revealed - f64 product of the inputs| (party 0 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    max_abs_error: Option<f64>,
    /// FNV-1a digest of the revealed ring elements (party 0 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    result_digest: Option<String>,
}

/// A prepared matmul job: the public parameters and the demo inputs derived from the public seed.
pub struct Job {
    args_m: usize,
    args_k: usize,
    args_n: usize,
    seed: u64,
    backend: BackendChoice,
    json: bool,
    net: LinkModel,
    keys: KeySource,
    codec: FixedPoint,
    a: Vec<f64>,
    b: Vec<f64>,
    at: RingTensor,
    bt: RingTensor,
}

/// What the party program returns: the product (at party 0, its receiver; `None` elsewhere), its
/// time and the product's traffic.
pub type PartyResult = (Option<RingTensor>, f64, Counters);

impl Job {
    /// Checks the arguments and makes the inputs (party 0's `a`, party 1's `b`).
    pub fn prepare(args: &Args) -> Result<Job> {
        if args.m == 0 || args.k == 0 || args.n == 0 {
            bail!("--m, --k and --n must be positive");
        }
        let codec = FixedPoint::new(args.frac_bits).context("invalid --frac-bits")?;
        let (m, k, n) = (args.m, args.k, args.n);
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let a: Vec<f64> = (0..m * k).map(|_| rng.gen_range(-1.0..=1.0)).collect();
        let b: Vec<f64> = (0..k * n).map(|_| rng.gen_range(-1.0..=1.0)).collect();
        let at = codec.encode_tensor(&[m, k], &a)?;
        let bt = codec.encode_tensor(&[k, n], &b)?;
        Ok(Job {
            args_m: m,
            args_k: k,
            args_n: n,
            seed: args.seed,
            backend: args.backend,
            json: args.json,
            net: args.net.link,
            keys: key_source(args.insecure_key_seed)?,
            codec,
            a,
            b,
            at,
            bt,
        })
    }

    /// The f64 product of the original inputs and the largest error of `revealed` against it.
    fn max_abs_error(&self, revealed: &RingTensor) -> f64 {
        let (m, k, n) = (self.args_m, self.args_k, self.args_n);
        let revealed = self.codec.decode_tensor(revealed);
        let mut exact = vec![0.0f64; m * n];
        // SAFETY: the pointers cover m*k, k*n and m*n elements with the given row-major strides.
        unsafe {
            matrixmultiply::dgemm(
                m,
                k,
                n,
                1.0,
                self.a.as_ptr(),
                k as isize,
                1,
                self.b.as_ptr(),
                n as isize,
                1,
                0.0,
                exact.as_mut_ptr(),
                n as isize,
                1,
            );
        }
        revealed.iter().zip(&exact).map(|(r, e)| (r - e).abs()).fold(0.0, f64::max)
    }
}

/// The party program: party 0 inputs `a`, party 1 inputs `b`; they multiply privately (timed)
/// and open the product to party 0 only. Every party runs it with the same job.
pub fn program<B: Backend, T: Transport>(p: &mut Party<B, T>, job: &Job) -> cryptgpu_sharing::Result<PartyResult> {
    let (a, b) = (&job.at, &job.bt);
    let x = p.input(0, (p.id() == 0).then_some(a), a.shape())?;
    let y = p.input(1, (p.id() == 1).then_some(b), b.shape())?;
    let before = p.counters();
    let start = Instant::now();
    let z = p.matmul_fp(&x, &y)?;
    let seconds = start.elapsed().as_secs_f64();
    let cost = p.counters().since(&before);
    Ok((p.reveal_to(&z, 0)?, seconds, cost))
}

impl PartyJob for Job {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn public_params(&self) -> String {
        format!(
            "matmul m={} k={} n={} seed={} frac_bits={}",
            self.args_m,
            self.args_k,
            self.args_n,
            self.seed,
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
        let (m, k, n) = (self.args_m, self.args_k, self.args_n);
        let report = PartyReport {
            op: "matmul",
            party: p.id(),
            m,
            k,
            n,
            backend: p.backend().name(),
            frac_bits: self.codec.frac_bits(),
            seed: self.seed,
            seconds,
            rounds: cost.rounds,
            bytes_sent: cost.bytes_sent,
            bytes_formula: product_cost(p.trunc_mode(), p.id()).1 * (m * n) as u64,
            total_bytes_sent: p.counters().bytes_sent,
            keys: key_label(self.keys),
            net: self.net,
            received: if revealed.is_some() { &["product"] } else { &[] },
            max_abs_error: revealed.as_ref().map(|r| self.max_abs_error(r)),
            result_digest: revealed.as_ref().map(|r| digest(r.data())),
        };
        println!("party {}: private matmul {m}x{k} · {k}x{n} on {}", report.party, report.backend);
        println!("  time           {:.4} s", report.seconds);
        println!("  rounds         {}", report.rounds);
        println!("  bytes sent     {} (formula {})", report.bytes_sent, report.bytes_formula);
        match (report.max_abs_error, &report.result_digest) {
            (Some(e), Some(d)) => {
                println!("  max |error|    {e:.3e} against f64");
                println!("  result digest  {d}");
            }
            _ => println!("  received       nothing (the product was opened to party 0 alone)"),
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
    let (m, k, n) = (job.args_m, job.args_k, job.args_n);
    let device = args.backend.open()?;
    let backend = device.name();
    let config = RunConfig { codec: job.codec, keys: job.keys, net: job.net, ..RunConfig::default() };
    let out = run_local(device, config, |p| program(p, &job))?;

    let revealed = out[0].value.0.as_ref().context("party 0 received no product")?;
    let costs: [Counters; 3] = std::array::from_fn(|i| out[i].value.2);
    let report = Report {
        op: "matmul",
        m,
        k,
        n,
        backend,
        frac_bits: job.codec.frac_bits(),
        seed: args.seed,
        seconds: out.iter().map(|o| o.value.1).fold(0.0, f64::max),
        rounds: costs[0].rounds,
        bytes_sent_per_party: costs.map(|c| c.bytes_sent),
        bytes_formula_per_party: std::array::from_fn(|i| product_cost(TruncMode::default(), i).1 * (m * n) as u64),
        total_bytes_sent_per_party: std::array::from_fn(|i| out[i].counters.bytes_sent),
        keys: key_label(job.keys),
        net: job.net,
        lower_bound_seconds: job.net.lower_bound(&costs).as_secs_f64(),
        max_abs_error: job.max_abs_error(revealed),
        result_digest: digest(revealed.data()),
    };
    println!("private matmul {m}x{k} · {k}x{n} on {backend}, {} fractional bits", report.frac_bits);
    println!("  time           {:.4} s", report.seconds);
    if !job.net.is_none() {
        println!("  links          --net {} (lower bound {:.4} s)", job.net, report.lower_bound_seconds);
    }
    println!("  rounds         {}", report.rounds);
    println!(
        "  bytes sent     {:?} per party (formula {:?})",
        report.bytes_sent_per_party, report.bytes_formula_per_party
    );
    println!("  max |error|    {:.3e} against f64", report.max_abs_error);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
