//! The differential suite on the GPU. Ignored by default (the test runner reports it as ignored,
//! not passed, on machines without a GPU); run it with
//! `cargo test -p cryptgpu-tests --test gpu_diff -- --ignored`, where no usable GPU is a failure.

use cryptgpu_kernels_cuda::{cuda_available, CudaBackend, GemmPath};
use cryptgpu_tests::diff::run_suite;

#[test]
#[ignore = "needs a CUDA GPU: run with cargo test -p cryptgpu-tests --test gpu_diff -- --ignored"]
fn cuda_backend_matches_cpu_bit_for_bit() {
    if let Err(e) = cuda_available() {
        panic!("no usable GPU: {e}");
    }
    let be = CudaBackend::new().unwrap_or_else(|e| panic!("GPU present but the CUDA backend failed to start: {e}"));
    eprintln!("GPU: {:?}", be.info());
    let mut failed = Vec::new();
    for path in [GemmPath::Auto, GemmPath::F64Limbs, GemmPath::I8Limbs, GemmPath::Simt] {
        let dev = be.clone().with_gemm_path(path);
        for c in run_suite(&dev, 7, true) {
            if !c.passed {
                failed.push(format!("[{path:?}] {}: {}", c.name, c.detail));
            }
        }
    }
    assert!(failed.is_empty(), "seed 7: {} mismatches:\n{}", failed.len(), failed.join("\n"));
}

#[test]
fn suite_passes_on_the_cpu_against_itself() {
    // Keeps the suite itself honest (and exercised) on machines without a GPU.
    let checks = run_suite(&cryptgpu_kernels_cpu::CpuBackend, 7, false);
    let failed: Vec<_> = checks.iter().filter(|c| !c.passed).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(checks.len() > 150, "only {} checks", checks.len());
}
