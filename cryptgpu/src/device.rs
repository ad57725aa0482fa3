//! Choosing the device at run time: [`DeviceChoice`] (`auto`, `cpu`, `cuda`) opens an
//! [`AnyBackend`], a [`Backend`] that dispatches every operation to the CPU or the CUDA backend.
//!
//! A program written once against [`AnyBackend`] runs on either device; its tensors
//! ([`AnyTensor`]) remember their device, and a tensor of the other device passed to an operation
//! is an error ([`RingError::Invalid`]), never a panic.
//!
//! ```
//! use cryptgpu::device::{AnyBackend, DeviceChoice};
//! use cryptgpu::prelude::*;
//!
//! let be: AnyBackend = "cpu".parse::<DeviceChoice>()?.open()?;
//! let t = be.upload(&RingTensor::new(&[2], vec![1, 2])?)?;
//! assert_eq!(be.download(&be.binary(cryptgpu::ring::BinaryOp::Add, &t, &t)?)?.data(), &[2, 4]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::str::FromStr;

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_kernels_cuda::{CudaBackend, CudaError, CudaTensor, DeviceInfo};
use cryptgpu_ring::prg::Key;
use cryptgpu_ring::{
    Backend, BinaryOp, Conv2dParams, DeviceTensor, Pool2dParams, Result, RingError, RingTensor, ScalarOp, ShiftOp,
    UnaryOp,
};
use thiserror::Error;

/// Which device runs a party's local computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceChoice {
    /// The GPU when one is usable, else the CPU.
    #[default]
    Auto,
    /// The rayon CPU backend.
    Cpu,
    /// The CUDA backend (an error when no GPU is usable).
    Cuda,
}

/// Errors of choosing or opening a device.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DeviceError {
    /// Not `auto`, `cpu` or `cuda`.
    #[error("unknown device {0:?} (expected auto, cpu or cuda)")]
    Unknown(String),
    /// The CUDA backend was asked for and cannot be opened.
    #[error("the GPU backend is unavailable: {0}")]
    CudaUnavailable(#[source] CudaError),
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(s: &str) -> std::result::Result<Self, DeviceError> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            _ => Err(DeviceError::Unknown(s.into())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
        })
    }
}

impl DeviceChoice {
    /// Opens the chosen device; `Auto` falls back to the CPU when no GPU works.
    pub fn open(self) -> std::result::Result<AnyBackend, DeviceError> {
        self.open_with_fallback().map(|(be, _)| be)
    }

    /// [`open`](Self::open), with the reason when `Auto` fell back to the CPU (to tell the user).
    pub fn open_with_fallback(self) -> std::result::Result<(AnyBackend, Option<CudaError>), DeviceError> {
        match self {
            DeviceChoice::Cpu => Ok((AnyBackend::Cpu(CpuBackend), None)),
            DeviceChoice::Cuda => {
                Ok((AnyBackend::Cuda(CudaBackend::new().map_err(DeviceError::CudaUnavailable)?), None))
            }
            DeviceChoice::Auto => match CudaBackend::new() {
                Ok(be) => Ok((AnyBackend::Cuda(be), None)),
                Err(e) => Ok((AnyBackend::Cpu(CpuBackend), Some(e))),
            },
        }
    }
}

/// A backend chosen at run time: the CPU or a GPU.
#[derive(Debug, Clone)]
pub enum AnyBackend {
    /// The CPU.
    Cpu(CpuBackend),
    /// A GPU.
    Cuda(CudaBackend),
}

impl AnyBackend {
    /// The GPU's name, memory and versions, when this is a GPU.
    pub fn gpu_info(&self) -> Option<&DeviceInfo> {
        match self {
            AnyBackend::Cpu(_) => None,
            AnyBackend::Cuda(be) => Some(be.info()),
        }
    }
}

/// A tensor of an [`AnyBackend`]: on the CPU or on a GPU.
#[derive(Debug, Clone)]
pub enum AnyTensor {
    /// In host memory.
    Cpu(RingTensor),
    /// In GPU memory.
    Cuda(CudaTensor),
}

