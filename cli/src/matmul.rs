//! `cryptgpu matmul`: a private fixed-point matrix product between three in-process parties.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use cryptgpu_net::Counters;
use cryptgpu_ring::{Backend, FixedPoint, RingTensor};
use cryptgpu_sharing::trunc::{product_cost, TruncMode};
use cryptgpu_sharing::{run_local, RunConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::device::BackendChoice;
use crate::with_backend;

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
    /// Bytes sent over the whole run (key setup, inputs, product, reveal).
    total_bytes_sent_per_party: [u64; 3],
    /// Largest |revealed - f64 product of the original inputs|.
    max_abs_error: f64,
}

type PartyResult = (RingTensor, f64, Counters);

/// Party 0 inputs `a`, party 1 inputs `b`; they multiply privately (timed) and reveal.
fn private_matmul<B: Backend>(
    be: B,
    config: RunConfig,
    a: &RingTensor,
    b: &RingTensor,
) -> Result<[cryptgpu_sharing::PartyOutput<PartyResult>; 3]> {
    Ok(run_local(be, config, |p| {
        let x = p.input(0, (p.id() == 0).then_some(a), a.shape())?;
        let y = p.input(1, (p.id() == 1).then_some(b), b.shape())?;
        let before = p.counters();
        let start = Instant::now();
        let z = p.matmul_fp(&x, &y)?;
        let seconds = start.elapsed().as_secs_f64();
        let cost = p.counters().since(&before);
        Ok((p.reveal(&z)?, seconds, cost))
    })?)
}

pub fn run(args: &Args) -> Result<()> {
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
    let device = args.backend.open()?;
    let backend = device.name();
    let config = RunConfig { codec, ..RunConfig::default() };
    let out = with_backend!(device, be => private_matmul(be, config, &at, &bt)?);

    let revealed = codec.decode_tensor(&out[0].value.0);
    let mut exact = vec![0.0f64; m * n];
    // SAFETY: the pointers cover m*k, k*n and m*n elements with the given row-major strides.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            exact.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    let max_abs_error = revealed.iter().zip(&exact).map(|(r, e)| (r - e).abs()).fold(0.0, f64::max);
    let costs: [Counters; 3] = std::array::from_fn(|i| out[i].value.2);
    let report = Report {
        op: "matmul",
        m,
        k,
        n,
        backend,
        frac_bits: codec.frac_bits(),
        seed: args.seed,
        seconds: out.iter().map(|o| o.value.1).fold(0.0, f64::max),
        rounds: costs[0].rounds,
        bytes_sent_per_party: costs.map(|c| c.bytes_sent),
        bytes_formula_per_party: std::array::from_fn(|i| product_cost(TruncMode::default(), i).1 * (m * n) as u64),
        total_bytes_sent_per_party: std::array::from_fn(|i| out[i].counters.bytes_sent),
        max_abs_error,
    };
    println!("private matmul {m}x{k} · {k}x{n} on {backend}, {} fractional bits", report.frac_bits);
    println!("  time           {:.4} s", report.seconds);
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
