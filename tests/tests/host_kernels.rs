//! The CUDA kernels, compiled for the host through the shim, against the CPU backend: bit for bit.
//! The limb GEMM plans (`cryptgpu_ring::limbs::DevicePlan`) that the CUDA backend executes are
//! replayed here through the same driver (`limbs::execute`), with naive column-major GEMMs in
//! place of cuBLAS and cuBLASLt, and their int8 GEMMs checked against the cuBLASLt IMMA conditions.

use cryptgpu_kernels_cpu::gemm::{gemm_naive, MatRef};
use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_kernels_cuda::abi::{binary_code, scalar_code, shift_code, unary_code, Dims};
use cryptgpu_nn::graph::{Graph, Op};
use cryptgpu_nn::zoo::{self, Dataset};
use cryptgpu_ring::error::Result;
use cryptgpu_ring::limbs::{
    self, ChunkBuffers, CombineStep, DevicePlan, GemmGeometry, LimbExecutor, LimbPlan, LimbScheme, Side, SplitStep,
    Strides, UnpadStep,
};
use cryptgpu_ring::shape::{strides, Window};
use cryptgpu_ring::{Backend, BinaryOp, RingTensor, ScalarOp, ShiftOp, UnaryOp};
use cryptgpu_tests::host;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<u64> {
    (0..n).map(|_| rng.gen()).collect()
}

fn t(shape: &[usize], v: Vec<u64>) -> RingTensor {
    RingTensor::new(shape, v).unwrap()
}

#[test]
fn elementwise_bits_and_fill() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let be = CpuBackend;
    for n in [1usize, 63, 64, 65, 1000, 5000] {
        let (x, y) = (rand_vec(&mut rng, n), rand_vec(&mut rng, n));
        let (xt, yt) = (t(&[n], x.clone()), t(&[n], y.clone()));
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Xor, BinaryOp::And, BinaryOp::Or] {
            assert_eq!(
                host::ew_binary(binary_code(op), &x, &y),
                be.binary(op, &xt, &yt).unwrap().into_data(),
                "{op:?} n={n}"
            );
        }
        for op in [UnaryOp::Neg, UnaryOp::Not] {
            assert_eq!(host::ew_unary(unary_code(op), &x), be.unary(op, &xt).unwrap().into_data(), "{op:?}");
        }
        let s = rng.gen();
        for op in
            [ScalarOp::Add, ScalarOp::Sub, ScalarOp::SubFrom, ScalarOp::Mul, ScalarOp::Xor, ScalarOp::And, ScalarOp::Or]
        {
            assert_eq!(host::ew_scalar(scalar_code(op), &x, s), be.scalar(op, &xt, s).unwrap().into_data(), "{op:?}");
        }
        for op in [ShiftOp::Left, ShiftOp::RightLogical, ShiftOp::RightArith] {
            for bits in [0, 1, 20, 63] {
                assert_eq!(
                    host::ew_shift(shift_code(op), &x, bits),
                    be.shift(op, &xt, bits).unwrap().into_data(),
                    "{op:?} {bits}"
                );
            }
        }
        assert_eq!(host::bit_extract(&x, 63), be.bit_extract(&xt, 63).unwrap().into_data());
        let packed = host::pack_bits(&x);
        assert_eq!(packed, be.pack_bits(&xt).unwrap().into_data(), "pack n={n}");
        assert_eq!(
            host::unpack_bits(&packed, n),
            be.unpack_bits(&t(&[packed.len()], packed.clone()), &[n]).unwrap().into_data()
        );
        assert_eq!(host::ew_fill(s, n), vec![s; n]);
    }
}

