//! Choosing the backend: `--backend cpu|cuda|auto`.

use anyhow::{Context, Result};
use clap::ValueEnum;
use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_kernels_cuda::CudaBackend;

/// Which device runs the parties' local computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The GPU when one is usable, else the CPU.
    Auto,
    /// The rayon CPU backend.
    Cpu,
    /// The CUDA backend (an error when no GPU is usable).
    Cuda,
}

/// An opened backend.
pub enum Device {
    /// The CPU.
    Cpu(CpuBackend),
    /// A GPU.
    Cuda(CudaBackend),
}

impl Device {
    /// `"cpu"` or `"cuda"`.
    pub fn name(&self) -> &'static str {
        match self {
            Device::Cpu(_) => "cpu",
            Device::Cuda(_) => "cuda",
        }
    }

    /// The GPU's name, driver and CUDA version, when this is a GPU.
    pub fn gpu_info(&self) -> Option<serde_json::Value> {
        match self {
            Device::Cpu(_) => None,
            Device::Cuda(be) => {
                let i = be.info();
                Some(serde_json::json!({
                    "name": i.name,
                    "compute_capability": format!("{}.{}", i.compute_capability.0, i.compute_capability.1),
                    "memory_bytes": i.total_memory,
                    "driver_cuda_version": format!("{}.{}", i.driver_cuda_version.0, i.driver_cuda_version.1),
                    "nvrtc_version": format!("{}.{}", i.nvrtc_version.0, i.nvrtc_version.1),
                    "multiprocessors": i.multiprocessors,
                }))
            }
        }
    }
}

impl BackendChoice {
    /// Opens the chosen backend; `auto` falls back to the CPU (with a note on stderr) when no GPU works.
    pub fn open(self) -> Result<Device> {
        match self {
            BackendChoice::Cpu => Ok(Device::Cpu(CpuBackend)),
            BackendChoice::Cuda => {
                Ok(Device::Cuda(CudaBackend::new().context("--backend cuda: the GPU backend is unavailable")?))
            }
            BackendChoice::Auto => match CudaBackend::new() {
                Ok(be) => Ok(Device::Cuda(be)),
                Err(e) => {
                    eprintln!("note: running on the CPU ({e})");
                    Ok(Device::Cpu(CpuBackend))
                }
            },
        }
    }
}

/// Runs `$body` with `$be` bound to the opened backend, whatever its type.
#[macro_export]
macro_rules! with_backend {
    ($device:expr, $be:ident => $body:expr) => {
        match $device {
            $crate::device::Device::Cpu($be) => $body,
            $crate::device::Device::Cuda($be) => $body,
        }
    };
}
