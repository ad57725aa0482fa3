//! The [`Backend`] trait: the device contract.
//!
//! A backend stores tensors of ring elements on its device and computes on them with exact
//! wrapping `u64` semantics. Backends know nothing about parties or shares; protocols in
//! `cryptgpu-sharing` are written against this trait only, so any backend runs every protocol.
//!
//! Every method checks its arguments and returns [`RingError`](crate::RingError) on bad shapes or
//! parameters, never panics. Results of all backends must agree bit for bit: the CPU backend
//! (`cryptgpu-kernels-cpu`) is the oracle. Convolution and pooling have default implementations in
//! terms of `im2col`/`col2im`, `matmul`, `permute` and `sum_axis`, so a backend needs only the
//! primitives and may override the composites with fused kernels.

use crate::error::{shape_err, Result};
use crate::prg::Key;
use crate::shape::{conv2d_window, pool2d_window, Window};
use crate::tensor::RingTensor;

/// A tensor living on a backend's device.
pub trait DeviceTensor: Clone + Send + Sync + std::fmt::Debug {
    /// The shape.
    fn shape(&self) -> &[usize];
    /// Number of elements.
    fn len(&self) -> usize {
        self.shape().iter().product()
    }
    /// True when the tensor has no elements.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl DeviceTensor for RingTensor {
    fn shape(&self) -> &[usize] {
        RingTensor::shape(self)
    }
}

/// Elementwise binary operations on two tensors of the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `a + b mod 2^64`.
    Add,
    /// `a - b mod 2^64`.
    Sub,
    /// `a * b mod 2^64`.
    Mul,
    /// Bitwise `a ^ b`.
    Xor,
    /// Bitwise `a & b`.
    And,
    /// Bitwise `a | b`.
    Or,
}

impl BinaryOp {
    /// The operation on one pair of elements (the reference semantics).
    #[inline(always)]
    pub fn apply(self, a: u64, b: u64) -> u64 {
        match self {
            BinaryOp::Add => a.wrapping_add(b),
            BinaryOp::Sub => a.wrapping_sub(b),
            BinaryOp::Mul => a.wrapping_mul(b),
            BinaryOp::Xor => a ^ b,
            BinaryOp::And => a & b,
            BinaryOp::Or => a | b,
        }
    }
}

/// Elementwise unary operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-a mod 2^64`.
    Neg,
    /// Bitwise `!a`.
    Not,
}

impl UnaryOp {
    /// The operation on one element.
    #[inline(always)]
    pub fn apply(self, a: u64) -> u64 {
        match self {
            UnaryOp::Neg => a.wrapping_neg(),
            UnaryOp::Not => !a,
        }
    }
}

/// Operations of a tensor with one public scalar `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScalarOp {
    /// `a + s`.
    Add,
    /// `a - s`.
    Sub,
    /// `s - a`.
    SubFrom,
    /// `a * s`.
    Mul,
    /// `a ^ s`.
    Xor,
    /// `a & s`.
    And,
    /// `a | s`.
    Or,
}

impl ScalarOp {
    /// The operation on one element.
    #[inline(always)]
    pub fn apply(self, a: u64, s: u64) -> u64 {
        match self {
            ScalarOp::Add => a.wrapping_add(s),
            ScalarOp::Sub => a.wrapping_sub(s),
            ScalarOp::SubFrom => s.wrapping_sub(a),
            ScalarOp::Mul => a.wrapping_mul(s),
            ScalarOp::Xor => a ^ s,
            ScalarOp::And => a & s,
            ScalarOp::Or => a | s,
        }
    }
}

/// Shifts by a public amount `0 <= bits < 64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShiftOp {
    /// `a << bits`.
    Left,
    /// Logical (zero-filling) right shift.
    RightLogical,
    /// Arithmetic (sign-extending) right shift of the signed view: floor division by `2^bits`.
    RightArith,
}

impl ShiftOp {
    /// The operation on one element; `bits` must be below 64.
    #[inline(always)]
    pub fn apply(self, a: u64, bits: u32) -> u64 {
        match self {
            ShiftOp::Left => a << bits,
            ShiftOp::RightLogical => a >> bits,
            ShiftOp::RightArith => ((a as i64) >> bits) as u64,
        }
    }
}

