//! `CudaBackend`: the CUDA implementation of [`cryptgpu_ring::Backend`].
//!
//! * Built on cudarc with run-time loading: the crate builds and links on machines without CUDA,
//!   and [`CudaBackend::new`] returns a [`CudaError`] (never panics) when the driver, NVRTC, cuBLAS
//!   or a GPU is missing ([`cuda_available`] checks without creating a context).
//! * Kernels are CUDA C in `src/kernels/*.cu` ([`sources`]), compiled once per process by NVRTC for
//!   the GPU's own compute capability, so the PTX always matches the installed driver.
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
pub mod nvrtc;
pub mod sources;

pub use backend::{CudaBackend, CudaTensor};
pub use device::{cuda_available, DeviceInfo};
pub use error::CudaError;
pub use gemm::GemmPath;
