//! `CpuBackend`: the rayon implementation of [`cryptgpu_ring::Backend`].
//!
//! Tensors live in host memory as [`RingTensor`]s. Elementwise kernels and layout operations
//! run in parallel chunks; matrix products use the blocked, packed GEMM of [`gemm`]; convolutions
//! use the trait's im2col + GEMM composition; the PRG is AES-128-CTR from the `aes`/`ctr` crates
//! (AES-NI where the CPU has it). This backend defines the semantics every other backend is
//! tested against.
#![deny(missing_docs)]

pub mod gemm;
pub mod layout;
pub mod limb_gemm;
pub mod prg;

use cryptgpu_ring::conv;
use cryptgpu_ring::error::{shape_err, Result};
use cryptgpu_ring::prg::Key;
use cryptgpu_ring::shape::{self, check_same, concat_shape, matmul_dims, Window};
use cryptgpu_ring::{Backend, BinaryOp, RingTensor, ScalarOp, ShiftOp, UnaryOp};
use gemm::MatRef;
use rayon::prelude::*;

/// Elements per parallel task in elementwise kernels.
const CHUNK: usize = 1 << 14;

/// The CPU backend (uses rayon's global thread pool).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuBackend;

impl CpuBackend {
    /// A new CPU backend.
    pub fn new() -> Self {
        CpuBackend
    }
}

/// `f` elementwise. Collecting writes each output once (no zero-filled buffer first: with a
/// reused allocation that memset cost about 15% of a training step).
fn map(a: &RingTensor, f: impl Fn(u64) -> u64 + Sync) -> RingTensor {
    let out = a.data().par_iter().with_min_len(CHUNK).map(|&x| f(x)).collect();
    tensor(a.shape(), out)
}

/// Builds a tensor whose length is correct by construction.
fn tensor(shape: &[usize], data: Vec<u64>) -> RingTensor {
    RingTensor::new(shape, data).expect("kernel produced a buffer of the wrong length")
}

impl Backend for CpuBackend {
    type Tensor = RingTensor;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn upload(&self, t: &RingTensor) -> Result<RingTensor> {
        Ok(t.clone())
    }

    fn upload_owned(&self, t: RingTensor) -> Result<RingTensor> {
        Ok(t)
    }

    fn download(&self, t: &RingTensor) -> Result<RingTensor> {
        Ok(t.clone())
    }

    fn download_owned(&self, t: RingTensor) -> Result<RingTensor> {
        Ok(t)
    }

    fn full(&self, shape: &[usize], value: u64) -> Result<RingTensor> {
        let n = shape::checked_numel("full", shape)?;
        Ok(tensor(shape, vec![value; n]))
    }

    fn binary(&self, op: BinaryOp, a: &RingTensor, b: &RingTensor) -> Result<RingTensor> {
        check_same("binary", a.shape(), b.shape())?;
        let out =
            a.data().par_iter().zip(b.data().par_iter()).with_min_len(CHUNK).map(|(&x, &y)| op.apply(x, y)).collect();
        Ok(tensor(a.shape(), out))
    }

    fn unary(&self, op: UnaryOp, a: &RingTensor) -> Result<RingTensor> {
        Ok(map(a, |x| op.apply(x)))
    }

    fn scalar(&self, op: ScalarOp, a: &RingTensor, s: u64) -> Result<RingTensor> {
        Ok(map(a, |x| op.apply(x, s)))
    }

    fn shift(&self, op: ShiftOp, a: &RingTensor, bits: u32) -> Result<RingTensor> {
        shape::check_shift(bits)?;
        Ok(map(a, |x| op.apply(x, bits)))
    }

    fn bit_extract(&self, a: &RingTensor, bit: u32) -> Result<RingTensor> {
        shape::check_shift(bit)?;
        Ok(map(a, |x| (x >> bit) & 1))
    }

    fn pack_bits(&self, a: &RingTensor) -> Result<RingTensor> {
        let words = a.len().div_ceil(64);
        let out = a
            .data()
            .par_chunks(64)
            .with_min_len(CHUNK / 64)
            .map(|bits| bits.iter().enumerate().fold(0u64, |acc, (i, &b)| acc | ((b & 1) << i)))
            .collect();
        Ok(tensor(&[words], out))
    }

    fn unpack_bits(&self, packed: &RingTensor, shape: &[usize]) -> Result<RingTensor> {
        let n = shape::checked_numel("unpack_bits", shape)?;
        if packed.len() != n.div_ceil(64) {
            return Err(shape_err(
                "unpack_bits",
                format!("{} packed words cannot hold exactly {n} bits", packed.len()),
            ));
        }
        let words = packed.data();
        let out = (0..n).into_par_iter().with_min_len(CHUNK).map(|i| (words[i / 64] >> (i % 64)) & 1).collect();
        Ok(tensor(shape, out))
    }

