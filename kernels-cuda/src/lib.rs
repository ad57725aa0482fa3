//! `CudaBackend`: the CUDA implementation of [`cryptgpu_ring::Backend`].
//!
//! * Built on cudarc with run-time loading: the crate builds and links on machines without CUDA,
//!   and [`CudaBackend::new`] returns a [`CudaError`] (never panics) when the driver, NVRTC, cuBLAS
//!   or a GPU is missing ([`cuda_available`] checks without creating a context).
//! * Kernels are CUDA C in `src/kernels/*.cu` ([`sources`]), compiled once per process by NVRTC to
//!   CUBIN for the GPU's own `sm_XY` ([`nvrtc`]): machine code the driver loads without a PTX JIT,
//!   so an NVRTC newer than the driver within its CUDA major version still works; a module that
//!   does not load is an error naming both versions.
//! * Ring GEMM is exact: limb embeddings on cuBLAS DGEMM (16-bit limbs) or cuBLASLt int8 tensor
//!   cores (signed 8-bit digits), or a tiled 64-bit integer kernel ([`gemm`]). Convolutions use the
//!   trait's im2col + GEMM composition.
//! * Results are bit-identical to the CPU oracle (`cryptgpu-kernels-cpu`) for the same inputs and keys.
#![deny(missing_docs)]

pub mod abi;
mod backend;
mod device;
pub mod error;
pub mod gemm;
pub mod geometry;
pub mod nvrtc;
pub mod sources;

pub use backend::{CudaBackend, CudaTensor};
pub use device::{cuda_available, DeviceInfo};
pub use error::CudaError;
pub use gemm::GemmPath;
