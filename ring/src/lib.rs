//! The ring Z_2^64 and the device contract of cryptgpu-rs.
//!
//! * [`RingTensor`]: a host tensor of `u64` ring elements (shape + contiguous row-major data).
//! * [`FixedPoint`]: the fixed-point codec between `f64` and the ring.
//! * [`Backend`]: everything a device (CPU, GPU) must compute, with exact wrapping semantics.
//! * [`conv`]: im2col and col2im over slices of ring elements or reals.
//! * [`prg`]: the AES-128-CTR stream layout that every backend's `prg_fill` must reproduce bit for bit.
//!
//! All arithmetic is modulo 2^64 (wrapping `u64`); the signed view of an element is its
//! two's-complement `i64`.
#![deny(missing_docs)]

pub mod backend;
pub mod conv;
pub mod error;
pub mod fixed;
pub mod limbs;
pub mod prg;
pub mod shape;
pub mod tensor;

pub use backend::{Backend, BinaryOp, Conv2dParams, DeviceTensor, Pool2dParams, ScalarOp, ShiftOp, UnaryOp};
pub use error::{Result, RingError};
pub use fixed::FixedPoint;
pub use tensor::RingTensor;