/// Parameters of a 2-D convolution (the kernel size comes from the weight's shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dParams {
    /// (vertical, horizontal) stride, both positive.
    pub stride: (usize, usize),
    /// (vertical, horizontal) zero padding.
    pub padding: (usize, usize),
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams { stride: (1, 1), padding: (0, 0) }
    }
}

/// Parameters of 2-D pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pool2dParams {
    /// (height, width) of the window.
    pub kernel: (usize, usize),
    /// (vertical, horizontal) stride.
    pub stride: (usize, usize),
    /// (vertical, horizontal) zero padding, smaller than the kernel.
    pub padding: (usize, usize),
}

/// A device that computes on tensors over Z_2^64.
///
/// Code written against `Backend` runs on every device; every implementation must give the CPU
/// oracle's results bit for bit (`cryptgpu-testkit` checks a new one).
///
/// ```rust
/// use cryptgpu_kernels_cpu::CpuBackend;
/// use cryptgpu_ring::{Backend, BinaryOp, RingTensor};
///
/// /// `a * b + a` over the ring, on any device.
/// fn fused<B: Backend>(be: &B, a: &RingTensor, b: &RingTensor) -> cryptgpu_ring::Result<RingTensor> {
///     let (a, b) = (be.upload(a)?, be.upload(b)?);
///     let ab = be.matmul(&a, &b, false, false)?;
///     be.download(&be.binary(BinaryOp::Add, &ab, &a)?)
/// }
///
/// let a = RingTensor::new(&[2, 2], vec![1, 2, 3, u64::MAX])?;
/// let b = RingTensor::new(&[2, 2], vec![1, 0, 0, 1])?;
/// // Wrapping arithmetic: u64::MAX + u64::MAX = -2 (mod 2^64).
/// assert_eq!(fused(&CpuBackend, &a, &b)?.data(), &[2, 4, 6, u64::MAX - 1]);
/// # Ok::<(), cryptgpu_ring::RingError>(())
/// ```
pub trait Backend: Clone + Send + Sync + 'static {
    /// The device-resident tensor type.
    type Tensor: DeviceTensor;

    /// A short name for reports (`"cpu"`, `"cuda"`).
    fn name(&self) -> &'static str;

    /// Blocks until every operation queued so far has finished (a no-op for a synchronous
    /// backend); timings stop after it.
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    // ----- transfer and creation -----

    /// Copies a host tensor to the device.
    fn upload(&self, t: &RingTensor) -> Result<Self::Tensor>;

    /// Moves a host tensor to the device (backends that live in host memory avoid a copy).
    fn upload_owned(&self, t: RingTensor) -> Result<Self::Tensor> {
        self.upload(&t)
    }

    /// Copies a device tensor to the host.
    fn download(&self, t: &Self::Tensor) -> Result<RingTensor>;

    /// Moves a device tensor to the host (backends that live in host memory avoid a copy).
    fn download_owned(&self, t: Self::Tensor) -> Result<RingTensor> {
        self.download(&t)
    }

    /// A tensor with every element equal to `value`.
    fn full(&self, shape: &[usize], value: u64) -> Result<Self::Tensor>;

    /// A tensor of zeros.
    fn zeros(&self, shape: &[usize]) -> Result<Self::Tensor> {
        self.full(shape, 0)
    }

    // ----- elementwise -----

    /// `op(a, b)` elementwise; shapes must be equal.
    fn binary(&self, op: BinaryOp, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;

    /// `op(a)` elementwise.
    fn unary(&self, op: UnaryOp, a: &Self::Tensor) -> Result<Self::Tensor>;

    /// `op(a, s)` elementwise with a public scalar.
    fn scalar(&self, op: ScalarOp, a: &Self::Tensor, s: u64) -> Result<Self::Tensor>;

    /// Shift of every element by `bits` (< 64).
    fn shift(&self, op: ShiftOp, a: &Self::Tensor, bits: u32) -> Result<Self::Tensor>;

    /// Bit `bit` (< 64) of every element, as 0 or 1.
    fn bit_extract(&self, a: &Self::Tensor, bit: u32) -> Result<Self::Tensor> {
        let s = self.shift(ShiftOp::RightLogical, a, bit)?;
        self.scalar(ScalarOp::And, &s, 1)
    }

    /// Packs the least significant bit of every element (flat order) into words: element `i`
    /// goes to bit `i % 64` of word `i / 64`. The result has shape `[ceil(n / 64)]`; unused high
    /// bits of the last word are zero.
    fn pack_bits(&self, a: &Self::Tensor) -> Result<Self::Tensor>;

    /// Inverse of [`pack_bits`](Self::pack_bits): a tensor of `shape` whose elements are 0 or 1.
    /// `packed` must have exactly `ceil(prod(shape) / 64)` elements.
    fn unpack_bits(&self, packed: &Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;

    // ----- linear algebra -----

    /// Matrix product `op(a) · op(b)` where `op` transposes the last two axes when its flag is set.
    /// Operands are both 2-D, or both 3-D with equal batch size (a batched product).
    fn matmul(&self, a: &Self::Tensor, b: &Self::Tensor, ta: bool, tb: bool) -> Result<Self::Tensor>;

    /// Unfolds sliding windows of an NCHW input into a `[C*kh*kw, N*oh*ow]` matrix.
    ///
    /// Row `(c*kh + i)*kw + j`, column `(n*oh + y)*ow + x` holds input
    /// `[n, c, y*sh + i - ph, x*sw + j - pw]`, or 0 where that falls into the padding.
    fn im2col(
        &self,
        x: &Self::Tensor,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Self::Tensor>;

    /// Adjoint of [`im2col`](Self::im2col): sums every column entry back into the NCHW position it
    /// was read from (padding positions are dropped).
    fn col2im(
        &self,
        cols: &Self::Tensor,
        input_shape: &[usize],
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Self::Tensor>;

    /// 2-D convolution (cross-correlation, as in PyTorch) of NCHW `x` with OIHW `w`:
    /// result `[N, O, oh, ow]`.
    fn conv2d(&self, x: &Self::Tensor, w: &Self::Tensor, p: &Conv2dParams) -> Result<Self::Tensor> {
        let (win, o) = conv2d_window("conv2d", x.shape(), w.shape(), p)?;
        let cols = self.im2col(x, (win.kh, win.kw), p.stride, p.padding)?;
        let wm = self.reshape(w, &[o, win.col_rows()])?;
        let y = self.matmul(&wm, &cols, false, false)?;
        let y = self.reshape(&y, &[o, win.n, win.oh, win.ow])?;
        self.permute(&y, &[1, 0, 2, 3])
    }

    /// Gradient of [`conv2d`](Self::conv2d) with respect to its input, given the output gradient
    /// `gy` (`[N, O, oh, ow]`) and the weight: result of shape `input_shape`.
    fn conv2d_input_grad(
        &self,
        gy: &Self::Tensor,
        w: &Self::Tensor,
        input_shape: &[usize],
        p: &Conv2dParams,
    ) -> Result<Self::Tensor> {
        let (win, o) = conv2d_window("conv2d_input_grad", input_shape, w.shape(), p)?;
        let gy_mat = self.conv_output_as_matrix("conv2d_input_grad", gy, &win, o)?;
        let wm = self.reshape(w, &[o, win.col_rows()])?;
        let dcols = self.matmul(&wm, &gy_mat, true, false)?;
        self.col2im(&dcols, input_shape, (win.kh, win.kw), p.stride, p.padding)
    }

    /// Gradient of [`conv2d`](Self::conv2d) with respect to its weight (`[O, C, kh, kw]`), given
    /// the input `x` and the output gradient `gy`.
    fn conv2d_weight_grad(
        &self,
        x: &Self::Tensor,
        gy: &Self::Tensor,
        kernel: (usize, usize),
        p: &Conv2dParams,
    ) -> Result<Self::Tensor> {
        let win = Window::new("conv2d_weight_grad", x.shape(), kernel, p.stride, p.padding)?;
        let o = gy.shape().get(1).copied().unwrap_or(0);
        let gy_mat = self.conv_output_as_matrix("conv2d_weight_grad", gy, &win, o)?;
        let cols = self.im2col(x, kernel, p.stride, p.padding)?;
        let dw = self.matmul(&gy_mat, &cols, false, true)?;
        self.reshape(&dw, &[o, win.c, win.kh, win.kw])
    }

    /// Checks that `gy` is `[N, O, oh, ow]` for the window and returns it as `[O, N*oh*ow]`.
    #[doc(hidden)]
    fn conv_output_as_matrix(
        &self,
        op: &'static str,
        gy: &Self::Tensor,
        win: &Window,
        o: usize,
    ) -> Result<Self::Tensor> {
        let expect = [win.n, o, win.oh, win.ow];
        if gy.shape() != expect {
            return Err(shape_err(op, format!("output gradient {:?}, expected {expect:?}", gy.shape())));
        }
        let t = self.permute(gy, &[1, 0, 2, 3])?;
        self.reshape(&t, &[o, win.col_cols()])
    }

    /// Sum pooling (average pooling without the division): `[N, C, oh, ow]`; padding counts as 0.
    fn sum_pool2d(&self, x: &Self::Tensor, p: &Pool2dParams) -> Result<Self::Tensor> {
        let win = pool2d_window("sum_pool2d", x.shape(), p)?;
        let xr = self.reshape(x, &[win.n * win.c, 1, win.h, win.w])?;
        let cols = self.im2col(&xr, p.kernel, p.stride, p.padding)?;
        let s = self.sum_axis(&cols, 0, false)?;
        self.reshape(&s, &[win.n, win.c, win.oh, win.ow])
    }

    /// Adjoint of [`sum_pool2d`](Self::sum_pool2d): every input position receives the sum of the
    /// output gradients of the windows that contain it.
    fn sum_pool2d_backward(&self, gy: &Self::Tensor, input_shape: &[usize], p: &Pool2dParams) -> Result<Self::Tensor> {
        let win = pool2d_window("sum_pool2d_backward", input_shape, p)?;
        let expect = [win.n, win.c, win.oh, win.ow];
        if gy.shape() != expect {
            return Err(shape_err("sum_pool2d_backward", format!("gradient {:?}, expected {expect:?}", gy.shape())));
        }
        let k = win.kh * win.kw;
        let row = self.reshape(gy, &[1, win.n * win.c * win.oh * win.ow])?;
        let cols = self.broadcast_to(&row, &[k, win.n * win.c * win.oh * win.ow])?;
        let x = self.col2im(&cols, &[win.n * win.c, 1, win.h, win.w], p.kernel, p.stride, p.padding)?;
        self.reshape(&x, input_shape)
    }

    // ----- reductions and layout -----

    /// Sum along `axis`; the axis is kept with length 1 when `keepdim`, removed otherwise.
    fn sum_axis(&self, a: &Self::Tensor, axis: usize, keepdim: bool) -> Result<Self::Tensor>;

    /// The same elements under a new shape with the same element count.
    fn reshape(&self, a: &Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;

    /// [`reshape`](Self::reshape) of a tensor no longer needed (backends can reuse its storage).
    fn reshape_owned(&self, a: Self::Tensor, shape: &[usize]) -> Result<Self::Tensor> {
        self.reshape(&a, shape)
    }

    /// Permutes the axes: result axis `i` is input axis `perm[i]`.
    fn permute(&self, a: &Self::Tensor, perm: &[usize]) -> Result<Self::Tensor>;

    /// Elements `start..end` along `axis`.
    fn slice(&self, a: &Self::Tensor, axis: usize, start: usize, end: usize) -> Result<Self::Tensor>;

    /// Concatenation along `axis`; all other axes must agree.
    fn concat(&self, parts: &[&Self::Tensor], axis: usize) -> Result<Self::Tensor>;

    /// [`concat`](Self::concat) along axis 0 of tensors no longer needed (backends can free each
    /// part once it is copied, so the parts and the result are not all alive at once).
    fn concat_owned(&self, parts: Vec<Self::Tensor>) -> Result<Self::Tensor> {
        self.concat(&parts.iter().collect::<Vec<_>>(), 0)
    }

    /// Broadcasts to `shape` by numpy rules (size-1 axes repeat, leading axes may be added).
    fn broadcast_to(&self, a: &Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;

    // ----- randomness -----

    /// A tensor filled from the AES-128-CTR stream `(key, stream, counter)` laid out as
    /// [`crate::prg`] specifies; consumes [`crate::prg::blocks_for`]`(prod(shape))` blocks.
    fn prg_fill(&self, key: &Key, stream: u64, counter: u64, shape: &[usize]) -> Result<Self::Tensor>;
}
