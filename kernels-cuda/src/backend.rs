//! [`CudaBackend`]: every `Backend` operation as a CUDA kernel or a cuBLAS/cuBLASLt GEMM.

use std::sync::Arc;

use cryptgpu_ring::error::{shape_err, Result};
use cryptgpu_ring::prg::Key;
use cryptgpu_ring::shape::{self, check_same, concat_shape, matmul_dims, Window};
use cryptgpu_ring::{Backend, BinaryOp, DeviceTensor, RingTensor, ScalarOp, ShiftOp, UnaryOp};
use cudarc::driver::{CudaSlice, CudaView, DeviceRepr, LaunchConfig};

use crate::abi::{binary_code, scalar_code, shift_code, unary_code, AesKey, Dims, WindowArgs};

use crate::device::{Device, DeviceInfo};
use crate::error::{dev, CudaError};
use crate::gemm::{self, GemmPath, Int8Fallback, Operand};
use crate::geometry;

/// A tensor in GPU memory. Clones share the (immutable) buffer.
#[derive(Clone)]
pub struct CudaTensor {
    shape: Vec<usize>,
    buf: Arc<CudaSlice<u64>>,
}

impl std::fmt::Debug for CudaTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaTensor{:?}", self.shape)
    }
}

impl DeviceTensor for CudaTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
}

impl CudaTensor {
    /// A view of the elements (the buffer may hold one spare element when the tensor is empty).
    pub(crate) fn view(&self) -> CudaView<'_, u64> {
        self.buf.slice(0..self.len())
    }
}

/// Launches kernel `$name` with the listed arguments (pushed in order).
macro_rules! launch {
    ($self:expr, $name:literal, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        use cudarc::driver::PushKernelArg as _;
        let f = $self.dev.function($name)?;
        let mut l = $self.dev.stream.launch_builder(f);
        $( l.arg($arg); )+
        // SAFETY: every call site passes exactly the parameters of the named kernel, in order and
        // with matching types, and buffers holding at least the element counts the kernel indexes
        // (the shape checks run before the launch).
        unsafe { l.launch($cfg) }.map(|_| ()).map_err(dev)
    }};
}
pub(crate) use launch;

/// Launch geometry of a grid-stride kernel over `n` items ([`geometry::grid_stride`]).
pub(crate) fn grid(n: usize) -> LaunchConfig {
    geometry::grid_stride(n).into()
}

/// The CUDA backend. Cheap to clone (clones share the device, its stream and its kernels).
#[derive(Clone)]
pub struct CudaBackend {
    pub(crate) dev: Arc<Device>,
    pub(crate) gemm_path: GemmPath,
    /// Shapes on which `Auto` fell back from int8 to f64 limbs (shared by clones).
    pub(crate) fallback: Arc<Int8Fallback>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend").field("device", &self.dev.info.name).field("gemm", &self.gemm_path).finish()
    }
}

impl CudaBackend {
    /// The backend on GPU 0. Returns an error (never panics) when no driver, toolkit library or
    /// GPU is present. Kernels are compiled by NVRTC for the GPU's compute capability on first use
    /// in the process and cached.
    pub fn new() -> Result<Self, CudaError> {
        Self::on_device(0)
    }

    /// The backend on GPU `ordinal`.
    pub fn on_device(ordinal: usize) -> Result<Self, CudaError> {
        let gemm_path = GemmPath::from_env()?;
        Ok(CudaBackend { dev: Device::get(ordinal)?, gemm_path, fallback: Arc::default() })
    }

    /// Facts about the GPU.
    pub fn info(&self) -> &DeviceInfo {
        &self.dev.info
    }

    /// The same backend with ring GEMMs forced onto `path` (`Auto` picks per shape).
    pub fn with_gemm_path(mut self, path: GemmPath) -> Self {
        self.gemm_path = path;
        self
    }

    /// The GEMM path in use.
    pub fn gemm_path(&self) -> GemmPath {
        self.gemm_path
    }

    /// One note per product shape on which `Auto` fell back from the int8 to the f64 limb path.
    pub fn gemm_fallbacks(&self) -> Vec<String> {
        self.fallback.notes()
    }

    /// A fresh device buffer of `n` elements (at least one, so empty tensors have a valid pointer).
    pub(crate) fn alloc<T: DeviceRepr + cudarc::driver::ValidAsZeroBits>(&self, n: usize) -> Result<CudaSlice<T>> {
        self.dev.stream.alloc_zeros::<T>(n.max(1)).map_err(dev)
    }

