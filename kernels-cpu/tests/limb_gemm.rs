//! The limb-split ring GEMMs (f64 16-bit limbs, i8 signed digits) against the ring GEMM oracle.

use cryptgpu_kernels_cpu::gemm::{gemm, MatRef};
use cryptgpu_kernels_cpu::limb_gemm::{gemm_i8_i32_tn, ring_gemm_f64_limbs, ring_gemm_i8_limbs, ring_gemm_limbs};
use cryptgpu_ring::limbs::{LimbPlan, F64_MAX_CHUNK_K, F64_MAX_INNER, I32_MAX_INNER, I8_MAX_CHUNK_K};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Every digit -128: the largest positive digit products.
const ALL_MINUS_128: u64 = 0x7f7f_7f7f_7f7f_7f80;
/// Every digit 127.
const ALL_127: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// A row-major (`t = false`) or column-major (`t = true`) view of a `rows x cols` matrix.
fn view(data: &[u64], rows: usize, cols: usize, t: bool) -> MatRef<'_> {
    if t {
        MatRef { data, rs: 1, cs: rows }
    } else {
        MatRef { data, rs: cols, cs: 1 }
    }
}

/// Checks both schemes against the oracle on one problem; a forced chunk is capped at each
/// scheme's bound.
fn check(m: usize, k: usize, n: usize, a: MatRef<'_>, b: MatRef<'_>, chunk: Option<usize>, what: &str) {
    let mut want = vec![0u64; m * n];
    gemm(m, k, n, a, b, &mut want, false);
    let mut got = vec![7u64; m * n];
    ring_gemm_f64_limbs(m, k, n, a, b, &mut got, chunk.map(|c| c.min(F64_MAX_CHUNK_K))).unwrap();
    assert!(got == want, "f64 limbs differ: {what} {m}x{k}x{n} chunk {chunk:?}");
    let mut got = vec![7u64; m * n];
    ring_gemm_i8_limbs(m, k, n, a, b, &mut got, chunk.map(|c| c.min(I8_MAX_CHUNK_K))).unwrap();
    assert!(got == want, "i8 limbs differ: {what} {m}x{k}x{n} chunk {chunk:?}");
}

#[test]
fn random_awkward_shapes_equal_the_ring_gemm() {
    let seed = 20_261_121;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let shapes = [
        (1, 1, 1),
        (1, 7, 1),
        (3, 5, 7),
        (9, 17, 33),
        (1, 65, 70),
        (70, 65, 1),
        (17, 130, 2),
        (33, 100, 65),
        (0, 3, 4),
        (3, 0, 4),
        (3, 4, 0),
    ];
    for (idx, &(m, k, n)) in shapes.iter().enumerate() {
        let a: Vec<u64> = (0..m * k).map(|_| rng.gen()).collect();
        let b: Vec<u64> = (0..k * n).map(|_| rng.gen()).collect();
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (av, bv) = (view(&a, m, k, ta), view(&b, k, n, tb));
            for chunk in [None, Some(1), Some(3), Some(16)] {
                check(m, k, n, av, bv, chunk, &format!("seed {seed} shape #{idx} ta={ta} tb={tb}"));
            }
        }
    }
}

#[test]
fn adversarial_inputs_equal_the_ring_gemm() {
    let seed = 77;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (m, k, n) = (5, 300, 6);
    let consts = [u64::MAX, 0x8080_8080_8080_8080, ALL_127, ALL_MINUS_128, i64::MIN as u64, 0x00ff_00ff_00ff_00ff];
    let mut cases: Vec<(String, Vec<u64>, Vec<u64>)> = Vec::new();
    for &x in &consts {
        for &y in &consts {
            cases.push((format!("all {x:#x} x all {y:#x}"), vec![x; m * k], vec![y; k * n]));
        }
    }
    // Alternating signs: digit products alternate between +2^14 and -128·127, and 16-bit limbs
    // between 0xffff-heavy and 0x8080-heavy patterns.
    let alt = |len: usize, x: u64, y: u64| (0..len).map(|i| if i % 2 == 0 { x } else { y }).collect::<Vec<_>>();
    cases.push(("alternating -128/127".into(), vec![ALL_MINUS_128; m * k], alt(k * n, ALL_MINUS_128, ALL_127)));
    cases.push(("alternating max/min".into(), alt(m * k, u64::MAX, i64::MIN as u64), alt(k * n, 1, u64::MAX)));
    cases.push((
        "alternating random signs".into(),
        {
            (0..m * k)
                .map(
                    |_| if rng.gen() { rng.gen_range(0..1 << 20) } else { rng.gen_range(0..1u64 << 20).wrapping_neg() },
                )
                .collect()
        },
        alt(k * n, ALL_MINUS_128, u64::MAX),
    ));
    for (what, a, b) in &cases {
        for chunk in [None, Some(1), Some(7), Some(64)] {
            check(m, k, n, view(a, m, k, false), view(b, k, n, false), chunk, &format!("seed {seed} {what}"));
        }
    }
}

#[test]
fn f64_scheme_is_exact_past_its_largest_gemm() {
    // K > F64_MAX_INNER: 5 chunks, the full ones at the bound (group 3 has inner dimension
    // 4·524,304 = 2,097,216). Row 0 has all-ones limbs (the worst case 2^53 - 6,291,392 is
    // reached); row 1 and B have random limbs in [0xff00, 0xffff] (near-worst sums of mixed
    // parity, which a chunk past the bound would round).
    let seed = 3;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut near_max = || (0..4).fold(0u64, |x, i| x | (rng.gen_range(0xff00u64..=0xffff) << (16 * i)));
    let (m, k, n) = (2, F64_MAX_INNER + 5, 1);
    let a: Vec<u64> = (0..m * k).map(|i| if i < k { u64::MAX } else { near_max() }).collect();
    let b: Vec<u64> = (0..k * n).map(|_| near_max()).collect();
    let mut want = vec![0u64; m * n];
    gemm(m, k, n, view(&a, m, k, false), view(&b, k, n, false), &mut want, false);
    let mut got = vec![0u64; m * n];
    ring_gemm_f64_limbs(m, k, n, view(&a, m, k, false), view(&b, k, n, false), &mut got, None).unwrap();
    assert_eq!(got, want, "seed {seed} f64 K = {k}");
}