impl DeviceTensor for AnyTensor {
    fn shape(&self) -> &[usize] {
        match self {
            AnyTensor::Cpu(t) => t.shape(),
            AnyTensor::Cuda(t) => DeviceTensor::shape(t),
        }
    }
}

impl AnyTensor {
    /// `"cpu"` or `"cuda"`.
    fn device(&self) -> &'static str {
        match self {
            AnyTensor::Cpu(_) => "cpu",
            AnyTensor::Cuda(_) => "cuda",
        }
    }
}

/// The two concrete backends, with the [`AnyTensor`] variant of each.
trait Concrete: Backend {
    /// `t` as this backend's tensor; an error for the other device's.
    fn pick<'a>(t: &'a AnyTensor, op: &'static str) -> Result<&'a Self::Tensor>;
    /// Wraps this backend's tensor.
    fn wrap(t: Self::Tensor) -> AnyTensor;
}

fn wrong_device(t: &AnyTensor, op: &'static str, backend: &str) -> RingError {
    RingError::Invalid { op, detail: format!("a {} tensor was passed to the {backend} backend", t.device()) }
}

impl Concrete for CpuBackend {
    fn pick<'a>(t: &'a AnyTensor, op: &'static str) -> Result<&'a RingTensor> {
        match t {
            AnyTensor::Cpu(t) => Ok(t),
            other => Err(wrong_device(other, op, "cpu")),
        }
    }

    fn wrap(t: RingTensor) -> AnyTensor {
        AnyTensor::Cpu(t)
    }
}

impl Concrete for CudaBackend {
    fn pick<'a>(t: &'a AnyTensor, op: &'static str) -> Result<&'a CudaTensor> {
        match t {
            AnyTensor::Cuda(t) => Ok(t),
            other => Err(wrong_device(other, op, "cuda")),
        }
    }

    fn wrap(t: CudaTensor) -> AnyTensor {
        AnyTensor::Cuda(t)
    }
}

/// `t` as `be`'s tensor (the backend value only names the type).
fn pick<'a, B: Concrete>(_: &B, t: &'a AnyTensor, op: &'static str) -> Result<&'a B::Tensor> {
    B::pick(t, op)
}

/// Wraps `be`'s result.
fn wrap<B: Concrete>(_: &B, t: Result<B::Tensor>) -> Result<AnyTensor> {
    t.map(B::wrap)
}

/// Runs `$body` with `$be` bound to the concrete backend.
macro_rules! dispatch {
    ($self:expr, |$be:ident| $body:expr) => {
        match $self {
            AnyBackend::Cpu($be) => $body,
            AnyBackend::Cuda($be) => $body,
        }
    };
}

impl Backend for AnyBackend {
    type Tensor = AnyTensor;