#[test]
fn layout_kernels() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let be = CpuBackend;
    let shape = [3, 4, 5, 7];
    let x = rand_vec(&mut rng, 420);
    let xt = t(&shape, x.clone());
    // Permute through the gather kernel, with the strides the CUDA backend computes.
    for perm in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] {
        let s = strides(&shape);
        let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let st: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
        let got = host::gather_strided(&x, Dims::new(&out_shape, &st).unwrap());
        assert_eq!(got, be.permute(&xt, &perm).unwrap().into_data(), "perm {perm:?}");
    }
    // Broadcast [4, 1, 7] to [2, 4, 5, 7].
    let small = rand_vec(&mut rng, 28);
    let got = host::gather_strided(&small, Dims::new(&[2, 4, 5, 7], &[0, 7, 0, 1]).unwrap());
    assert_eq!(got, be.broadcast_to(&t(&[4, 1, 7], small), &[2, 4, 5, 7]).unwrap().into_data());
    // Slice axis 1 rows 1..3 as the backend does: outer 3, len 4, inner 35.
    let mut out = vec![0; 3 * 2 * 35];
    host::copy_rows(&x, 4 * 35, 35, &mut out, 2 * 35, 0, 3, 2 * 35);
    assert_eq!(out, be.slice(&xt, 1, 1, 3).unwrap().into_data());
    // Concat [x, x] along axis 2.
    let mut cat = vec![0; 840];
    host::copy_rows(&x, 35, 0, &mut cat, 70, 0, 12, 35);
    host::copy_rows(&x, 35, 0, &mut cat, 70, 35, 12, 35);
    assert_eq!(cat, be.concat(&[&xt, &xt], 2).unwrap().into_data());
    for axis in 0..4 {
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        assert_eq!(
            host::sum_middle(&x, outer, shape[axis], inner),
            be.sum_axis(&xt, axis, false).unwrap().into_data(),
            "axis {axis}"
        );
    }
}

#[test]
fn im2col_and_col2im() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let be = CpuBackend;
    for (xs, k, s, p) in [
        ([2, 3, 9, 7], (3, 3), (1, 1), (1, 1)),
        ([1, 2, 12, 11], (5, 4), (2, 3), (2, 1)),
        ([1, 3, 32, 32], (11, 11), (4, 4), (2, 2)),
    ] {
        let x = rand_vec(&mut rng, xs.iter().product());
        let win = Window::new("test", &xs, k, s, p).unwrap();
        let cols = host::im2col(&x, &win);
        assert_eq!(cols, be.im2col(&t(&xs, x.clone()), k, s, p).unwrap().into_data(), "im2col {xs:?}");
        let g = rand_vec(&mut rng, cols.len());
        let want = be.col2im(&t(&[win.col_rows(), win.col_cols()], g.clone()), &xs, k, s, p).unwrap();
        assert_eq!(host::col2im(&g, &win), want.into_data(), "col2im {xs:?}");
    }
}

#[test]
fn aes_kernel_matches_the_cpu_prg() {
    let be = CpuBackend;
    // NIST SP 800-38A F.5.1 through the CPU backend (which is tested against the vector itself).
    let key = [0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c];
    for (stream, counter, n) in
        [(0xf0f1f2f3f4f5f6f7u64, 0xf8f9fafbfcfdfeffu64, 8usize), (3, u64::MAX - 2, 11), (0, 0, 1), (7, 1 << 40, 999)]
    {
        let got = host::aes_ctr_fill(&key, stream, counter, n);
        assert_eq!(
            got,
            be.prg_fill(&key, stream, counter, &[n]).unwrap().into_data(),
            "stream {stream} counter {counter}"
        );
    }
    let other_key = [0x5a; 16];
    assert_eq!(host::aes_ctr_fill(&other_key, 1, 2, 64), be.prg_fill(&other_key, 1, 2, &[64]).unwrap().into_data());
}

/// The host replay of the CUDA limb executor (`kernels-cuda/src/gemm.rs`): the same
/// [`DevicePlan`] through the same [`limbs::execute`], the split/combine/copy kernels through the
/// shim, and naive column-major GEMMs with exactly the cuBLAS DGEMM (NN) and cuBLASLt IMMA (TN)
/// semantics of the geometry. Buffers the backend allocates without zero-fill start as garbage,
/// so a step that reads an element no earlier step wrote shows up as a wrong product.
struct HostLimbs<'a> {
    a: &'a [u64],
    b: &'a [u64],
    out: Vec<u64>,
    acc: Option<Vec<u64>>,
    f: (Vec<f64>, Vec<f64>, Vec<f64>),
    i: (Vec<i8>, Vec<i8>, Vec<i32>),
    /// Every GEMM geometry run, in order.
    gemms: Vec<GemmGeometry>,
}

const GARBAGE: u64 = 0x5a5a_5a5a_5a5a_5a5a;

impl<'a> HostLimbs<'a> {
    fn new(a: &'a [u64], b: &'a [u64], mn: usize) -> Self {
        let (f, i) = ((vec![], vec![], vec![]), (vec![], vec![], vec![]));
        HostLimbs { a, b, out: vec![GARBAGE; mn], acc: None, f, i, gemms: vec![] }
    }
}

