//! The differential suite: every `Backend` operation and every protocol on a device backend,
//! compared bit for bit with the CPU oracle on seeded random inputs of several shapes (including
//! sizes that are not multiples of any block size, and a GEMM with K > 2^21).
//!
//! Used by `cargo test` (when a GPU is present) and by `cryptgpu selftest`.

use std::time::Instant;

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_net::Transport;
use cryptgpu_ring::{
    Backend, BinaryOp, Conv2dParams, FixedPoint, Pool2dParams, RingTensor, ScalarOp, ShiftOp, UnaryOp,
};
use cryptgpu_sharing::{run_local, KeySource, Party, RunConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The outcome of one comparison.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// What was compared.
    pub name: String,
    /// True when the device result equals the CPU result bit for bit.
    pub passed: bool,
    /// Why it failed (first mismatch or error), empty when it passed.
    pub detail: String,
    /// Wall time of the device side.
    pub seconds: f64,
}

/// Runs the suite on `dev` with inputs from `seed`; `large` adds the big cases (K > 2^21, 10^6+ elements).
pub fn run_suite<D: Backend>(dev: &D, seed: u64, large: bool) -> Vec<Check> {
    let mut s = Suite { dev, cpu: CpuBackend, rng: ChaCha8Rng::seed_from_u64(seed), checks: Vec::new() };
    s.elementwise(large);
    s.layout();
    s.linear(large);
    s.conv();
    s.prg(large);
    s.protocols(seed);
    s.checks
}

struct Suite<'a, D: Backend> {
    dev: &'a D,
    cpu: CpuBackend,
    rng: ChaCha8Rng,
    checks: Vec<Check>,
}

fn first_mismatch(a: &RingTensor, b: &RingTensor) -> String {
    if a.shape() != b.shape() {
        return format!("shape {:?} vs CPU {:?}", a.shape(), b.shape());
    }
    match a.data().iter().zip(b.data()).position(|(x, y)| x != y) {
        Some(i) => format!(
            "element {i}: device {:#x} vs CPU {:#x} ({} of {} differ)",
            a.data()[i],
            b.data()[i],
            a.data().iter().zip(b.data()).filter(|(x, y)| x != y).count(),
            a.len()
        ),
        None => String::new(),
    }
}

