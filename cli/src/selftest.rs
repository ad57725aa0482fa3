//! `cryptgpu selftest`: the conformance suite of `cryptgpu-testkit` (every backend operation and
//! protocol against the CPU oracle, bit for bit) from the release binary, for machines without a
//! Rust toolchain.

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use cryptgpu_kernels_cuda::GemmPath;
use cryptgpu_testkit::{check_backend_with, Check, Config, Sizes};

use cryptgpu::device::AnyBackend;
use cryptgpu_ring::Backend;

use crate::device::{gpu_info, BackendChoice};

/// Arguments of `cryptgpu selftest`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Device to test against the CPU oracle.
    #[arg(long, value_enum, default_value_t = BackendChoice::Cuda)]
    backend: BackendChoice,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Skip the large cases (K > 2^21 GEMM, 4M-element tensors): the testkit's standard sizes
    /// instead of its full ones.
    #[arg(long)]
    quick: bool,
    /// Print a JSON object as the last line of standard output.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let device = args.backend.open()?;
    let config = Config { seed: args.seed, sizes: if args.quick { Sizes::Standard } else { Sizes::Full } };
    let mut results: Vec<(String, Check)> = Vec::new();
    // Shapes on which `Auto` fell back from the int8 to the f64 limb path (CUDA only).
    let mut fallbacks = Vec::new();
    match &device {
        AnyBackend::Cpu(be) => {
            results.extend(check_backend_with(be, &config).checks.into_iter().map(|c| ("cpu".to_string(), c)))
        }
        AnyBackend::Cuda(be) => {
            for path in [GemmPath::Auto, GemmPath::F64Limbs, GemmPath::I8Limbs, GemmPath::Simt] {
                let dev = be.clone().with_gemm_path(path);
                results.extend(check_backend_with(&dev, &config).checks.into_iter().map(|c| (format!("{path:?}"), c)));
            }
            fallbacks = be.gemm_fallbacks();
        }
    }
    let failed: Vec<&(String, Check)> = results.iter().filter(|(_, c)| !c.passed).collect();
    for (path, c) in &results {
        println!("[{path}] {c}");
    }
    for note in &fallbacks {
        println!("note: {note}");
    }
    println!("{} checks, {} failed, seed {}, backend {}", results.len(), failed.len(), args.seed, device.name());
    if args.json {
        let checks: Vec<_> = results
            .iter()
            .map(|(p, c)| serde_json::json!({"gemm_path": p, "name": c.name, "passed": c.passed, "detail": c.detail, "seconds": c.seconds}))
            .collect();
        let report = serde_json::json!({
            "op": "selftest",
            "backend": device.name(),
            "gpu": gpu_info(&device),
            "seed": args.seed,
            "sizes": config.sizes,
            "checks": results.len(),
            "failed": failed.len(),
            "results": checks,
            "gemm_fallbacks": fallbacks,
        });
        println!("{report}");
    }
    if !failed.is_empty() {
        bail!("{} of {} checks failed", failed.len(), results.len());
    }
    Ok(())
}
