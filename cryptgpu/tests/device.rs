//! `AnyBackend` dispatches to the chosen backend: the same bits as `CpuBackend`; `auto` falls
//! back to the CPU without a GPU; `cuda` without one is a clear error.

use cryptgpu::cuda::cuda_available;
use cryptgpu::device::{AnyBackend, AnyTensor, DeviceChoice, DeviceError};
use cryptgpu::prelude::*;
use cryptgpu::ring::prg::Key;

const KEY: Key = [7; 16];
use cryptgpu::ring::{BinaryOp, Conv2dParams, Pool2dParams, ScalarOp, ShiftOp, UnaryOp};

fn tensor(shape: &[usize], seed: u64) -> RingTensor {
    let n = shape.iter().product::<usize>() as u64;
    RingTensor::new(shape, (0..n).map(|i| (i + seed).wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect()).unwrap()
}

/// Every backend operation on `be` and on `CpuBackend`, downloaded.
fn ops<B: Backend>(be: &B) -> Vec<RingTensor> {
    let up = |t: &RingTensor| be.upload(t).unwrap();
    let a = up(&tensor(&[4, 6], 1));
    let b = up(&tensor(&[4, 6], 2));
    let m = up(&tensor(&[6, 5], 3));
    let x = up(&tensor(&[2, 3, 5, 5], 4));
    let w = up(&tensor(&[4, 3, 3, 3], 5));
    let conv = Conv2dParams { stride: (1, 1), padding: (1, 1) };
    let pool = Pool2dParams { kernel: (2, 2), stride: (2, 2), padding: (0, 0) };
    let y = be.conv2d(&x, &w, &conv).unwrap();
    let outs = vec![
        be.binary(BinaryOp::Mul, &a, &b).unwrap(),
        be.unary(UnaryOp::Neg, &a).unwrap(),
        be.scalar(ScalarOp::Add, &a, 7).unwrap(),
        be.shift(ShiftOp::RightArith, &a, 13).unwrap(),
        be.bit_extract(&a, 63).unwrap(),
        be.unpack_bits(&be.pack_bits(&a).unwrap(), &[4, 6]).unwrap(),
        be.matmul(&a, &m, false, false).unwrap(),
        be.matmul(&a, &b, true, false).unwrap(),
        y.clone(),
        be.conv2d_input_grad(&y, &w, &[2, 3, 5, 5], &conv).unwrap(),
        be.conv2d_weight_grad(&x, &y, (3, 3), &conv).unwrap(),
        be.sum_pool2d(&x, &pool).unwrap(),
        be.sum_axis(&a, 1, true).unwrap(),
        be.permute(&x, &[0, 2, 3, 1]).unwrap(),
        be.slice(&a, 1, 2, 5).unwrap(),
        be.concat(&[&a, &b], 0).unwrap(),
        be.broadcast_to(&be.reshape(&be.sum_axis(&a, 0, false).unwrap(), &[1, 6]).unwrap(), &[3, 6]).unwrap(),
        be.prg_fill(&KEY, 3, 0, &[9, 7]).unwrap(),
        be.full(&[3], 5).unwrap(),
    ];
    be.synchronize().unwrap();
    outs.iter().map(|t| be.download(t).unwrap()).collect()
}

#[test]
fn cpu_choice_gives_the_cpu_backends_bits() {
    let be = DeviceChoice::Cpu.open().unwrap();
    assert_eq!(be.name(), "cpu");
    assert!(be.gpu_info().is_none());
    assert_eq!(ops(&be), ops(&CpuBackend));
}

/// Party 0 shares 50 values; their ReLU is opened.
fn relu_program<B: Backend, T: Transport>(p: &mut Party<B, T>) -> Result<RingTensor, SharingError> {
    let x = p.codec().encode_tensor(&[50], &(0..50).map(|i| f64::from(i) / 4.0 - 6.0).collect::<Vec<_>>())?;
    let owner = p.id() == 0;
    let s = p.input(0, owner.then_some(&x), &[50])?;
    let (y, _) = p.relu(&s)?;
    p.reveal(&y)
}

#[test]
fn protocols_on_any_backend_match_the_cpu_backend() {
    let config = RunConfig { keys: KeySource::InsecureSeed(2), ..RunConfig::default() };
    let any = run_local(DeviceChoice::Cpu.open().unwrap(), config, relu_program).unwrap();
    let cpu = run_local(CpuBackend, config, relu_program).unwrap();
    for (a, c) in any.iter().zip(&cpu) {
        assert_eq!(a.value, c.value);
        assert_eq!(a.counters, c.counters);
    }
}

#[test]
fn choices_parse_and_print() {
    for c in [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda] {
        assert_eq!(c.to_string().parse::<DeviceChoice>(), Ok(c));
    }
    assert_eq!("CUDA".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda));
    let e = "gpu".parse::<DeviceChoice>().unwrap_err();
    assert_eq!(e, DeviceError::Unknown("gpu".into()));
    assert!(e.to_string().contains("expected auto, cpu or cuda"));
}

#[test]
fn auto_falls_back_to_the_cpu_and_cuda_fails_clearly_without_a_gpu() {
    if cuda_available().is_ok() {
        // With a GPU: auto opens it, and tensors of one device are refused by the other.
        let (gpu, why) = DeviceChoice::Auto.open_with_fallback().unwrap();
        assert!(why.is_none());
        assert_eq!(gpu.name(), "cuda");
        assert!(gpu.gpu_info().is_some());
        assert_eq!(ops(&gpu), ops(&CpuBackend));
        let on_cpu = DeviceChoice::Cpu.open().unwrap().upload(&tensor(&[3], 0)).unwrap();
        let e = gpu.binary(BinaryOp::Add, &on_cpu, &on_cpu).unwrap_err();
        assert!(e.to_string().contains("a cpu tensor was passed to the cuda backend"), "{e}");
        return;
    }
    let (be, why) = DeviceChoice::Auto.open_with_fallback().unwrap();
    assert!(matches!(be, AnyBackend::Cpu(_)));
    assert!(why.is_some());
    let e = DeviceChoice::Cuda.open().unwrap_err();
    assert!(matches!(e, DeviceError::CudaUnavailable(_)));
    assert!(e.to_string().starts_with("the GPU backend is unavailable: "), "{e}");
    let t = be.upload(&tensor(&[3], 0)).unwrap();
    assert!(matches!(t, AnyTensor::Cpu(_)));
}
