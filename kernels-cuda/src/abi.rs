//! The argument layout shared by the Rust launch code and the CUDA C kernels: operation codes and
//! `#[repr(C)]` mirrors of the structs in `kernels/common.cuh`, `conv.cu` and `aes.cu`. Public so
//! that host-side tests pass exactly what the backend passes.

use cryptgpu_ring::error::{invalid, Result};
use cryptgpu_ring::prg::Key;
use cryptgpu_ring::shape::Window;
use cryptgpu_ring::{BinaryOp, ScalarOp, ShiftOp, UnaryOp};
use cudarc::driver::DeviceRepr;

/// Kernel code of a binary operation (`OP_*` in `common.cuh`).
pub fn binary_code(op: BinaryOp) -> i32 {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Xor => 3,
        BinaryOp::And => 4,
        BinaryOp::Or => 5,
    }
}

/// Kernel code of a scalar operation (`OP_*` in `common.cuh`).
pub fn scalar_code(op: ScalarOp) -> i32 {
    match op {
        ScalarOp::Add => 0,
        ScalarOp::Sub => 1,
        ScalarOp::Mul => 2,
        ScalarOp::Xor => 3,
        ScalarOp::And => 4,
        ScalarOp::Or => 5,
        ScalarOp::SubFrom => 6,
    }
}

/// Kernel code of a unary operation.
pub fn unary_code(op: UnaryOp) -> i32 {
    match op {
        UnaryOp::Neg => 0,
        UnaryOp::Not => 1,
    }
}

/// Kernel code of a shift.
pub fn shift_code(op: ShiftOp) -> i32 {
    match op {
        ShiftOp::Left => 0,
        ShiftOp::RightLogical => 1,
        ShiftOp::RightArith => 2,
    }
}

/// Strided-gather geometry (`struct Dims`): output shape and, per output axis, the source stride.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Output shape (unused axes 1).
    pub shape: [u64; 8],
    /// Source stride per output axis (0 for broadcast axes).
    pub stride: [u64; 8],
    /// Number of axes.
    pub rank: u32,
}
// SAFETY: plain-old-data with the C layout of `struct Dims`.
unsafe impl DeviceRepr for Dims {}

impl Dims {
    /// The geometry of `out[idx] = src[sum idx_d * strides_d]`; at most 8 axes.
    pub fn new(out_shape: &[usize], strides: &[usize]) -> Result<Dims> {
        if out_shape.len() > 8 || strides.len() != out_shape.len() {
            return Err(invalid(
                "gather",
                format!("at most 8 axes with one stride each, got {out_shape:?} / {strides:?}"),
            ));
        }
        let mut d = Dims { shape: [1; 8], stride: [0; 8], rank: out_shape.len() as u32 };
        for (i, (&s, &st)) in out_shape.iter().zip(strides).enumerate() {
            d.shape[i] = s as u64;
            d.stride[i] = st as u64;
        }
        Ok(d)
    }
}

/// Sliding-window geometry (`struct Window` in `conv.cu`): n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowArgs {
    /// The twelve fields in the order above.
    pub g: [u64; 12],
}
// SAFETY: plain-old-data with the C layout of `struct Window` (12 u64 fields).
unsafe impl DeviceRepr for WindowArgs {}

impl From<&Window> for WindowArgs {
    fn from(w: &Window) -> Self {
        let v = [w.n, w.c, w.h, w.w, w.kh, w.kw, w.sh, w.sw, w.ph, w.pw, w.oh, w.ow];
        WindowArgs { g: v.map(|x| x as u64) }
    }
}

/// An AES-128 key as four big-endian words (`struct AesKey` in `aes.cu`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AesKey {
    /// Key bytes 4i..4i+4 as a big-endian word.
    pub w: [u32; 4],
}
// SAFETY: plain-old-data with the C layout of `struct AesKey`.
unsafe impl DeviceRepr for AesKey {}

impl From<&Key> for AesKey {
    fn from(k: &Key) -> Self {
        AesKey { w: std::array::from_fn(|i| u32::from_be_bytes([k[4 * i], k[4 * i + 1], k[4 * i + 2], k[4 * i + 3]])) }
    }
}