    fn matmul(&self, a: &RingTensor, b: &RingTensor, ta: bool, tb: bool) -> Result<RingTensor> {
        let d = matmul_dims(a.shape(), b.shape(), ta, tb)?;
        let r = a.shape().len();
        let mut out = vec![0u64; d.batch * d.m * d.n];
        let (a_mat, b_mat) = (d.m * d.k, d.k * d.n);
        for (bi, c) in out.chunks_mut((d.m * d.n).max(1)).enumerate().take(d.batch) {
            let a_data = &a.data()[bi * a_mat..][..a_mat];
            let b_data = &b.data()[bi * b_mat..][..b_mat];
            let av = if ta { MatRef { data: a_data, rs: 1, cs: d.m } } else { MatRef { data: a_data, rs: d.k, cs: 1 } };
            let bv = if tb { MatRef { data: b_data, rs: 1, cs: d.k } } else { MatRef { data: b_data, rs: d.n, cs: 1 } };
            gemm::gemm(d.m, d.k, d.n, av, bv, c, false);
        }
        Ok(tensor(&d.out_shape(r), out))
    }

    fn im2col(
        &self,
        x: &RingTensor,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<RingTensor> {
        let win = Window::new("im2col", x.shape(), kernel, stride, padding)?;
        Ok(tensor(&[win.col_rows(), win.col_cols()], conv::im2col(x.data(), &win)))
    }

    fn col2im(
        &self,
        cols: &RingTensor,
        input_shape: &[usize],
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<RingTensor> {
        let win = Window::new("col2im", input_shape, kernel, stride, padding)?;
        check_same("col2im", cols.shape(), &[win.col_rows(), win.col_cols()])?;
        Ok(tensor(input_shape, conv::col2im(cols.data(), &win)))
    }

    fn sum_axis(&self, a: &RingTensor, axis: usize, keepdim: bool) -> Result<RingTensor> {
        let shape = shape::reduced_shape("sum_axis", a.shape(), axis, keepdim)?;
        let (outer, len, inner) = shape::split_at_axis(a.shape(), axis);
        Ok(tensor(&shape, layout::sum_middle(a.data(), outer, len, inner)))
    }

    fn reshape(&self, a: &RingTensor, shape: &[usize]) -> Result<RingTensor> {
        shape::check_reshape(a.shape(), shape)?;
        Ok(tensor(shape, a.data().to_vec()))
    }

    fn reshape_owned(&self, a: RingTensor, shape: &[usize]) -> Result<RingTensor> {
        shape::check_reshape(a.shape(), shape)?;
        Ok(tensor(shape, a.into_data()))
    }

    fn permute(&self, a: &RingTensor, perm: &[usize]) -> Result<RingTensor> {
        let (out_shape, st) = shape::permute_strides(a.shape(), perm)?;
        Ok(tensor(&out_shape, layout::strided_gather(a.data(), &out_shape, &st)))
    }

    fn slice(&self, a: &RingTensor, axis: usize, start: usize, end: usize) -> Result<RingTensor> {
        let shape = shape::slice_shape(a.shape(), axis, start, end)?;
        let (outer, len, inner) = shape::split_at_axis(a.shape(), axis);
        Ok(tensor(&shape, layout::slice(a.data(), outer, len, inner, start, end)))
    }

    fn concat(&self, parts: &[&RingTensor], axis: usize) -> Result<RingTensor> {
        let shapes: Vec<&[usize]> = parts.iter().map(|p| p.shape()).collect();
        let out_shape = concat_shape(&shapes, axis)?;
        let (outer, _, inner) = shape::split_at_axis(&out_shape, axis);
        let srcs: Vec<(&[u64], usize)> = parts.iter().map(|p| (p.data(), p.shape()[axis])).collect();
        Ok(tensor(&out_shape, layout::concat(&srcs, outer, inner)))
    }

    fn concat_owned(&self, parts: Vec<RingTensor>) -> Result<RingTensor> {
        let shapes: Vec<&[usize]> = parts.iter().map(|p| p.shape()).collect();
        let out_shape = concat_shape(&shapes, 0)?;
        let mut data = Vec::with_capacity(out_shape.iter().product());
        for p in parts {
            data.extend_from_slice(p.data());
        }
        Ok(tensor(&out_shape, data))
    }

    fn broadcast_to(&self, a: &RingTensor, shape: &[usize]) -> Result<RingTensor> {
        let st = shape::broadcast_strides(a.shape(), shape)?;
        Ok(tensor(shape, layout::strided_gather(a.data(), shape, &st)))
    }

    fn prg_fill(&self, key: &Key, stream: u64, counter: u64, shape: &[usize]) -> Result<RingTensor> {
        let n = shape::checked_numel("prg_fill", shape)?;
        let mut out = vec![0u64; n];
        prg::fill(key, stream, counter, &mut out);
        Ok(tensor(shape, out))
    }
}