impl LimbExecutor for HostLimbs<'_> {
    fn begin_chunk(&mut self, scheme: LimbScheme, c: &ChunkBuffers) -> Result<()> {
        match scheme {
            LimbScheme::F64x16 => {
                self.f = (vec![f64::NAN; c.a_len], vec![f64::NAN; c.b_len], vec![f64::NAN; c.groups_len])
            }
            LimbScheme::I8x8 => {
                let mut b = vec![0x5a; c.b_len];
                b[c.b_written..].fill(0);
                self.i = (vec![0x5a; c.a_len], b, vec![0x5a5a_5a5a; c.groups_len]);
            }
        }
        Ok(())
    }

    fn split(&mut self, scheme: LimbScheme, st: &SplitStep) -> Result<()> {
        let src = &(if st.side == Side::A { self.a } else { self.b })[st.src_offset..];
        let (so, stt, side) = (st.so, st.st, st.side_code);
        match scheme {
            LimbScheme::F64x16 => {
                let v = host::split_u16_f64(src, so, stt, st.outer, st.inner, side);
                let dst = if st.side == Side::A { &mut self.f.0 } else { &mut self.f.1 };
                dst[..v.len()].copy_from_slice(&v);
            }
            LimbScheme::I8x8 => {
                let v = host::split_s8(src, so, stt, st.outer, st.inner, st.inner_pad, side);
                let dst = if st.side == Side::A { &mut self.i.0 } else { &mut self.i.1 };
                dst[..v.len()].copy_from_slice(&v);
            }
        }
        Ok(())
    }

    fn gemm(&mut self, g: &GemmGeometry) -> Result<()> {
        self.gemms.push(*g);
        let (rows, cols, inner) = (g.rows, g.cols, g.inner);
        match g.scheme {
            LimbScheme::F64x16 => {
                let (y, x, d) = (&self.f.0[g.y_offset..], &self.f.1[g.x_offset..], &mut self.f.2[g.d_offset..]);
                for j in 0..cols {
                    for i in 0..rows {
                        d[i + j * g.ldd] = (0..inner).map(|p| x[i + p * g.ldx] * y[p + j * g.ldy]).sum();
                    }
                }
            }
            LimbScheme::I8x8 => {
                let (y, x, d) = (&self.i.0[g.y_offset..], &self.i.1[g.x_offset..], &mut self.i.2[g.d_offset..]);
                for j in 0..cols {
                    for i in 0..rows {
                        d[i + j * g.ldd] = (0..inner)
                            .fold(0i32, |acc, p| acc.wrapping_add(x[p + i * g.ldx] as i32 * y[p + j * g.ldy] as i32));
                    }
                }
            }
        }
        Ok(())
    }

    fn combine(&mut self, scheme: LimbScheme, st: &CombineStep) -> Result<()> {
        if st.padded && self.acc.is_none() {
            self.acc = Some(vec![GARBAGE; st.plane]);
        }
        let dst = match &mut self.acc {
            Some(acc) if st.padded => acc,
            _ => &mut self.out,
        };
        match scheme {
            LimbScheme::F64x16 => host::combine_f64(&self.f.2, st.groups, st.accumulate, dst),
            LimbScheme::I8x8 => host::combine_i32(&self.i.2, st.groups, st.accumulate, dst),
        }
        Ok(())
    }

    fn unpad(&mut self, u: &UnpadStep) -> Result<()> {
        let acc = self.acc.as_ref().expect("a padded plan combines into the accumulator first");
        host::copy_rows(acc, u.src_ld, 0, &mut self.out, u.width, 0, u.rows, u.width);
        Ok(())
    }
}

/// Runs the device plan of `scheme` (chunk forced to `chunk`) on the host; returns C and the GEMMs.
fn replay(
    scheme: LimbScheme,
    (m, k, n): (usize, usize, usize),
    chunk: Option<usize>,
    (a, ast): (&[u64], Strides),
    (b, bst): (&[u64], Strides),
) -> (Vec<u64>, Vec<GemmGeometry>) {
    let plan = DevicePlan::new(LimbPlan::new(scheme, m, k, n, chunk).unwrap(), ast, bst).unwrap();
    let mut exec = HostLimbs::new(a, b, m * n);
    limbs::execute(&plan, &mut exec).unwrap();
    (exec.out, exec.gemms)
}

