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
//!
//! A first program: party 0 holds a 2x2 matrix, party 1 a vector; the parties multiply them on
//! secret shares and open the product to party 1 alone.
//!
//! ```rust
//! use cryptgpu::prelude::*;
//!
//! let codec = FixedPoint::default(); // 20 fractional bits
//! let a = codec.encode_tensor(&[2, 2], &[1.5, -2.0, 0.25, 4.0])?;
//! let b = codec.encode_tensor(&[2, 1], &[2.0, 0.5])?;
//! // Three parties on three threads; each runs the closure with its own `Party`.
//! let out = run_local(CpuBackend, RunConfig::default(), |p| {
//!     let x = p.input(0, (p.id() == 0).then_some(&a), &[2, 2])?; // party 0's secret
//!     let y = p.input(1, (p.id() == 1).then_some(&b), &[2, 1])?; // party 1's secret
//!     let z = p.matmul_fp(&x, &y)?; // fixed-point product, truncated back to 20 bits
//!     Ok::<_, SharingError>(p.reveal_to(&z, 1)?) // opened to party 1 only
//! })?;
//! assert!(out[0].value.is_none() && out[2].value.is_none());
//! let z = codec.decode_tensor(out[1].value.as_ref().expect("party 1 receives"));
//! assert!((z[0] - 2.0).abs() < 1e-5 && (z[1] - 2.5).abs() < 1e-5);
//! # Ok::<(), SharingError>(())
//! ```
//!
//! The examples (`cargo run --release -p cryptgpu --example NAME`): `private_matmul`,
//! `client_server` (private inference: the model at a server, the input and the prediction at a
//! client), `train_mnist` (a private training loop), `tls_parties` (three parties over mutual TLS
//! from your own binary) and `custom_protocol` (a new protocol written outside the library).
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
    pub use cryptgpu_nn::session::{Receivers, Roles};
    pub use cryptgpu_ring::{Backend, FixedPoint, RingTensor};
    pub use cryptgpu_sharing::{
        run_local, run_tcp, AShare, BShare, KeyRole, KeySource, Party, RunConfig, SharingError, Stream,
    };
}
