//! `cryptgpu softmax`: private softmax of an R x C matrix of logits between three in-process parties.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use cryptgpu_net::Counters;
use cryptgpu_ring::{Backend, FixedPoint, RingTensor};
use cryptgpu_sharing::approx::SoftmaxConfig;
use cryptgpu_sharing::{run_local, PartyOutput, RunConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::device::BackendChoice;

/// Arguments of `cryptgpu softmax`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Rows (independent softmaxes).
    #[arg(long, default_value_t = 128)]
    rows: usize,
    /// Classes (the softmax axis).
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Logits are uniform in [-range, range].
    #[arg(long, default_value_t = 30.0)]
    range: f64,
    /// Seed of the random logits.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fractional bits of the fixed-point encoding.
    #[arg(long, default_value_t = FixedPoint::DEFAULT_FRAC_BITS)]
    frac_bits: u32,
    /// Device for the parties' local computation.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Print a JSON object as the last line of standard output.
    #[arg(long)]
    json: bool,
}

/// What the run measured.
#[derive(serde::Serialize)]
struct Report {
    op: &'static str,
    rows: usize,
    classes: usize,
    backend: &'static str,
    frac_bits: u32,
    seed: u64,
    /// Wall time of the private softmax (slowest party).
    seconds: f64,
    /// Rounds of the private softmax.
    rounds: u64,
    /// Bytes each party sent during the private softmax.
    bytes_sent_per_party: [u64; 3],
    /// Largest |revealed - f64 softmax of the original logits|.
    max_abs_error: f64,
}

type PartyResult = (Option<RingTensor>, f64, Counters);

/// Party 0 inputs the logits; the parties compute the softmax privately (timed) and open it to
/// party 0 only.
fn private_softmax<B: Backend>(be: B, config: RunConfig, x: &RingTensor) -> Result<[PartyOutput<PartyResult>; 3]> {
    Ok(run_local(be, config, |p| {
        let xs = p.input(0, (p.id() == 0).then_some(x), x.shape())?;
        let before = p.counters();
        let start = Instant::now();
        let y = p.softmax(&xs, &SoftmaxConfig::default())?;
        let seconds = start.elapsed().as_secs_f64();
        let cost = p.counters().since(&before);
        Ok::<_, cryptgpu_sharing::SharingError>((p.reveal_to(&y, 0)?, seconds, cost))
    })?)
}

pub fn run(args: &Args) -> Result<()> {
    if args.rows == 0 || args.classes == 0 {
        bail!("--rows and --classes must be positive");
    }
    if !(args.range.is_finite() && args.range >= 0.0 && args.range <= 256.0) {
        bail!("--range must lie in [0, 256]");
    }
    let codec = FixedPoint::new(args.frac_bits).context("invalid --frac-bits")?;
    let (r, c) = (args.rows, args.classes);
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let logits: Vec<f64> = (0..r * c).map(|_| rng.gen_range(-args.range..=args.range)).collect();
    let xt = codec.encode_tensor(&[r, c], &logits)?;
    let device = args.backend.open()?;
    let backend = device.name();
    let config = RunConfig { codec, ..RunConfig::default() };
    let out = private_softmax(device, config, &xt)?;

    let revealed = codec.decode_tensor(out[0].value.0.as_ref().context("party 0 received no softmax")?);
    let mut max_abs_error = 0.0f64;
    for (row, got) in logits.chunks(c).zip(revealed.chunks(c)) {
        let m = row.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        for (g, v) in got.iter().zip(&e) {
            max_abs_error = max_abs_error.max((g - v / s).abs());
        }
    }
    let costs: [Counters; 3] = std::array::from_fn(|i| out[i].value.2);
    let report = Report {
        op: "softmax",
        rows: r,
        classes: c,
        backend,
        frac_bits: codec.frac_bits(),
        seed: args.seed,
        seconds: out.iter().map(|o| o.value.1).fold(0.0, f64::max),
        rounds: costs[0].rounds,
        bytes_sent_per_party: costs.map(|c| c.bytes_sent),
        max_abs_error,
    };
    println!("private softmax of {r} x {c} logits in [-{}, {}] on {backend}", args.range, args.range);
    println!("  time           {:.4} s", report.seconds);
    println!("  rounds         {}", report.rounds);
    println!("  bytes sent     {:?} per party", report.bytes_sent_per_party);
    println!("  max |error|    {:.3e} against f64", report.max_abs_error);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