/// The limb plans the CUDA backend executes, replayed on the host kernels, equal the ring product
/// for both schemes, several chunk sizes (padded `kp`), odd `n` (IMMA row padding and the final
/// copy), transposed operands and the digit-recoding extremes; every int8 GEMM run was padded.
#[test]
fn limb_plans_replay_exactly() {
    let seed = 4;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for &(m, k, n, kc) in &[(1, 1, 1, 7), (5, 37, 3, 16), (9, 100, 13, 33), (4, 64, 4, 64), (3, 20, 6, 20)] {
        for special in [None, Some(u64::MAX), Some(0x8080_8080_8080_8080), Some(0x7f7f_7f7f_7f7f_7f7f)] {
            let a: Vec<u64> = (0..m * k).map(|_| special.unwrap_or_else(|| rng.gen())).collect();
            let b: Vec<u64> = (0..k * n).map(|_| special.unwrap_or_else(|| rng.gen())).collect();
            for (ta, tb) in [(false, false), (true, true), (true, false)] {
                let ast = if ta { Strides { rs: 1, cs: m } } else { Strides { rs: k, cs: 1 } };
                let bst = if tb { Strides { rs: 1, cs: k } } else { Strides { rs: n, cs: 1 } };
                let want = gemm_naive(
                    m,
                    k,
                    n,
                    MatRef { data: &a, rs: ast.rs, cs: ast.cs },
                    MatRef { data: &b, rs: bst.rs, cs: bst.cs },
                );
                let ctx = format!("seed {seed} {m}x{k}x{n} chunk {kc} special {special:?} ta={ta} tb={tb}");
                for chunk in [Some(kc), None] {
                    for scheme in [LimbScheme::F64x16, LimbScheme::I8x8] {
                        let (got, gemms) = replay(scheme, (m, k, n), chunk, (&a, ast), (&b, bst));
                        assert_eq!(got, want, "{scheme:?} {ctx} plan chunk {chunk:?}");
                        let chunks = k.div_ceil(chunk.unwrap_or(k));
                        assert_eq!(gemms.len(), chunks * scheme.limbs(), "{ctx}");
                        if scheme == LimbScheme::I8x8 {
                            assert!(gemms.iter().all(|g| g.rows % 4 == 0 && g.inner % 16 == 0), "{ctx}");
                        }
                    }
                }
            }
        }
    }
}

