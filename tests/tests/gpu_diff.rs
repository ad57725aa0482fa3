//! The conformance suite (`cryptgpu-testkit`) on the GPU, at every GEMM path. Ignored by default
//! (the test runner reports it as ignored, not passed, on machines without a GPU); run it with
//! `cargo test -p cryptgpu-tests --test gpu_diff -- --ignored`, where no usable GPU is a failure.

use cryptgpu_kernels_cuda::{cuda_available, CudaBackend, GemmPath};
use cryptgpu_testkit::{check_backend_with, Config, Sizes};

#[test]
#[ignore = "needs a CUDA GPU: run with cargo test -p cryptgpu-tests --test gpu_diff -- --ignored"]
fn cuda_backend_conforms_at_every_gemm_path() {
    if let Err(e) = cuda_available() {
        panic!("no usable GPU: {e}");
    }
    let be = CudaBackend::new().unwrap_or_else(|e| panic!("GPU present but the CUDA backend failed to start: {e}"));
    eprintln!("GPU: {:?}", be.info());
    let config = Config { sizes: Sizes::Full, ..Config::default() };
    let mut failed = Vec::new();
    for path in [GemmPath::Auto, GemmPath::F64Limbs, GemmPath::I8Limbs, GemmPath::Simt] {
        let report = check_backend_with(&be.clone().with_gemm_path(path), &config);
        eprintln!("[{path:?}] {}", report.summary());
        failed.extend(report.failures().map(|c| format!("[{path:?}] {c}")));
    }
    assert!(failed.is_empty(), "seed {}: {} mismatches:\n{}", config.seed, failed.len(), failed.join("\n"));
}
