//! `--backend cpu|cuda|auto`: the command-line face of [`cryptgpu::device::DeviceChoice`].

use anyhow::Result;
use clap::ValueEnum;
use cryptgpu::device::{AnyBackend, DeviceChoice};

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

impl From<BackendChoice> for DeviceChoice {
    fn from(c: BackendChoice) -> DeviceChoice {
        match c {
            BackendChoice::Auto => DeviceChoice::Auto,
            BackendChoice::Cpu => DeviceChoice::Cpu,
            BackendChoice::Cuda => DeviceChoice::Cuda,
        }
    }
}

impl BackendChoice {
    /// Opens the chosen backend; `auto` falls back to the CPU (with a note on stderr) when no GPU works.
    pub fn open(self) -> Result<AnyBackend> {
        let (device, fallback) = DeviceChoice::from(self)
            .open_with_fallback()
            .map_err(|e| anyhow::anyhow!("--backend {}: {e}", DeviceChoice::from(self)))?;
        if let Some(e) = fallback {
            eprintln!("note: running on the CPU ({e})");
        }
        Ok(device)
    }
}

/// The GPU's name, driver and CUDA version for reports, when `device` is a GPU.
pub fn gpu_info(device: &AnyBackend) -> Option<serde_json::Value> {
    device.gpu_info().map(|i| {
        serde_json::json!({
            "name": i.name,
            "compute_capability": format!("{}.{}", i.compute_capability.0, i.compute_capability.1),
            "memory_bytes": i.total_memory,
            "driver_cuda_version": format!("{}.{}", i.driver_cuda_version.0, i.driver_cuda_version.1),
            "nvrtc_version": format!("{}.{}", i.nvrtc_version.0, i.nvrtc_version.1),
            "multiprocessors": i.multiprocessors,
        })
    })
}