impl<D: Backend> Suite<'_, D> {
    fn rand(&mut self, shape: &[usize]) -> RingTensor {
        let rng = &mut self.rng;
        RingTensor::from_fn(shape, |_| rng.gen())
    }

    /// Runs `op` on both backends with the same host inputs and records the comparison.
    fn compare(
        &mut self,
        name: String,
        inputs: &[&RingTensor],
        op_cpu: impl Fn(&CpuBackend, &[&RingTensor]) -> cryptgpu_ring::Result<RingTensor>,
        op_dev: impl Fn(&D, &[&D::Tensor]) -> cryptgpu_ring::Result<D::Tensor>,
    ) {
        let want = op_cpu(&self.cpu, inputs);
        let start = Instant::now();
        let got = (|| {
            let ups = inputs.iter().map(|t| self.dev.upload(t)).collect::<cryptgpu_ring::Result<Vec<_>>>()?;
            let refs: Vec<&D::Tensor> = ups.iter().collect();
            let out = op_dev(self.dev, &refs)?;
            self.dev.download(&out)
        })();
        let seconds = start.elapsed().as_secs_f64();
        let detail = match (got, want) {
            (Ok(g), Ok(w)) => first_mismatch(&g, &w),
            (Err(e), Ok(_)) => format!("device error: {e}"),
            (Ok(_), Err(e)) => format!("CPU error {e} but the device succeeded"),
            (Err(_), Err(_)) => String::new(), // both reject: agreement
        };
        self.checks.push(Check { name, passed: detail.is_empty(), detail, seconds });
    }

    fn elementwise(&mut self, large: bool) {
        let mut sizes = vec![vec![1], vec![1000], vec![3, 257], vec![65_537]];
        if large {
            sizes.push(vec![(1 << 22) + 3]);
        }
        for shape in sizes {
            let (a, b) = (self.rand(&shape), self.rand(&shape));
            let s: u64 = self.rng.gen();
            for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Xor, BinaryOp::And, BinaryOp::Or] {
                self.compare(
                    format!("binary {op:?} {shape:?}"),
                    &[&a, &b],
                    |be, x| be.binary(op, x[0], x[1]),
                    |be, x| be.binary(op, x[0], x[1]),
                );
            }
            for op in [UnaryOp::Neg, UnaryOp::Not] {
                self.compare(
                    format!("unary {op:?} {shape:?}"),
                    &[&a],
                    |be, x| be.unary(op, x[0]),
                    |be, x| be.unary(op, x[0]),
                );
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
                self.compare(
                    format!("scalar {op:?} {shape:?}"),
                    &[&a],
                    |be, x| be.scalar(op, x[0], s),
                    |be, x| be.scalar(op, x[0], s),
                );
            }
            for op in [ShiftOp::Left, ShiftOp::RightLogical, ShiftOp::RightArith] {
                for bits in [0, 1, 20, 63] {
                    self.compare(
                        format!("shift {op:?} {bits} {shape:?}"),
                        &[&a],
                        |be, x| be.shift(op, x[0], bits),
                        |be, x| be.shift(op, x[0], bits),
                    );
                }
            }
            self.compare(
                format!("bit_extract 63 {shape:?}"),
                &[&a],
                |be, x| be.bit_extract(x[0], 63),
                |be, x| be.bit_extract(x[0], 63),
            );
            self.compare(format!("pack_bits {shape:?}"), &[&a], |be, x| be.pack_bits(x[0]), |be, x| be.pack_bits(x[0]));
            let packed = self.cpu.pack_bits(&a).expect("pack");
            let sh = shape.clone();
            self.compare(
                format!("unpack_bits {shape:?}"),
                &[&packed],
                |be, x| be.unpack_bits(x[0], &sh),
                |be, x| be.unpack_bits(x[0], &sh),
            );
            let sh = shape.clone();
            self.compare(format!("full {shape:?}"), &[], |be, _| be.full(&sh, s), |be, _| be.full(&sh, s));
        }
        let (a, b) = (self.rand(&[4, 5]), self.rand(&[5, 4]));
        self.compare(
            "binary shape mismatch is rejected".into(),
            &[&a, &b],
            |be, x| be.binary(BinaryOp::Add, x[0], x[1]),
            |be, x| be.binary(BinaryOp::Add, x[0], x[1]),
        );
    }

    fn layout(&mut self) {
        let a = self.rand(&[3, 4, 5, 7]);
        for perm in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] {
            self.compare(
                format!("permute {perm:?}"),
                &[&a],
                |be, x| be.permute(x[0], &perm),
                |be, x| be.permute(x[0], &perm),
            );
        }
        for axis in 0..4 {
            self.compare(
                format!("sum_axis {axis}"),
                &[&a],
                |be, x| be.sum_axis(x[0], axis, false),
                |be, x| be.sum_axis(x[0], axis, false),
            );
            self.compare(
                format!("slice axis {axis}"),
                &[&a],
                |be, x| be.slice(x[0], axis, 1, 3),
                |be, x| be.slice(x[0], axis, 1, 3),
            );
            self.compare(
                format!("concat axis {axis}"),
                &[&a, &a],
                |be, x| be.concat(&[x[0], x[1]], axis),
                |be, x| be.concat(&[x[0], x[1]], axis),
            );
        }
        self.compare("reshape".into(), &[&a], |be, x| be.reshape(x[0], &[12, 35]), |be, x| be.reshape(x[0], &[12, 35]));
        let small = self.rand(&[4, 1, 7]);
        self.compare(
            "broadcast_to".into(),
            &[&small],
            |be, x| be.broadcast_to(x[0], &[2, 4, 5, 7]),
            |be, x| be.broadcast_to(x[0], &[2, 4, 5, 7]),
        );
    }

    fn linear(&mut self, large: bool) {
        let mut shapes = vec![(1, 1, 1), (7, 13, 5), (64, 64, 64), (100, 300, 70), (513, 1000, 257), (16, 40_000, 16)];
        if large {
            shapes.push((2, (1 << 21) + 5, 3));
        }
        for (m, k, n) in shapes {
            let a = self.rand(&[m, k]);
            let b = self.rand(&[k, n]);
            let bt = self.rand(&[n, k]);
            self.compare(
                format!("matmul {m}x{k}x{n}"),
                &[&a, &b],
                |be, x| be.matmul(x[0], x[1], false, false),
                |be, x| be.matmul(x[0], x[1], false, false),
            );
            self.compare(
                format!("matmul {m}x{k}x{n} B^T"),
                &[&a, &bt],
                |be, x| be.matmul(x[0], x[1], false, true),
                |be, x| be.matmul(x[0], x[1], false, true),
            );
        }
        let (a, b) = (self.rand(&[4, 33, 17]), self.rand(&[4, 9, 33]));
        self.compare(
            "batched matmul A^T B^T".into(),
            &[&a, &b],
            |be, x| be.matmul(x[0], x[1], true, true),
            |be, x| be.matmul(x[0], x[1], true, true),
        );
    }

    fn conv(&mut self) {
        let cases = [
            ([2, 3, 9, 7], [4, 3, 3, 3], Conv2dParams { stride: (1, 1), padding: (1, 1) }),
            ([1, 3, 32, 32], [64, 3, 11, 11], Conv2dParams { stride: (4, 4), padding: (2, 2) }),
            ([3, 16, 12, 12], [8, 16, 5, 5], Conv2dParams { stride: (2, 1), padding: (2, 0) }),
        ];
        for (xs, ws, p) in cases {
            let (x, w) = (self.rand(&xs), self.rand(&ws));
            self.compare(
                format!("conv2d {xs:?} {ws:?}"),
                &[&x, &w],
                |be, t| be.conv2d(t[0], t[1], &p),
                |be, t| be.conv2d(t[0], t[1], &p),
            );
            let y = self.cpu.conv2d(&x, &w, &p).expect("cpu conv");
            let g = self.rand(y.shape());
            self.compare(
                format!("conv2d_input_grad {xs:?}"),
                &[&g, &w],
                |be, t| be.conv2d_input_grad(t[0], t[1], &xs, &p),
                |be, t| be.conv2d_input_grad(t[0], t[1], &xs, &p),
            );
            let k = (ws[2], ws[3]);
            self.compare(
                format!("conv2d_weight_grad {xs:?}"),
                &[&x, &g],
                |be, t| be.conv2d_weight_grad(t[0], t[1], k, &p),
                |be, t| be.conv2d_weight_grad(t[0], t[1], k, &p),
            );
        }
        let x = self.rand(&[2, 3, 7, 6]);
        let p = Pool2dParams { kernel: (3, 2), stride: (2, 2), padding: (1, 0) };
        self.compare("sum_pool2d".into(), &[&x], |be, t| be.sum_pool2d(t[0], &p), |be, t| be.sum_pool2d(t[0], &p));
        let g = self.rand(&[2, 3, 4, 3]);
        self.compare(
            "sum_pool2d_backward".into(),
            &[&g],
            |be, t| be.sum_pool2d_backward(t[0], &[2, 3, 7, 6], &p),
            |be, t| be.sum_pool2d_backward(t[0], &[2, 3, 7, 6], &p),
        );
    }

    fn prg(&mut self, large: bool) {
        let key: [u8; 16] = self.rng.gen();
        let mut cases =
            vec![(0u64, 0u64, 1usize), (5, u64::MAX - 3, 21), (u64::MAX, u64::MAX, 4), (2, 1 << 40, 100_001)];
        if large {
            cases.push((9, 77, (1 << 22) + 1));
        }
        for (stream, counter, n) in cases {
            self.compare(
                format!("prg_fill stream {stream} counter {counter} n {n}"),
                &[],
                |be, _| be.prg_fill(&key, stream, counter, &[n]),
                |be, _| be.prg_fill(&key, stream, counter, &[n]),
            );
        }
    }

    /// Whole protocols on three in-process parties with seeded keys: every party's shares and the
    /// revealed results must be identical on both backends.
    fn protocols(&mut self, seed: u64) {
        let codec = FixedPoint::default();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let enc = |rng: &mut ChaCha8Rng, shape: &[usize]| {
            let n: usize = shape.iter().product();
            let v: Vec<f64> = (0..n).map(|_| rng.gen_range(-2.0..2.0)).collect();
            codec.encode_tensor(shape, &v).expect("in range")
        };
        let (a, b) = (enc(&mut rng, &[33, 70]), enc(&mut rng, &[70, 19]));
        let (x, w) = (enc(&mut rng, &[2, 3, 10, 10]), enc(&mut rng, &[4, 3, 3, 3]));
        let p = Conv2dParams { stride: (1, 1), padding: (1, 1) };
        let cfg = RunConfig { codec, keys: KeySource::InsecureSeed(seed), ..RunConfig::default() };
        let inputs = ProtocolInputs { a, b, x, w, p };
        let start = Instant::now();
        let got = run_local(self.dev.clone(), cfg, |party| protocol_program(party, &inputs));
        let seconds = start.elapsed().as_secs_f64();
        let want = run_local(CpuBackend, cfg, |party| protocol_program(party, &inputs));
        let detail = match (got, want) {
            (Ok(g), Ok(w)) => (0..3)
                .flat_map(|i| {
                    g[i].value.iter().zip(&w[i].value).enumerate().map(move |(j, (x, y))| (i, j, first_mismatch(x, y)))
                })
                .find(|(_, _, d)| !d.is_empty())
                .map(|(i, j, d)| format!("party {i}, output {j}: {d}"))
                .unwrap_or_default(),
            (Err(e), _) => format!("device run failed: {e}"),
            (_, Err(e)) => format!("CPU run failed: {e}"),
        };
        self.checks.push(Check {
            name: "protocols: input, mul, matmul_fp, conv2d_fp, truncate, reveal (all shares)".into(),
            passed: detail.is_empty(),
            detail,
            seconds,
        });
    }
}

