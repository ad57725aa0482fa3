//! Errors of the CUDA backend.

use cryptgpu_ring::RingError;
use thiserror::Error;

/// Why the CUDA backend cannot start or an operation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CudaError {
    /// A CUDA library could not be loaded (no NVIDIA driver or toolkit on this machine).
    #[error("{0} was not found: install the NVIDIA driver and CUDA toolkit, or set LD_LIBRARY_PATH to its folder")]
    MissingLibrary(&'static str),
    /// The driver works but there is no usable GPU.
    #[error("no usable CUDA device: {0}")]
    NoDevice(String),
    /// A driver call failed.
    #[error("CUDA driver error: {0}")]
    Driver(String),
    /// NVRTC rejected a kernel source.
    #[error("NVRTC failed to compile {source_name} for {arch}: {log}")]
    Compile {
        /// The kernel source file.
        source_name: String,
        /// The target architecture (e.g. `sm_90`).
        arch: String,
        /// The compiler's log.
        log: String,
    },
    /// A cuBLAS or cuBLASLt call failed.
    #[error("cuBLAS error: {0}")]
    Blas(String),
}

impl From<CudaError> for RingError {
    fn from(e: CudaError) -> Self {
        RingError::Device(e.to_string())
    }
}

impl From<cudarc::driver::DriverError> for CudaError {
    fn from(e: cudarc::driver::DriverError) -> Self {
        CudaError::Driver(e.to_string())
    }
}

impl From<cudarc::cublas::result::CublasError> for CudaError {
    fn from(e: cudarc::cublas::result::CublasError) -> Self {
        CudaError::Blas(e.to_string())
    }
}

impl From<cudarc::cublaslt::result::CublasError> for CudaError {
    fn from(e: cudarc::cublaslt::result::CublasError) -> Self {
        CudaError::Blas(format!("cuBLASLt: {e}"))
    }
}

/// Shorthand: a driver error as a [`RingError`].
pub(crate) fn dev(e: cudarc::driver::DriverError) -> RingError {
    CudaError::from(e).into()
}