    /// A device buffer of `n` elements (at least one) with unspecified contents, without the
    /// memset of [`alloc`](Self::alloc).
    ///
    /// # Safety
    /// The caller must have every element that is ever read written first (on the same stream):
    /// in practice, a kernel that writes all `n` elements is launched before any read.
    pub(crate) unsafe fn alloc_uninit<T: DeviceRepr>(&self, n: usize) -> Result<CudaSlice<T>> {
        // SAFETY: forwarded to the caller (the memory is merely unset).
        unsafe { self.dev.stream.alloc::<T>(n.max(1)) }.map_err(dev)
    }

    /// An output buffer for `shape` and its element count, for an operation whose kernel writes
    /// every element (grid-stride over all `n`); for an empty shape, one unread element.
    fn output_written(&self, op: &'static str, shape: &[usize]) -> Result<(usize, CudaSlice<u64>)> {
        let n = shape::checked_numel(op, shape)?;
        // SAFETY: callers launch a kernel writing all n elements before the buffer is read.
        Ok((n, unsafe { self.alloc_uninit::<u64>(n)? }))
    }

    fn wrap(&self, shape: &[usize], buf: CudaSlice<u64>) -> CudaTensor {
        CudaTensor { shape: shape.to_vec(), buf: Arc::new(buf) }
    }

    /// A zero-filled output buffer for `shape` and its element count.
    fn output(&self, op: &'static str, shape: &[usize]) -> Result<(usize, CudaSlice<u64>)> {
        let n = shape::checked_numel(op, shape)?;
        Ok((n, self.alloc::<u64>(n)?))
    }

    fn gather(&self, src: &CudaTensor, out_shape: &[usize], strides: &[usize]) -> Result<CudaTensor> {
        let dims = Dims::new(out_shape, strides)?;
        let (n, mut out) = self.output_written("gather", out_shape)?;
        if n > 0 {
            let (view, n64) = (src.view(), n as u64);
            launch!(self, "gather_strided", grid(n), &view, &mut out, &n64, &dims)?;
        }
        Ok(self.wrap(out_shape, out))
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_rows(
        &self,
        src: &CudaTensor,
        src_row: usize,
        src_off: usize,
        dst: &mut CudaSlice<u64>,
        dst_row: usize,
        dst_off: usize,
        rows: usize,
        width: usize,
    ) -> Result<()> {
        if rows * width == 0 {
            return Ok(());
        }
        let view = src.view();
        let a = [src_row, src_off, dst_row, dst_off, rows, width].map(|v| v as u64);
        launch!(self, "copy_rows", grid(rows * width), &view, &a[0], &a[1], dst, &a[2], &a[3], &a[4], &a[5])
    }
}

impl Backend for CudaBackend {
    type Tensor = CudaTensor;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn synchronize(&self) -> Result<()> {
        self.dev.stream.synchronize().map_err(dev)
    }

    fn upload(&self, t: &RingTensor) -> Result<CudaTensor> {
        let buf =
            if t.is_empty() { self.alloc::<u64>(1)? } else { self.dev.stream.clone_htod(t.data()).map_err(dev)? };
        Ok(self.wrap(t.shape(), buf))
    }

    fn download(&self, t: &CudaTensor) -> Result<RingTensor> {
        let data = if t.is_empty() { Vec::new() } else { self.dev.stream.clone_dtoh(&t.view()).map_err(dev)? };
        RingTensor::new(t.shape(), data)
    }

    fn full(&self, shape: &[usize], value: u64) -> Result<CudaTensor> {
        let (n, mut out) = self.output_written("full", shape)?;
        if n > 0 {
            let n64 = n as u64;
            launch!(self, "ew_fill", grid(n), &value, &mut out, &n64)?;
        }
        Ok(self.wrap(shape, out))
    }

    fn binary(&self, op: BinaryOp, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        check_same("binary", a.shape(), b.shape())?;
        let (n, mut out) = self.output_written("binary", a.shape())?;
        if n > 0 {
            let (code, av, bv) = (binary_code(op), a.view(), b.view());
            let n64 = n as u64;
            launch!(self, "ew_binary", grid(n), &code, &av, &bv, &mut out, &n64)?;
        }
        Ok(self.wrap(a.shape(), out))
    }

