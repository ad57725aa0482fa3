//! The CUDA kernels, compiled for the host through the shim, against the CPU backend: bit for bit.
//! The GEMM orchestration of the limb paths (chunking, group views, cuBLAS/cuBLASLt geometry) is
//! replayed here with naive column-major GEMMs that take exactly the arguments `kernels-cuda`
//! passes to cuBLAS and cuBLASLt.

use cryptgpu_kernels_cpu::gemm::{gemm_naive, MatRef};
use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_kernels_cuda::abi::{binary_code, scalar_code, shift_code, unary_code, Dims};
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

/// cuBLAS DGEMM semantics (column-major, no transposes): `c[i + j*ldc] = Σ_p a[i + p*lda] · b[p + j*ldb]`.
#[allow(clippy::too_many_arguments)]
fn dgemm_nn(m: usize, n: usize, k: usize, a: &[f64], lda: usize, b: &[f64], ldb: usize, c: &mut [f64], ldc: usize) {
    for j in 0..n {
        for i in 0..m {
            c[i + j * ldc] = (0..k).map(|p| a[i + p * lda] * b[p + j * ldb]).sum();
        }
    }
}

/// cuBLASLt IMMA semantics as `kernels-cuda` calls it: `D[rows x cols] = X^T · Y` column-major, X
/// stored `inner x rows` and Y `inner x cols` with leading dimension `ld`, wrapping int32 sums.
fn imma_tn(rows: usize, cols: usize, inner: usize, ld: usize, x: &[i8], y: &[i8], d: &mut [i32]) {
    for j in 0..cols {
        for i in 0..rows {
            let mut acc = 0i32;
            for p in 0..inner {
                acc = acc.wrapping_add(x[p + i * ld] as i32 * y[p + j * ld] as i32);
            }
            d[i + j * rows] = acc;
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// The f64-limb path of `kernels-cuda::gemm::f64_limbs`, step for step, with chunk `kc_max`.
fn f64_path(
    m: usize,
    k: usize,
    n: usize,
    a: &[u64],
    (ars, acs): (usize, usize),
    b: &[u64],
    (brs, bcs): (usize, usize),
    kc_max: usize,
) -> Vec<u64> {
    let mn = m * n;
    let mut out = vec![0u64; mn];
    for (chunk, k0) in (0..k).step_by(kc_max).enumerate() {
        let kc = kc_max.min(k - k0);
        let al = host::split_u16_f64(&a[k0 * acs..], ars, acs, m, kc, 0);
        let bl = host::split_u16_f64(&b[k0 * brs..], brs, bcs, kc, n, 1);
        let mut c = vec![0.0; 4 * mn];
        for s in 0..4 {
            dgemm_nn(n, m, (s + 1) * kc, &bl[(3 - s) * kc * n..], n, &al, 4 * kc, &mut c[s * mn..(s + 1) * mn], n);
        }
        host::combine_f64(&c, 4, chunk > 0, &mut out);
    }
    out
}

#[allow(clippy::too_many_arguments)]
/// The int8-digit path of `kernels-cuda::gemm::i8_limbs`, step for step, with chunk `kc_max`.
fn i8_path(
    m: usize,
    k: usize,
    n: usize,
    a: &[u64],
    (ars, acs): (usize, usize),
    b: &[u64],
    (brs, bcs): (usize, usize),
    kc_max: usize,
) -> Vec<u64> {
    let mn = m * n;
    let mut out = vec![0u64; mn];
    for (chunk, k0) in (0..k).step_by(kc_max).enumerate() {
        let kc = kc_max.min(k - k0);
        let kp = kc.next_multiple_of(16);
        let a8 = host::split_s8(&a[k0 * acs..], ars, acs, m, kc, kp, 0);
        let b8 = host::split_s8(&b[k0 * brs..], bcs, brs, n, kc, kp, 1);
        let mut c = vec![0i32; 8 * mn];
        for s in 0..8 {
            imma_tn(n, m, (s + 1) * kp, 8 * kp, &b8[(7 - s) * kp..], &a8, &mut c[s * mn..(s + 1) * mn]);
        }
        host::combine_i32(&c, 8, chunk > 0, &mut out);
    }
    out
}

#[test]
fn limb_gemm_paths_are_exact() {
    let seed = 4;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for &(m, k, n, kc) in &[(1, 1, 1, 7), (5, 37, 3, 16), (9, 100, 13, 33), (4, 64, 4, 64)] {
        for special in [None, Some(u64::MAX), Some(0x8080_8080_8080_8080), Some(0x7f7f_7f7f_7f7f_7f7f)] {
            let a: Vec<u64> = (0..m * k).map(|_| special.unwrap_or_else(|| rng.gen())).collect();
            let b: Vec<u64> = (0..k * n).map(|_| special.unwrap_or_else(|| rng.gen())).collect();
            for (ta, tb) in [(false, false), (true, true), (true, false)] {
                let ast = if ta { (1, m) } else { (k, 1) };
                let bst = if tb { (1, k) } else { (n, 1) };
                let want = gemm_naive(
                    m,
                    k,
                    n,
                    MatRef { data: &a, rs: ast.0, cs: ast.1 },
                    MatRef { data: &b, rs: bst.0, cs: bst.1 },
                );
                let ctx = format!("seed {seed} {m}x{k}x{n} chunk {kc} special {special:?} ta={ta} tb={tb}");
                assert_eq!(f64_path(m, k, n, &a, ast, &b, bst, kc), want, "f64 {ctx}");
                assert_eq!(i8_path(m, k, n, &a, ast, &b, bst, kc), want, "i8 {ctx}");
            }
        }
    }
}