#[test]
fn i8_scheme_is_exact_past_its_largest_gemm() {
    // K > I32_MAX_INNER: several chunks; all-(-128) digits push every group to its largest sum
    // (at the largest chunk, group 7: 8·16,383·2^14 = 2^31 - 2^17), still without an i32 overflow.
    let seed = 4;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (m, k, n) = (2, I32_MAX_INNER + 1001, 2);
    let a: Vec<u64> = (0..m * k).map(|i| if i < k { ALL_MINUS_128 } else { rng.gen() }).collect();
    let b: Vec<u64> = (0..k * n).map(|i| if i % 2 == 0 { ALL_MINUS_128 } else { rng.gen() }).collect();
    let mut want = vec![0u64; m * n];
    gemm(m, k, n, view(&a, m, k, false), view(&b, k, n, false), &mut want, false);
    // The default chunk (16,368, aligned) and the largest one (16,383).
    for chunk in [None, Some(I8_MAX_CHUNK_K)] {
        let mut got = vec![0u64; m * n];
        ring_gemm_i8_limbs(m, k, n, view(&a, m, k, false), view(&b, k, n, false), &mut got, chunk).unwrap();
        assert_eq!(got, want, "seed {seed} i8 K = {k} chunk {chunk:?}");
    }
    assert_eq!(want[0], (k as u64).wrapping_mul(ALL_MINUS_128.wrapping_mul(ALL_MINUS_128)));
}

#[test]
fn i8_gemm_wraps_like_the_hardware() {
    let l = I32_MAX_INNER + 1;
    let a = vec![-128i8; l];
    let b = vec![-128i8; l];
    let mut c = [0i32; 1];
    gemm_i8_i32_tn(1, 1, l, &a, l, &b, l, &mut c, 1).unwrap();
    assert_eq!(c[0], i32::MIN, "2^31 wraps to -2^31");
    gemm_i8_i32_tn(1, 1, l - 1, &a, l, &b, l, &mut c, 1).unwrap();
    assert_eq!(c[0], i32::MAX - (1 << 14) + 1);
    // Strided views: X 3 x 2 (ld 5) from offset 1, Y 3 x 2 (ld 4) from offset 2, D 2 x 2 (ld 3).
    let x: Vec<i8> = (0..11).map(|v| v as i8 - 5).collect();
    let y: Vec<i8> = (0..10).map(|v: i32| (100 - 30 * v) as i8).collect();
    let mut d = [7i32; 5];
    gemm_i8_i32_tn(2, 2, 3, &x[1..], 5, &y[2..], 4, &mut d, 3).unwrap();
    for (i, j) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
        let want: i32 = (0..3).map(|p| x[1 + p + i * 5] as i32 * y[2 + p + j * 4] as i32).sum();
        assert_eq!(d[i + j * 3], want, "({i}, {j})");
    }
    assert_eq!(d[2], 7, "the gap between columns is not written");
}

#[test]
fn bad_arguments_are_errors() {
    let a = vec![1u64; 6];
    let b = vec![2u64; 6];
    let (av, bv) = (view(&a, 2, 3, false), view(&b, 3, 2, false));
    let mut c = vec![0u64; 4];
    assert!(ring_gemm_f64_limbs(2, 3, 2, av, bv, &mut c, Some(0)).is_err());
    assert!(ring_gemm_f64_limbs(2, 3, 2, av, bv, &mut c, Some(F64_MAX_CHUNK_K + 1)).is_err());
    assert!(ring_gemm_i8_limbs(2, 3, 2, av, bv, &mut c, Some(I8_MAX_CHUNK_K + 1)).is_err());
    assert!(ring_gemm_i8_limbs(2, 3, 2, av, bv, &mut c[..3], None).is_err(), "short output");
    assert!(ring_gemm_i8_limbs(3, 3, 2, av, bv, &mut [0; 6], None).is_err(), "A too short");
    let bad = MatRef { data: &b, rs: usize::MAX, cs: 1 };
    assert!(ring_gemm_f64_limbs(2, 3, 2, av, bad, &mut c, None).is_err(), "stride overflow");
    let plan = LimbPlan::select(2, 3, 2, None).unwrap();
    ring_gemm_limbs(&plan, av, bv, &mut c).unwrap();
    assert_eq!(c, vec![6; 4]);
    let mut ci = [0i32; 4];
    assert!(gemm_i8_i32_tn(2, 2, 3, &[0; 5], 3, &[0; 6], 3, &mut ci, 2).is_err(), "X too short");
    assert!(gemm_i8_i32_tn(2, 2, 3, &[0; 6], 2, &[0; 6], 3, &mut ci, 2).is_err(), "ldx < inner");
    assert!(gemm_i8_i32_tn(2, 2, 3, &[0; 6], 3, &[0; 6], 3, &mut ci[..3], 2).is_err(), "short output");
    assert!(gemm_i8_i32_tn(2, 2, 3, &[0; 6], 3, &[0; 6], 3, &mut ci, 1).is_err(), "ldd < rows");
}
