//! cryptgpu-rs in one crate: the layers re-exported under short names, and a [`prelude`].
//!
//! * [`ring`]: Z_2^64 tensors, fixed point and the [`Backend`](ring::Backend) trait;
//! * [`cpu`] and [`cuda`]: the two backends;
//! * [`device`]: the device chosen at run time ([`DeviceChoice`](device::DeviceChoice)), one
//!   backend type for both ([`AnyBackend`](device::AnyBackend));
//! * [`net`]: transports (in-process, TCP with mutual TLS) and their counters; deployment
//!   configurations and certificates ([`net::deploy`]);
//! * [`sharing`]: replicated shares and every protocol, the in-process runner and the TCP one
//!   ([`sharing::run_tcp`]);
//! * [`nn`]: layers, the model zoo, private training and inference sessions.
#![deny(missing_docs)]

pub mod device;

pub use cryptgpu_kernels_cpu as cpu;
pub use cryptgpu_kernels_cuda as cuda;
pub use cryptgpu_net as net;
pub use cryptgpu_nn as nn;
pub use cryptgpu_ring as ring;
pub use cryptgpu_sharing as sharing;

/// The names a first program needs.
pub mod prelude {
    pub use crate::device::{AnyBackend, DeviceChoice};
    pub use cryptgpu_kernels_cpu::CpuBackend;
    pub use cryptgpu_net::{Deployment, Protection, Transport};
    pub use cryptgpu_ring::{Backend, FixedPoint, RingTensor};
    pub use cryptgpu_sharing::{run_local, run_tcp, AShare, BShare, KeySource, Party, RunConfig, SharingError};
}