/// Inputs of the protocol comparison (fixed-point encoded).
struct ProtocolInputs {
    a: RingTensor,
    b: RingTensor,
    x: RingTensor,
    w: RingTensor,
    p: Conv2dParams,
}

/// Input from all three owners, integer and fixed-point products, convolution, truncation and
/// reveal; returns every share and every revealed value.
fn protocol_program<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    i: &ProtocolInputs,
) -> cryptgpu_sharing::Result<Vec<RingTensor>> {
    let own = |o: usize, t: &RingTensor| (party.id() == o).then_some(t).cloned();
    let (va, vb, vx, vw) = (own(0, &i.a), own(1, &i.b), own(2, &i.x), own(0, &i.w));
    let sa = party.input(0, va.as_ref(), i.a.shape())?;
    let sb = party.input(1, vb.as_ref(), i.b.shape())?;
    let sx = party.input(2, vx.as_ref(), i.x.shape())?;
    let sw = party.input(0, vw.as_ref(), i.w.shape())?;
    let mm = party.matmul_fp(&sa, &sb)?;
    let prod = party.mul_int(&sa, &sa)?;
    let cv = party.conv2d_fp(&sx, &sw, &i.p)?;
    let tr = party.truncate(&prod)?;
    let mut out = Vec::new();
    for s in [&mm, &prod, &cv, &tr] {
        out.push(party.download(s.first())?);
        out.push(party.download(s.second())?);
        out.push(party.reveal(s)?);
    }
    Ok(out)
}
