//! The operation-level checks: every [`Backend`] method on seeded random inputs of several shapes
//! (including sizes that are multiples of no block size, and rejected inputs), on the candidate
//! and on the CPU oracle.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_ring::{Backend, BinaryOp, Conv2dParams, Pool2dParams, RingError, RingTensor, ScalarOp, ShiftOp, UnaryOp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Check, Config, Sizes};

/// Runs the operation-level checks on `dev`.
pub(crate) fn run<D: Backend>(dev: &D, config: &Config) -> Vec<Check> {
    let mut s = Suite { dev, rng: ChaCha8Rng::seed_from_u64(config.seed), sizes: config.sizes, checks: Vec::new() };
    s.transfer();
    s.elementwise();
    s.layout();
    s.linear();
    s.conv();
    s.prg();
    s.rejections();
    s.checks
}

/// The first differing element of two tensors (or their shapes); empty when they are equal.
pub(crate) fn first_mismatch(got: &RingTensor, want: &RingTensor) -> String {
    if got.shape() != want.shape() {
        return format!("shape {:?} vs CPU {:?}", got.shape(), want.shape());
    }
    let differ = |(x, y): &(&u64, &u64)| x != y;
    match got.data().iter().zip(want.data()).position(|p| differ(&p)) {
        Some(i) => format!(
            "element {i}: candidate {:#x} vs CPU {:#x} ({} of {} differ)",
            got.data()[i],
            want.data()[i],
            got.data().iter().zip(want.data()).filter(differ).count(),
            got.len()
        ),
        None => String::new(),
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// What the candidate did with one input.
enum Outcome {
    Value(RingTensor),
    Error(RingError),
    Panic(String),
}

struct Suite<'a, D: Backend> {
    dev: &'a D,
    rng: ChaCha8Rng,
    sizes: Sizes,
    checks: Vec<Check>,
}

/// Compares one operation, written once for both backends (`$be` is the backend, `$x` the
/// uploaded inputs).
macro_rules! compare {
    ($s:expr, $name:expr, [$($input:expr),*], |$be:ident, $x:ident| $body:expr) => {
        $s.compare($name, &[$($input),*], |$be: &CpuBackend, $x: &[&RingTensor]| $body, |$be: &D, $x: &[&D::Tensor]| $body)
    };
}

impl<D: Backend> Suite<'_, D> {
    fn rand(&mut self, shape: &[usize]) -> RingTensor {
        let rng = &mut self.rng;
        RingTensor::from_fn(shape, |_| rng.gen())
    }

    /// Runs `op` on both backends with the same host inputs and records the comparison; on the
    /// candidate, the inputs are uploaded, the result synchronised and downloaded, and a panic is
    /// caught (and fails the check).
    fn compare(
        &mut self,
        name: String,
        inputs: &[&RingTensor],
        op_cpu: impl Fn(&CpuBackend, &[&RingTensor]) -> cryptgpu_ring::Result<RingTensor>,
        op_dev: impl Fn(&D, &[&D::Tensor]) -> cryptgpu_ring::Result<D::Tensor>,
    ) {
        let want = op_cpu(&CpuBackend, inputs);
        let dev = self.dev;
        let start = Instant::now();
        let got = catch_unwind(AssertUnwindSafe(|| {
            let ups = inputs.iter().map(|t| dev.upload(t)).collect::<cryptgpu_ring::Result<Vec<_>>>()?;
            let refs: Vec<&D::Tensor> = ups.iter().collect();
            let out = op_dev(dev, &refs)?;
            dev.synchronize()?;
            dev.download(&out)
        }));
        let seconds = start.elapsed().as_secs_f64();
        let got = match got {
            Ok(Ok(t)) => Outcome::Value(t),
            Ok(Err(e)) => Outcome::Error(e),
            Err(p) => Outcome::Panic(panic_message(p.as_ref())),
        };
        let detail = match (got, want) {
            (Outcome::Value(g), Ok(w)) => first_mismatch(&g, &w),
            (Outcome::Error(e), Ok(_)) => format!("candidate error: {e}"),
            (Outcome::Value(_), Err(e)) => format!("the CPU rejects the input ({e}) but the candidate succeeded"),
            (Outcome::Error(_), Err(_)) => String::new(), // both reject: agreement
            (Outcome::Panic(m), _) => format!("candidate panicked: {m}"),
        };
        self.checks.push(Check { name, passed: detail.is_empty(), detail, seconds });
    }

    /// A value the oracle derives from the inputs (the input of a later check); a failed check
    /// when the oracle itself fails.
    fn oracle(&mut self, name: &str, r: cryptgpu_ring::Result<RingTensor>) -> Option<RingTensor> {
        r.map_err(|e| {
            let detail = format!("the CPU oracle failed: {e}");
            self.checks.push(Check { name: format!("oracle: {name}"), passed: false, detail, seconds: 0.0 });
        })
        .ok()
    }

    /// Upload and download, `upload_owned`, `zeros`.
    fn transfer(&mut self) {
        for shape in [vec![1], vec![3, 257]] {
            let a = self.rand(&shape);
            compare!(self, format!("upload/download {shape:?}"), [&a], |_be, x| Ok(x[0].clone()));
            compare!(self, format!("upload_owned {shape:?}"), [&a], |be, x| be.upload_owned(be.download(x[0])?));
            compare!(self, format!("zeros {shape:?}"), [], |be, _x| be.zeros(&shape));
        }
    }

    fn elementwise(&mut self) {
        let mut sizes = vec![vec![1], vec![1000], vec![3, 257]];
        if self.sizes >= Sizes::Standard {
            sizes.push(vec![65_537]);
        }
        if self.sizes >= Sizes::Full {
            sizes.push(vec![(1 << 22) + 3]);
        }
        for shape in sizes {
            let (a, b) = (self.rand(&shape), self.rand(&shape));
            let s: u64 = self.rng.gen();
            for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Xor, BinaryOp::And, BinaryOp::Or] {
                compare!(self, format!("binary {op:?} {shape:?}"), [&a, &b], |be, x| be.binary(op, x[0], x[1]));
            }
            for op in [UnaryOp::Neg, UnaryOp::Not] {
                compare!(self, format!("unary {op:?} {shape:?}"), [&a], |be, x| be.unary(op, x[0]));
            }
            for op in [
                ScalarOp::Add,
                ScalarOp::Sub,
                ScalarOp::SubFrom,
                ScalarOp::Mul,
                ScalarOp::Xor,
                ScalarOp::And,
                ScalarOp::Or,
            ] {
                compare!(self, format!("scalar {op:?} {shape:?}"), [&a], |be, x| be.scalar(op, x[0], s));
            }
            for op in [ShiftOp::Left, ShiftOp::RightLogical, ShiftOp::RightArith] {
                for bits in [0, 1, 20, 63] {
                    compare!(self, format!("shift {op:?} {bits} {shape:?}"), [&a], |be, x| be.shift(op, x[0], bits));
                }
            }
            for bit in [0, 31, 63] {
                compare!(self, format!("bit_extract {bit} {shape:?}"), [&a], |be, x| be.bit_extract(x[0], bit));
            }
            compare!(self, format!("pack_bits {shape:?}"), [&a], |be, x| be.pack_bits(x[0]));
            if let Some(packed) = self.oracle("pack_bits", CpuBackend.pack_bits(&a)) {
                compare!(self, format!("unpack_bits {shape:?}"), [&packed], |be, x| be.unpack_bits(x[0], &shape));
            }
            compare!(self, format!("full {shape:?}"), [], |be, _x| be.full(&shape, s));
        }
    }

    fn layout(&mut self) {
        let a = self.rand(&[3, 4, 5, 7]);
        for perm in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] {
            compare!(self, format!("permute {perm:?}"), [&a], |be, x| be.permute(x[0], &perm));
        }
        for axis in 0..4 {
            for keepdim in [false, true] {
                compare!(self, format!("sum_axis {axis} keepdim {keepdim}"), [&a], |be, x| be
                    .sum_axis(x[0], axis, keepdim));
            }
            compare!(self, format!("slice axis {axis}"), [&a], |be, x| be.slice(x[0], axis, 1, 3));
            compare!(self, format!("concat axis {axis}"), [&a, &a], |be, x| be.concat(&[x[0], x[1]], axis));
        }
        compare!(self, "reshape".into(), [&a], |be, x| be.reshape(x[0], &[12, 35]));
        let (long, short) = (self.rand(&[1000]), self.rand(&[77]));
        compare!(self, "concat_owned".into(), [&long, &short], |be, x| be
            .concat_owned(vec![x[0].clone(), x[1].clone()]));
        let small = self.rand(&[4, 1, 7]);
        compare!(self, "broadcast_to".into(), [&small], |be, x| be.broadcast_to(x[0], &[2, 4, 5, 7]));
    }

    fn linear(&mut self) {
        let mut shapes = vec![(1, 1, 1), (7, 13, 5), (64, 64, 64), (100, 300, 70)];
        if self.sizes >= Sizes::Standard {
            shapes.extend([(513, 1000, 257), (16, 40_000, 16)]);
        }
        if self.sizes >= Sizes::Full {
            shapes.push((2, (1 << 21) + 5, 3));
        }
        for (m, k, n) in shapes {
            let a = self.rand(&[m, k]);
            let b = self.rand(&[k, n]);
            let bt = self.rand(&[n, k]);
            compare!(self, format!("matmul {m}x{k}x{n}"), [&a, &b], |be, x| be.matmul(x[0], x[1], false, false));
            compare!(self, format!("matmul {m}x{k}x{n} B^T"), [&a, &bt], |be, x| be.matmul(x[0], x[1], false, true));
        }
        let (a, b) = (self.rand(&[4, 33, 17]), self.rand(&[4, 9, 33]));
        compare!(self, "batched matmul A^T B^T".into(), [&a, &b], |be, x| be.matmul(x[0], x[1], true, true));
    }

    fn conv(&mut self) {
        let cases = [
            ([2, 3, 9, 7], [4, 3, 3, 3], Conv2dParams { stride: (1, 1), padding: (1, 1) }),
            ([1, 3, 32, 32], [64, 3, 11, 11], Conv2dParams { stride: (4, 4), padding: (2, 2) }),
            ([3, 16, 12, 12], [8, 16, 5, 5], Conv2dParams { stride: (2, 1), padding: (2, 0) }),
        ];
        for (xs, ws, p) in cases {
            let (x, w) = (self.rand(&xs), self.rand(&ws));
            let k = (ws[2], ws[3]);
            compare!(self, format!("im2col {xs:?} kernel {k:?}"), [&x], |be, t| be
                .im2col(t[0], k, p.stride, p.padding));
            if let Some(cols) = self.oracle("im2col", CpuBackend.im2col(&x, k, p.stride, p.padding)) {
                let c = self.rand(cols.shape());
                compare!(self, format!("col2im {xs:?} kernel {k:?}"), [&c], |be, t| be
                    .col2im(t[0], &xs, k, p.stride, p.padding));
            }
            compare!(self, format!("conv2d {xs:?} {ws:?}"), [&x, &w], |be, t| be.conv2d(t[0], t[1], &p));
            let Some(y) = self.oracle("conv2d", CpuBackend.conv2d(&x, &w, &p)) else { continue };
            let g = self.rand(y.shape());
            compare!(self, format!("conv2d_input_grad {xs:?}"), [&g, &w], |be, t| be
                .conv2d_input_grad(t[0], t[1], &xs, &p));
            compare!(self, format!("conv2d_weight_grad {xs:?}"), [&x, &g], |be, t| be
                .conv2d_weight_grad(t[0], t[1], k, &p));
        }
        let x = self.rand(&[2, 3, 7, 6]);
        let p = Pool2dParams { kernel: (3, 2), stride: (2, 2), padding: (1, 0) };
        compare!(self, "sum_pool2d".into(), [&x], |be, t| be.sum_pool2d(t[0], &p));
        let g = self.rand(&[2, 3, 4, 3]);
        compare!(self, "sum_pool2d_backward".into(), [&g], |be, t| be.sum_pool2d_backward(t[0], &[2, 3, 7, 6], &p));
    }

    fn prg(&mut self) {
        let key: [u8; 16] = self.rng.gen();
        let mut cases = vec![(0u64, 0u64, 1usize), (5, u64::MAX - 3, 21), (u64::MAX, u64::MAX, 4), (2, 1 << 40, 1001)];
        if self.sizes >= Sizes::Standard {
            cases.push((3, 1 << 33, 100_001));
        }
        if self.sizes >= Sizes::Full {
            cases.push((9, 77, (1 << 22) + 1));
        }
        for (stream, counter, n) in cases {
            compare!(self, format!("prg_fill stream {stream} counter {counter} n {n}"), [], |be, _x| be.prg_fill(
                &key,
                stream,
                counter,
                &[n]
            ));
        }
    }

    /// Invalid inputs: the candidate must reject (not panic on, not accept) what the CPU rejects.
    fn rejections(&mut self) {
        let (a, b) = (self.rand(&[4, 5]), self.rand(&[5, 4]));
        let packed = self.rand(&[2]);
        compare!(self, "rejects binary of different shapes".into(), [&a, &b], |be, x| be.binary(
            BinaryOp::Add,
            x[0],
            x[1]
        ));
        compare!(self, "rejects matmul of mismatched inner sizes".into(), [&a, &a], |be, x| be
            .matmul(x[0], x[1], false, false));
        compare!(self, "rejects shift by 64".into(), [&a], |be, x| be.shift(ShiftOp::Left, x[0], 64));
        compare!(self, "rejects bit_extract 64".into(), [&a], |be, x| be.bit_extract(x[0], 64));
        compare!(self, "rejects unpack_bits of the wrong word count".into(), [&packed], |be, x| be
            .unpack_bits(x[0], &[200]));
        compare!(self, "rejects slice past the end".into(), [&a], |be, x| be.slice(x[0], 1, 2, 6));
        compare!(self, "rejects permute with a repeated axis".into(), [&a], |be, x| be.permute(x[0], &[0, 0]));
        compare!(self, "rejects reshape to another element count".into(), [&a], |be, x| be.reshape(x[0], &[3, 7]));
        compare!(self, "rejects broadcast_to an incompatible shape".into(), [&a], |be, x| be
            .broadcast_to(x[0], &[4, 6]));
        compare!(self, "rejects sum_axis past the last axis".into(), [&a], |be, x| be.sum_axis(x[0], 2, false));
    }
}
