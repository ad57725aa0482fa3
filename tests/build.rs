//! Compiles the CUDA kernels of `kernels-cuda` for the host through a small shim (fibers for the
//! threads of a block, so `__shared__`, `__syncthreads` and `__ballot_sync` work), so that their
//! logic is tested against the CPU backend on machines without a GPU.

fn main() {
    let kernels = "../kernels-cuda/src/kernels";
    println!("cargo:rerun-if-changed=host");
    println!("cargo:rerun-if-changed={kernels}");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("host/cuda_host_shim.cpp")
        .file("host/kernels.cpp")
        .include("host")
        .include(kernels)
        .opt_level(2)
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .flag("-Wno-unused-parameter")
        // `#pragma unroll` is for NVCC/NVRTC.
        .flag("-Wno-unknown-pragmas")
        .compile("cryptgpu_host_kernels");
}