    fn name(&self) -> &'static str {
        dispatch!(self, |be| be.name())
    }

    fn synchronize(&self) -> Result<()> {
        dispatch!(self, |be| be.synchronize())
    }

    fn upload(&self, t: &RingTensor) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.upload(t)))
    }

    fn upload_owned(&self, t: RingTensor) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.upload_owned(t)))
    }

    fn download(&self, t: &AnyTensor) -> Result<RingTensor> {
        dispatch!(self, |be| be.download(pick(be, t, "download")?))
    }

    fn full(&self, shape: &[usize], value: u64) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.full(shape, value)))
    }

    fn zeros(&self, shape: &[usize]) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.zeros(shape)))
    }

    fn binary(&self, op: BinaryOp, a: &AnyTensor, b: &AnyTensor) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.binary(op, pick(be, a, "binary")?, pick(be, b, "binary")?)))
    }

    fn unary(&self, op: UnaryOp, a: &AnyTensor) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.unary(op, pick(be, a, "unary")?)))
    }

    fn scalar(&self, op: ScalarOp, a: &AnyTensor, s: u64) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.scalar(op, pick(be, a, "scalar")?, s)))
    }

    fn shift(&self, op: ShiftOp, a: &AnyTensor, bits: u32) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.shift(op, pick(be, a, "shift")?, bits)))
    }

    fn bit_extract(&self, a: &AnyTensor, bit: u32) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.bit_extract(pick(be, a, "bit_extract")?, bit)))
    }

    fn pack_bits(&self, a: &AnyTensor) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.pack_bits(pick(be, a, "pack_bits")?)))
    }

    fn unpack_bits(&self, packed: &AnyTensor, shape: &[usize]) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.unpack_bits(pick(be, packed, "unpack_bits")?, shape)))
    }

    fn matmul(&self, a: &AnyTensor, b: &AnyTensor, ta: bool, tb: bool) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.matmul(pick(be, a, "matmul")?, pick(be, b, "matmul")?, ta, tb)))
    }

    fn im2col(
        &self,
        x: &AnyTensor,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.im2col(pick(be, x, "im2col")?, kernel, stride, padding)))
    }

    fn col2im(
        &self,
        cols: &AnyTensor,
        input_shape: &[usize],
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.col2im(pick(be, cols, "col2im")?, input_shape, kernel, stride, padding)))
    }

    fn conv2d(&self, x: &AnyTensor, w: &AnyTensor, p: &Conv2dParams) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.conv2d(pick(be, x, "conv2d")?, pick(be, w, "conv2d")?, p)))
    }

    fn conv2d_input_grad(
        &self,
        gy: &AnyTensor,
        w: &AnyTensor,
        input_shape: &[usize],
        p: &Conv2dParams,
    ) -> Result<AnyTensor> {
        const OP: &str = "conv2d_input_grad";
        dispatch!(self, |be| wrap(be, be.conv2d_input_grad(pick(be, gy, OP)?, pick(be, w, OP)?, input_shape, p)))
    }

    fn conv2d_weight_grad(
        &self,
        x: &AnyTensor,
        gy: &AnyTensor,
        kernel: (usize, usize),
        p: &Conv2dParams,
    ) -> Result<AnyTensor> {
        const OP: &str = "conv2d_weight_grad";
        dispatch!(self, |be| wrap(be, be.conv2d_weight_grad(pick(be, x, OP)?, pick(be, gy, OP)?, kernel, p)))
    }

    fn sum_pool2d(&self, x: &AnyTensor, p: &Pool2dParams) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.sum_pool2d(pick(be, x, "sum_pool2d")?, p)))
    }

    fn sum_pool2d_backward(&self, gy: &AnyTensor, input_shape: &[usize], p: &Pool2dParams) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.sum_pool2d_backward(pick(be, gy, "sum_pool2d_backward")?, input_shape, p)))
    }

    fn sum_axis(&self, a: &AnyTensor, axis: usize, keepdim: bool) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.sum_axis(pick(be, a, "sum_axis")?, axis, keepdim)))
    }

    fn reshape(&self, a: &AnyTensor, shape: &[usize]) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.reshape(pick(be, a, "reshape")?, shape)))
    }

    fn permute(&self, a: &AnyTensor, perm: &[usize]) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.permute(pick(be, a, "permute")?, perm)))
    }

    fn slice(&self, a: &AnyTensor, axis: usize, start: usize, end: usize) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.slice(pick(be, a, "slice")?, axis, start, end)))
    }

    fn concat(&self, parts: &[&AnyTensor], axis: usize) -> Result<AnyTensor> {
        dispatch!(self, |be| {
            let parts = parts.iter().map(|t| pick(be, t, "concat")).collect::<Result<Vec<_>>>()?;
            wrap(be, be.concat(&parts, axis))
        })
    }

    fn broadcast_to(&self, a: &AnyTensor, shape: &[usize]) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.broadcast_to(pick(be, a, "broadcast_to")?, shape)))
    }

    fn prg_fill(&self, key: &Key, stream: u64, counter: u64, shape: &[usize]) -> Result<AnyTensor> {
        dispatch!(self, |be| wrap(be, be.prg_fill(key, stream, counter, shape)))
    }
}