/// The plan's default chunk is what runs: a K above one chunk splits at
/// `LimbScheme::default_chunk_k` (16,368 digits for int8), not at a backend constant.
#[test]
fn default_chunking_is_the_plans() {
    let (m, k, n) = (1, limbs::I8_MAX_CHUNK_K + 5, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (a, b) = (rand_vec(&mut rng, m * k), rand_vec(&mut rng, k * n));
    let want = gemm_naive(m, k, n, MatRef { data: &a, rs: k, cs: 1 }, MatRef { data: &b, rs: n, cs: 1 });
    let (got, gemms) =
        replay(LimbScheme::I8x8, (m, k, n), None, (&a, Strides { rs: k, cs: 1 }), (&b, Strides { rs: n, cs: 1 }));
    assert_eq!(got, want);
    let chunk = LimbScheme::I8x8.default_chunk_k(k);
    assert_eq!(chunk, 16_368);
    assert_eq!(gemms.iter().map(|g| g.inner).max(), Some(8 * chunk));
    assert_eq!(gemms.len(), 2 * 8);
}

/// Every GEMM (forward and both backward products, both operand orders) of the convolution and
/// linear layers of every zoo model at batch 1 and 64, and the selftest's forced-int8 shapes.
fn zoo_and_selftest_shapes() -> Vec<(usize, usize, usize)> {
    fn walk(g: &Graph, batch: usize, out: &mut Vec<(usize, usize, usize)>) {
        let values = g.check(batch).unwrap();
        let param = |n: &str| &g.params.iter().find(|(m, _)| m == n).unwrap().1;
        for node in &g.nodes {
            match &node.op {
                Op::Conv2d { weight, .. } => {
                    let (w, y) = (param(weight), &values[&node.output]);
                    let (cout, kk, cols) = (w[0], w[1] * w[2] * w[3], y[0] * y[2] * y[3]);
                    out.extend([(cout, kk, cols), (cout, cols, kk), (kk, cout, cols)]);
                }
                Op::Linear { weight, .. } => {
                    let (w, n) = (param(weight), values[&node.inputs[0]][0]);
                    let (fout, fin) = (w[0], w[1]);
                    out.extend([(n, fin, fout), (n, fout, fin), (fout, n, fin)]);
                }
                _ => {}
            }
        }
    }
    let mut shapes = Vec::new();
    for d in [Dataset::Mnist, Dataset::Cifar10, Dataset::TinyImageNet, Dataset::ImageNet] {
        for name in ["lenet", "alexnet", "vgg16", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"] {
            let Ok(spec) = zoo::by_name(name, d) else { continue };
            for batch in [1, 64] {
                walk(&spec.to_graph(), batch, &mut shapes);
            }
        }
    }
    assert!(shapes.len() > 100, "the zoo yields {} GEMMs", shapes.len());
    // Both operand orders, and the selftest's product shapes.
    let swapped: Vec<_> = shapes.iter().map(|&(m, k, n)| (n, k, m)).collect();
    shapes.extend(swapped);
    // `cryptgpu selftest` (tests/src/diff.rs): its matmuls, the batched one, and its convolutions.
    shapes.extend([(1, 1, 1), (7, 13, 5), (64, 64, 64), (100, 300, 70), (513, 1000, 257), (16, 40_000, 16)]);
    shapes.extend([(2, (1 << 21) + 5, 3), (17, 33, 9), (4, 27, 126), (64, 363, 49), (8, 400, 144)]);
    shapes.sort_unstable();
    shapes.dedup();
    shapes
}

/// The cuBLASLt IMMA conditions hold for every int8 GEMM of every zoo and selftest shape (at
/// 256-byte aligned buffer bases, as cudaMalloc returns), and an unpadded geometry is rejected.
#[test]
fn imma_conditions_hold_on_zoo_and_selftest_shapes() {
    let shapes = zoo_and_selftest_shapes();
    let mut odd = 0;
    for &(m, k, n) in &shapes {
        let dense = |rs, cs| Strides { rs, cs };
        let plan =
            DevicePlan::new(LimbPlan::new(LimbScheme::I8x8, m, k, n, None).unwrap(), dense(k, 1), dense(n, 1)).unwrap();
        odd += (n % 4 != 0) as usize;
        for c in 0..plan.num_chunks() {
            let buf = plan.buffers(c);
            for s in 0..8 {
                let g = plan.gemm(c, s);
                let (x, y, d) = (1 << 20, 2 << 20, 3 << 20);
                let at = |base: u64, off: usize| base + off as u64;
                limbs::check_imma_conditions(&g, at(x, g.x_offset), at(y, g.y_offset), at(d, 4 * g.d_offset))
                    .unwrap_or_else(|e| panic!("{m}x{k}x{n}: {e}"));
                // The buffers hold every element the GEMM reaches.
                assert!(g.x_offset + (g.rows - 1) * g.ldx + g.inner <= buf.b_len, "{m}x{k}x{n} X");
                assert!(g.y_offset + (g.cols - 1) * g.ldy + g.inner <= buf.a_len, "{m}x{k}x{n} Y");
                assert!(g.d_offset + (g.cols - 1) * g.ldd + g.rows <= buf.groups_len, "{m}x{k}x{n} D");
            }
        }
    }
    assert!(odd > 10, "the shapes include n not a multiple of 4 ({odd})");
    // The geometry the backend ran before padding (n = 363, k not padded) breaks the conditions.
    let plan = DevicePlan::new(
        LimbPlan::new(LimbScheme::I8x8, 20, 50, 363, None).unwrap(),
        Strides { rs: 50, cs: 1 },
        Strides { rs: 363, cs: 1 },
    )
    .unwrap();
    let good = plan.gemm(0, 2);
    assert_eq!((good.rows, good.ldd, good.inner), (364, 364, 3 * 64));
    let unpadded = GemmGeometry { rows: 363, ldd: 363, ..good };
    assert!(limbs::check_imma_conditions(&unpadded, 0, 0, 0).unwrap_err().contains("multiples of 4"));
    let short_k = GemmGeometry { inner: 3 * 50, ..good };
    assert!(limbs::check_imma_conditions(&short_k, 0, 0, 0).unwrap_err().contains("multiples of 4"));
    assert!(limbs::check_imma_conditions(&good, 8, 0, 0).unwrap_err().contains("aligned"));
}
