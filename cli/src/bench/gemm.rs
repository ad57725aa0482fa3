//! `cryptgpu bench gemm`: the ring GEMM paths of the GPU (f64 limbs, int8 limbs, SIMT), or the CPU.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_kernels_cuda::{CudaBackend, GemmPath};
use cryptgpu_ring::{Backend, RingTensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use cryptgpu::device::AnyBackend;

use crate::device::{gpu_info, BackendChoice};

/// Arguments of `cryptgpu bench gemm`.
#[derive(ClapArgs, Debug)]
pub struct GemmArgs {
    /// Device.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Matrix size n (the product is n x n by n x n).
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Timed repetitions (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Print a JSON object as the last line of standard output.
    #[arg(long)]
    json: bool,
    /// Also write the JSON object to `DIR/gemm.json`.
    #[arg(long, value_name = "DIR")]
    out: Option<std::path::PathBuf>,
}

/// Dense datasheet peaks (FP64 tensor-core TFLOP/s, INT8 tensor-core TOP/s) by GPU name.
fn peaks(name: &str) -> Option<(f64, f64)> {
    let n = name.to_ascii_uppercase();
    if n.contains("H200") {
        Some((67.0, 1979.0))
    } else if n.contains("H100") && n.contains("PCIE") {
        Some((51.0, 1513.0))
    } else if n.contains("H100") {
        Some((67.0, 1979.0))
    } else if n.contains("A100") {
        Some((19.5, 624.0))
    } else {
        None
    }
}

/// One timed configuration.
#[derive(serde::Serialize)]
struct GemmResult {
    path: String,
    seconds_median: f64,
    seconds_min: f64,
    seconds_max: f64,
    ring_macs_per_second: f64,
    /// Limb GEMM products per ring product (10 for f64 limbs, 36 for int8 digits).
    limb_products: Option<u32>,
    /// Achieved limb-product FLOP/s over the FP64 tensor-core peak (f64 path).
    fp64_tc_peak_fraction: Option<f64>,
    /// Achieved limb-product OP/s over the INT8 tensor-core peak (int8 path).
    int8_tc_peak_fraction: Option<f64>,
    /// The product checked against the CPU by a random projection.
    verified: bool,
}

fn time_gemm<B: Backend>(
    be: &B,
    a: &RingTensor,
    b: &RingTensor,
    reps: usize,
    sync: impl Fn() -> Result<()>,
) -> Result<(Vec<f64>, bool)> {
    let (da, db) = (be.upload(a)?, be.upload(b)?);
    let warm = be.matmul(&da, &db, false, false)?;
    sync()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        let c = be.matmul(&da, &db, false, false)?;
        sync()?;
        times.push(start.elapsed().as_secs_f64());
        drop(c);
    }
    let c = be.download(&warm)?;
    Ok((times, verify(a, b, &c)?))
}

/// Checks C = A·B by comparing C·v with A·(B·v) for a random vector v (exact in the ring).
fn verify(a: &RingTensor, b: &RingTensor, c: &RingTensor) -> Result<bool> {
    let cpu = CpuBackend;
    let n = b.shape()[1];
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let v = RingTensor::from_fn(&[n, 1], |_| rng.gen());
    let bv = cpu.matmul(b, &v, false, false)?;
    let abv = cpu.matmul(a, &bv, false, false)?;
    Ok(cpu.matmul(c, &v, false, false)? == abv)
}

/// `cryptgpu bench gemm`.
pub fn gemm(args: &GemmArgs) -> Result<()> {
    if args.size == 0 || args.reps == 0 {
        bail!("--size and --reps must be positive");
    }
    let s = args.size;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let a = RingTensor::from_fn(&[s, s], |_| rng.gen());
    let b = RingTensor::from_fn(&[s, s], |_| rng.gen());
    let macs = (s as f64).powi(3);
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("--out: creating {}", dir.display()))?;
    }
    let device = args.backend.open()?;
    let mut results = Vec::new();
    // Shapes on which `Auto` fell back from the int8 to the f64 limb path (none while paths are forced).
    let mut fallbacks = Vec::new();
    let mut record = |path: String, times: Vec<f64>, verified: bool, limbs: Option<u32>, peak: Option<(f64, f64)>| {
        let mut t = times.clone();
        t.sort_by(f64::total_cmp);
        let med = t[t.len() / 2];
        let rate = macs / med;
        let (fp64, int8) = match (limbs, peak) {
            (Some(10), Some((p64, _))) => (Some(rate * 10.0 * 2.0 / (p64 * 1e12)), None),
            (Some(36), Some((_, p8))) => (None, Some(rate * 36.0 * 2.0 / (p8 * 1e12))),
            _ => (None, None),
        };
        results.push(GemmResult {
            path,
            seconds_median: med,
            seconds_min: t[0],
            seconds_max: t[t.len() - 1],
            ring_macs_per_second: rate,
            limb_products: limbs,
            fp64_tc_peak_fraction: fp64,
            int8_tc_peak_fraction: int8,
            verified,
        });
    };
    match &device {
        AnyBackend::Cpu(be) => {
            let (t, ok) = time_gemm(be, &a, &b, args.reps, || Ok(()))?;
            record("cpu".into(), t, ok, None, None);
        }
        AnyBackend::Cuda(be) => {
            let peak = peaks(&be.info().name);
            for (path, limbs) in [(GemmPath::F64Limbs, Some(10)), (GemmPath::I8Limbs, Some(36)), (GemmPath::Simt, None)]
            {
                let dev: CudaBackend = be.clone().with_gemm_path(path);
                let (t, ok) = time_gemm(&dev, &a, &b, args.reps, || Ok(dev.synchronize()?))?;
                record(format!("{path:?}"), t, ok, limbs, peak);
            }
            fallbacks = be.gemm_fallbacks();
        }
    }
    println!("ring GEMM {s}x{s}x{s} on {}", device.name());
    for r in &results {
        println!(
            "  {:<9} median {:.4} s  {:.3e} ring MAC/s{}{}  verified {}",
            r.path,
            r.seconds_median,
            r.ring_macs_per_second,
            r.fp64_tc_peak_fraction.map(|f| format!("  {:.1}% of FP64 TC peak", 100.0 * f)).unwrap_or_default(),
            r.int8_tc_peak_fraction.map(|f| format!("  {:.1}% of INT8 TC peak", 100.0 * f)).unwrap_or_default(),
            r.verified
        );
    }
    if args.json || args.out.is_some() {
        let report = serde_json::json!({
            "op": "bench_gemm",
            "date_utc": super::report::utc_now(),
            "git_commit": env!("CRYPTGPU_GIT_COMMIT"),
            "machine": super::report::Machine::probe(std::slice::from_ref(&device)),
            "backend": device.name(),
            "gpu": gpu_info(&device),
            "size": s,
            "reps": args.reps,
            "results": results,
            "gemm_fallbacks": fallbacks,
        });
        if let Some(dir) = &args.out {
            let path = dir.join("gemm.json");
            std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
        if args.json {
            println!("{report}");
        }
    }
    if results.iter().any(|r| !r.verified) {
        bail!("a GEMM result did not verify against the CPU");
    }
    Ok(())
}