    fn unary(&self, op: UnaryOp, a: &CudaTensor) -> Result<CudaTensor> {
        let code = unary_code(op);
        let (n, mut out) = self.output_written("unary", a.shape())?;
        if n > 0 {
            let (av, n64) = (a.view(), n as u64);
            launch!(self, "ew_unary", grid(n), &code, &av, &mut out, &n64)?;
        }
        Ok(self.wrap(a.shape(), out))
    }

    fn scalar(&self, op: ScalarOp, a: &CudaTensor, s: u64) -> Result<CudaTensor> {
        let (n, mut out) = self.output_written("scalar", a.shape())?;
        if n > 0 {
            let (code, av, n64) = (scalar_code(op), a.view(), n as u64);
            launch!(self, "ew_scalar", grid(n), &code, &av, &s, &mut out, &n64)?;
        }
        Ok(self.wrap(a.shape(), out))
    }

    fn shift(&self, op: ShiftOp, a: &CudaTensor, bits: u32) -> Result<CudaTensor> {
        shape::check_shift(bits)?;
        let code = shift_code(op);
        let (n, mut out) = self.output_written("shift", a.shape())?;
        if n > 0 {
            let (av, n64) = (a.view(), n as u64);
            launch!(self, "ew_shift", grid(n), &code, &av, &bits, &mut out, &n64)?;
        }
        Ok(self.wrap(a.shape(), out))
    }

    fn bit_extract(&self, a: &CudaTensor, bit: u32) -> Result<CudaTensor> {
        shape::check_shift(bit)?;
        let (n, mut out) = self.output("bit_extract", a.shape())?;
        if n > 0 {
            let (av, n64) = (a.view(), n as u64);
            launch!(self, "bit_extract", grid(n), &av, &bit, &mut out, &n64)?;
        }
        Ok(self.wrap(a.shape(), out))
    }

    fn pack_bits(&self, a: &CudaTensor) -> Result<CudaTensor> {
        let words = a.len().div_ceil(64);
        let (_, mut out) = self.output("pack_bits", &[words])?;
        if words > 0 {
            let (av, n64) = (a.view(), a.len() as u64);
            launch!(self, "pack_bits", geometry::pack_bits(a.len()).into(), &av, &mut out, &n64)?;
        }
        Ok(self.wrap(&[words], out))
    }

    fn unpack_bits(&self, packed: &CudaTensor, shape: &[usize]) -> Result<CudaTensor> {
        let n = shape::checked_numel("unpack_bits", shape)?;
        if packed.len() != n.div_ceil(64) {
            return Err(shape_err(
                "unpack_bits",
                format!("{} packed words cannot hold exactly {n} bits", packed.len()),
            ));
        }
        let (_, mut out) = self.output("unpack_bits", shape)?;
        if n > 0 {
            let (pv, n64) = (packed.view(), n as u64);
            launch!(self, "unpack_bits", grid(n), &pv, &mut out, &n64)?;
        }
        Ok(self.wrap(shape, out))
    }

    fn matmul(&self, a: &CudaTensor, b: &CudaTensor, ta: bool, tb: bool) -> Result<CudaTensor> {
        let d = matmul_dims(a.shape(), b.shape(), ta, tb)?;
        let out_shape = d.out_shape(a.shape().len());
        // SAFETY: ring_gemm writes every element of each batch's m x n output (a fill when k = 0,
        // the SIMT kernel, or the first chunk's combine / the final unpad of a limb plan).
        let mut out = unsafe { self.alloc_uninit::<u64>(d.batch * d.m * d.n)? };
        let (a_mat, b_mat, c_mat) = (d.m * d.k, d.k * d.n, d.m * d.n);
        for bi in 0..d.batch {
            let av = a.buf.slice(bi * a_mat..(bi + 1) * a_mat);
            let bv = b.buf.slice(bi * b_mat..(bi + 1) * b_mat);
            let (ars, acs) = if ta { (1, d.m) } else { (d.k, 1) };
            let (brs, bcs) = if tb { (1, d.k) } else { (d.n, 1) };
            let mut cv = out.slice_mut(bi * c_mat..(bi + 1) * c_mat);
            gemm::ring_gemm(
                self,
                (d.m, d.k, d.n),
                Operand { view: &av, rs: ars, cs: acs },
                Operand { view: &bv, rs: brs, cs: bcs },
                &mut cv,
            )?;
        }
        Ok(self.wrap(&out_shape, out))
    }

    fn im2col(
        &self,
        x: &CudaTensor,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<CudaTensor> {
        let win = Window::new("im2col", x.shape(), kernel, stride, padding)?;
        let g = WindowArgs::from(&win);
        let shape = [win.col_rows(), win.col_cols()];
        let (n, mut out) = self.output_written("im2col", &shape)?;
        if n > 0 {
            let xv = x.view();
            launch!(self, "im2col", grid(n), &xv, &mut out, &g)?;
        }
        Ok(self.wrap(&shape, out))
    }

    fn col2im(
        &self,
        cols: &CudaTensor,
        input_shape: &[usize],
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<CudaTensor> {
        let win = Window::new("col2im", input_shape, kernel, stride, padding)?;
        check_same("col2im", cols.shape(), &[win.col_rows(), win.col_cols()])?;
        let g = WindowArgs::from(&win);
        let (n, mut out) = self.output("col2im", input_shape)?;
        if n > 0 {
            let cv = cols.view();
            launch!(self, "col2im", grid(n), &cv, &mut out, &g)?;
        }
        Ok(self.wrap(input_shape, out))
    }

    fn sum_axis(&self, a: &CudaTensor, axis: usize, keepdim: bool) -> Result<CudaTensor> {
        let shape = shape::reduced_shape("sum_axis", a.shape(), axis, keepdim)?;
        let (outer, len, inner) = shape::split_at_axis(a.shape(), axis);
        let (n, mut out) = self.output("sum_axis", &shape)?;
        if n > 0 {
            let g = [outer, len, inner].map(|v| v as u64);
            let av = a.view();
            launch!(self, "sum_middle", grid(n), &av, &mut out, &g[0], &g[1], &g[2])?;
        }
        Ok(self.wrap(&shape, out))
    }

    fn reshape(&self, a: &CudaTensor, shape: &[usize]) -> Result<CudaTensor> {
        shape::check_reshape(a.shape(), shape)?;
        Ok(CudaTensor { shape: shape.to_vec(), buf: a.buf.clone() })
    }

    fn permute(&self, a: &CudaTensor, perm: &[usize]) -> Result<CudaTensor> {
        let (out_shape, st) = shape::permute_strides(a.shape(), perm)?;
        self.gather(a, &out_shape, &st)
    }

    fn slice(&self, a: &CudaTensor, axis: usize, start: usize, end: usize) -> Result<CudaTensor> {
        let shape = shape::slice_shape(a.shape(), axis, start, end)?;
        let (outer, len, inner) = shape::split_at_axis(a.shape(), axis);
        let w = (end - start) * inner;
        let mut out = self.alloc::<u64>(outer * w)?;
        self.copy_rows(a, len * inner, start * inner, &mut out, w, 0, outer, w)?;
        Ok(self.wrap(&shape, out))
    }

    fn concat(&self, parts: &[&CudaTensor], axis: usize) -> Result<CudaTensor> {
        let shapes: Vec<&[usize]> = parts.iter().map(|p| p.shape()).collect();
        let out_shape = concat_shape(&shapes, axis)?;
        let (outer, total, inner) = shape::split_at_axis(&out_shape, axis);
        let mut out = self.alloc::<u64>(outer * total * inner)?;
        let mut at = 0;
        for p in parts {
            let len = p.shape()[axis];
            self.copy_rows(p, len * inner, 0, &mut out, total * inner, at * inner, outer, len * inner)?;
            at += len;
        }
        Ok(self.wrap(&out_shape, out))
    }

    fn broadcast_to(&self, a: &CudaTensor, shape: &[usize]) -> Result<CudaTensor> {
        let st = shape::broadcast_strides(a.shape(), shape)?;
        self.gather(a, shape, &st)
    }

    fn prg_fill(&self, key: &Key, stream: u64, counter: u64, shape: &[usize]) -> Result<CudaTensor> {
        let n = shape::checked_numel("prg_fill", shape)?;
        let k = AesKey::from(key);
        let n64 = n as u64;
        let mut out = self.alloc::<u64>(n)?;
        if n > 0 {
            launch!(self, "aes_ctr_fill", geometry::aes_ctr_fill(n).into(), &k, &stream, &counter, &mut out, &n64)?;
        }
        Ok(self.wrap(shape, out))
    }
}
