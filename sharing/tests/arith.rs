//! Arithmetic protocols against plaintext ring results, with communication counters checked
//! against the documented costs.

use std::time::Duration;

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_net::{Counters, LocalTransport, NetError};
use cryptgpu_ring::{Backend, BinaryOp, Conv2dParams, FixedPoint, RingTensor};
use cryptgpu_sharing::arith::{input_cost, reveal_to_cost};
use cryptgpu_sharing::trunc::{product_cost, TruncMode};
use cryptgpu_sharing::{run_local, KeySource, LocalLink, Party, RunConfig, SharingError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type P = Party<CpuBackend, LocalLink>;

fn rand_tensor(rng: &mut ChaCha8Rng, shape: &[usize]) -> RingTensor {
    RingTensor::from_fn(shape, |_| rng.gen())
}

/// Runs `f` on three parties and returns the values (and the counters of the work inside `f`).
fn run3<R: Send>(f: impl Fn(&mut P) -> cryptgpu_sharing::Result<R> + Sync) -> [(R, Counters); 3] {
    run3_in(TruncMode::Exact, f)
}

/// [`run3`] in a given truncation mode.
fn run3_in<R: Send>(mode: TruncMode, f: impl Fn(&mut P) -> cryptgpu_sharing::Result<R> + Sync) -> [(R, Counters); 3] {
    let out = run_local(CpuBackend, RunConfig { trunc: mode, ..RunConfig::default() }, |p| {
        let before = p.counters();
        let v = f(p)?;
        Ok::<_, SharingError>((v, p.counters().since(&before)))
    })
    .expect("protocol run failed");
    out.map(|o| o.value)
}

fn assert_cost(c: &[(impl Sized, Counters); 3], rounds: u64, bytes: [u64; 3], what: &str) {
    for (i, (_, c)) in c.iter().enumerate() {
        assert_eq!(c.rounds, rounds, "{what}: rounds of party {i}");
        assert_eq!(c.bytes_sent, bytes[i], "{what}: bytes sent by party {i}");
    }
}

#[test]
fn setup_costs_one_round_of_16_bytes() {
    let out = run_local(CpuBackend, RunConfig::default(), |_| Ok::<_, SharingError>(())).unwrap();
    for o in &out {
        assert_eq!((o.counters.rounds, o.counters.bytes_sent), (1, 16));
    }
}

#[test]
fn input_reveal_from_every_owner() {
    let seed = 1;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v = rand_tensor(&mut rng, &[37, 3]);
    for owner in 0..3 {
        let out = run3(|p| {
            let x = p.input(owner, (p.id() == owner).then_some(&v), &[37, 3])?;
            p.reveal(&x)
        });
        for (i, (got, _)) in out.iter().enumerate() {
            assert_eq!(got, &v, "seed {seed} owner {owner} party {i}");
        }
        // Input costs the owner 8 B/element, the others nothing ([`input_cost`]); reveal 8 B/element each.
        let bytes: [u64; 3] = std::array::from_fn(|i| input_cost(owner, i, 111).1 + 8 * 111);
        assert_eq!(bytes[owner], 16 * 111);
        assert_cost(&out, input_cost(owner, 0, 111).0 + 1, bytes, "input + reveal");
        let to = (owner + 1) % 3;
        let out = run3(|p| {
            let x = p.input(owner, (p.id() == owner).then_some(&v), &[37, 3])?;
            let before = p.counters();
            let r = p.reveal_to(&x, to)?;
            Ok((r, p.counters().since(&before)))
        });
        for (i, ((got, c), _)) in out.iter().enumerate() {
            assert_eq!(got.as_ref(), (i == to).then_some(&v), "reveal_to {to}, party {i}");
            assert_eq!(c.bytes_sent, if i == (to + 2) % 3 { 8 * 111 } else { 0 });
            assert_eq!((c.rounds, c.bytes_sent), reveal_to_cost(to, i, 111));
        }
    }
}

#[test]
fn shares_are_consistent_and_zero_sharings_vanish() {
    let shape = [1000];
    let out = run3(|p| {
        let r = p.random_share(&shape)?;
        let z = p.zero_share(&shape)?;
        let zb = p.zero_share_binary(&shape)?;
        Ok((p.download(r.first())?, p.download(r.second())?, p.download(&z)?, p.download(&zb)?))
    });
    assert_cost(&out, 0, [0; 3], "random and zero sharings");
    for i in 0..3 {
        // P_i's second share is P_{i+1}'s first share.
        assert_eq!(out[i].0 .1, out[(i + 1) % 3].0 .0);
    }
    for j in 0..1000 {
        let s = (0..3).fold(0u64, |s, i| s.wrapping_add(out[i].0 .2.data()[j]));
        let x = (0..3).fold(0u64, |s, i| s ^ out[i].0 .3.data()[j]);
        assert_eq!((s, x), (0, 0), "element {j}");
    }
    // The terms themselves are not zero (they are pseudo-random).
    assert!(out[0].0 .2.data().iter().any(|&v| v != 0));
}

#[test]
fn linear_ops_and_public_constants() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (a, b, c) = (rand_tensor(&mut rng, &[64]), rand_tensor(&mut rng, &[64]), rand_tensor(&mut rng, &[64]));
    let be = CpuBackend;
    let out = run3(|p| {
        let x = p.input(0, (p.id() == 0).then_some(&a), &[64])?;
        let y = p.input(1, (p.id() == 1).then_some(&b), &[64])?;
        let ct = p.upload(&c)?;
        let s = p.add(&x, &y)?;
        let s = p.sub(&s, &p.neg(&y)?)?; // a + 2b
        let s = p.add_public(&s, &ct)?; // + c
        let s = p.mul_public(&s, &ct)?; // * c
        let s = p.mul_scalar(&s, 3)?;
        p.reveal(&s)
    });
    let two_b = be.binary(BinaryOp::Add, &b, &b).unwrap();
    let want = be.binary(BinaryOp::Add, &a, &two_b).unwrap();
    let want = be.binary(BinaryOp::Add, &want, &c).unwrap();
    let want = be.binary(BinaryOp::Mul, &want, &c).unwrap();
    let want = be.scalar(cryptgpu_ring::ScalarOp::Mul, &want, 3).unwrap();
    for (got, _) in &out {
        assert_eq!(got, &want);
    }
}

#[test]
fn integer_products_are_bit_exact() {
    let seed = 3;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let be = CpuBackend;
    for _ in 0..4 {
        let (m, k, n) = (rng.gen_range(1..40), rng.gen_range(1..70), rng.gen_range(1..40));
        let a = rand_tensor(&mut rng, &[m, k]);
        let b = rand_tensor(&mut rng, &[k, n]);
        let e1 = rand_tensor(&mut rng, &[m, k]);
        let out = run3(|p| {
            let x = p.input(0, (p.id() == 0).then_some(&a), &[m, k])?;
            let y = p.input(1, (p.id() == 1).then_some(&b), &[k, n])?;
            let e = p.input(2, (p.id() == 2).then_some(&e1), &[m, k])?;
            let before = p.counters();
            let z = p.matmul_int(&x, &y)?;
            let cost_mm = p.counters().since(&before);
            let before = p.counters();
            let w = p.mul_int(&x, &e)?;
            let cost_mul = p.counters().since(&before);
            Ok((p.reveal(&z)?, p.reveal(&w)?, cost_mm, cost_mul))
        });
        let want_mm = be.matmul(&a, &b, false, false).unwrap();
        let want_mul = be.binary(BinaryOp::Mul, &a, &e1).unwrap();
        for (i, ((z, w, cm, cu), _)) in out.iter().enumerate() {
            assert_eq!(z, &want_mm, "seed {seed} matmul {m}x{k}x{n} party {i}");
            assert_eq!(w, &want_mul, "seed {seed} mul party {i}");
            assert_eq!((cm.rounds, cm.bytes_sent), (1, 8 * (m * n) as u64), "matmul cost");
            assert_eq!((cu.rounds, cu.bytes_sent), (1, 8 * (m * k) as u64), "mul cost");
        }
    }
}

#[test]
fn conv2d_is_bit_exact() {
    let seed = 4;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let be = CpuBackend;
    let p2 = Conv2dParams { stride: (2, 1), padding: (1, 2) };
    let xv = rand_tensor(&mut rng, &[2, 3, 9, 8]);
    let wv = rand_tensor(&mut rng, &[4, 3, 3, 3]);
    let want = be.conv2d(&xv, &wv, &p2).unwrap();
    let out = run3(|p| {
        let x = p.input(0, (p.id() == 0).then_some(&xv), xv.shape())?;
        let w = p.input(1, (p.id() == 1).then_some(&wv), wv.shape())?;
        let before = p.counters();
        let y = p.conv2d_int(&x, &w, &p2)?;
        let c = p.counters().since(&before);
        Ok((p.reveal(&y)?, c))
    });
    for ((y, c), _) in &out {
        assert_eq!(y, &want, "seed {seed}");
        assert_eq!((c.rounds, c.bytes_sent), (1, 8 * want.len() as u64));
    }
}

#[test]
fn fixed_point_matmul_within_documented_bound() {
    let seed = 5;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let codec = FixedPoint::default();
    let (m, k, n) = (24, 300, 17);
    let av: Vec<f64> = (0..m * k).map(|_| rng.gen_range(-4.0..4.0)).collect();
    let bv: Vec<f64> = (0..k * n).map(|_| rng.gen_range(-2.0..2.0)).collect();
    let a = codec.encode_tensor(&[m, k], &av).unwrap();
    let b = codec.encode_tensor(&[k, n], &bv).unwrap();
    let out = run3(|p| {
        let x = p.input(0, (p.id() == 0).then_some(&a), &[m, k])?;
        let y = p.input(1, (p.id() == 1).then_some(&b), &[k, n])?;
        let before = p.counters();
        let z = p.matmul_fp(&x, &y)?;
        let c = p.counters().since(&before);
        Ok((p.reveal(&z)?, c))
    });
    let delta = 1.0 / codec.scale();
    for (i, ((z, c), _)) in out.iter().enumerate() {
        let (r, b) = product_cost(TruncMode::Exact, i);
        assert_eq!((c.rounds, c.bytes_sent), (r, b * (m * n) as u64), "matmul_fp cost of party {i}");
        let got = codec.decode_tensor(z);
        for i in 0..m {
            for j in 0..n {
                let exact: f64 = (0..k).map(|t| av[i * k + t] * bv[t * n + j]).sum();
                let l1: f64 = (0..k).map(|t| av[i * k + t].abs() + bv[t * n + j].abs()).sum();
                let bound = delta / 2.0 * l1 + k as f64 * delta * delta / 4.0 + delta;
                let g = got[i * n + j];
                assert!(
                    approx::abs_diff_eq!(g, exact, epsilon = bound),
                    "seed {seed} ({i},{j}): {g} vs {exact}, bound {bound}"
                );
            }
        }
    }
}

/// Over 10^6 products: in probabilistic mode (CryptGPU's) truncation failures occur at the predicted
/// rate `|z| / 2^64`; in exact mode there are none, even for `|z|` up to 2^60. In both modes the
/// error of the others is below one LSB with mean zero, and bounded fixed-point inputs never fail.
#[test]
fn truncation_failures_probabilistic_rate_and_exact_none() {
    const N: usize = 1_000_000;
    let seed = 6;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let f = FixedPoint::DEFAULT_FRAC_BITS;
    // (a) Large products: |z| in [2^56, 2^60] gives failure probabilities 1/256 .. 1/16.
    let xs: Vec<i64> = (0..N).map(|_| rng.gen_range(1i64 << 53..1i64 << 57) * if rng.gen() { 1 } else { -1 }).collect();
    let ys: Vec<i64> = (0..N).map(|_| rng.gen_range(1..=8)).collect();
    // (b) Bounded fixed-point inputs |x|, |y| <= 1.
    let one = 1i64 << f;
    let us: Vec<i64> = (0..N).map(|_| rng.gen_range(-one..=one)).collect();
    let vs: Vec<i64> = (0..N).map(|_| rng.gen_range(-one..=one)).collect();
    let t = |v: &[i64]| RingTensor::from_i64(&[N], v).unwrap();
    let (x, y, u, v) = (t(&xs), t(&ys), t(&us), t(&vs));
    let scale = (f as f64).exp2();
    let check = |r: &RingTensor, xs: &[i64], ys: &[i64]| {
        let (mut fails, mut expected, mut var, mut err_sum) = (0u64, 0.0f64, 0.0f64, 0.0f64);
        for j in 0..N {
            let z = xs[j] as i128 * ys[j] as i128;
            let p_fail = (z.unsigned_abs() as f64) / 64f64.exp2();
            expected += p_fail;
            var += p_fail * (1.0 - p_fail);
            let e = (r.data()[j] as i64) as f64 - z as f64 / scale;
            if e.abs() >= 1.0 {
                fails += 1;
                assert!(
                    approx::abs_diff_eq!(e.abs(), (64.0 - f as f64).exp2(), epsilon = 2.0),
                    "seed {seed}: failure error {e}"
                );
            } else {
                err_sum += e;
            }
        }
        (fails, expected, var.sqrt(), err_sum / (N as f64 - fails as f64))
    };
    for mode in [TruncMode::Probabilistic, TruncMode::Exact] {
        let out = run3_in(mode, |p| {
            let sx = p.input(0, (p.id() == 0).then_some(&x), &[N])?;
            let sy = p.input(1, (p.id() == 1).then_some(&y), &[N])?;
            let su = p.input(0, (p.id() == 0).then_some(&u), &[N])?;
            let sv = p.input(2, (p.id() == 2).then_some(&v), &[N])?;
            let a = p.mul_fp(&sx, &sy)?;
            let b = p.mul_fp(&su, &sv)?;
            Ok((p.reveal(&a)?, p.reveal(&b)?))
        });
        let (ra, rb) = &out[0].0;
        let (fails, expected, sigma, mean_err) = check(ra, &xs, &ys);
        assert!(expected > 10_000.0, "test should exercise many failures");
        match mode {
            TruncMode::Probabilistic => assert!(
                approx::abs_diff_eq!(fails as f64, expected, epsilon = 6.0 * sigma),
                "seed {seed}: {fails} failures, expected {expected:.0} ± {sigma:.0}"
            ),
            TruncMode::Exact => assert_eq!(
                fails, 0,
                "seed {seed}: exact truncation failed (probabilistic would fail ~{expected:.0} times)"
            ),
        }
        assert!(mean_err.abs() < 5e-3, "seed {seed} {mode:?}: rounding bias {mean_err}");
        let (fails, expected, _, mean_err) = check(rb, &us, &vs);
        assert!(
            expected < 0.1 && fails <= 3,
            "seed {seed} {mode:?}: {fails} failures with bounded inputs (expected {expected})"
        );
        assert!(mean_err.abs() < 5e-3, "seed {seed} {mode:?}: rounding bias {mean_err}");
    }
}

/// Exact truncation at the edges of its domain: |z| just below 2^62, zero, and one LSB either side,
/// for the fused product and for truncating a sharing, with the documented costs.
#[test]
fn exact_truncation_edges_and_costs() {
    let f = FixedPoint::DEFAULT_FRAC_BITS;
    let vals: Vec<i64> =
        vec![0, 1, -1, (1 << 61) - 1, -(1 << 61), (1 << 62) - 1, -(1 << 62) + 1, 1 << 40, -(1 << 40), 12345];
    let n = vals.len();
    let xt = RingTensor::from_i64(&[n], &vals).unwrap();
    let one = RingTensor::from_i64(&[n], &vec![1; n]).unwrap();
    let out = run3(|p| {
        let sx = p.input(0, (p.id() == 0).then_some(&xt), &[n])?;
        let s1 = p.input(1, (p.id() == 1).then_some(&one), &[n])?;
        let before = p.counters();
        let prod = p.mul_fp(&sx, &s1)?;
        let c_prod = p.counters().since(&before);
        let before = p.counters();
        let tr = p.truncate(&sx)?;
        let c_tr = p.counters().since(&before);
        Ok((p.reveal(&prod)?, p.reveal(&tr)?, c_prod, c_tr))
    });
    for (i, ((prod, tr, cp, ct), _)) in out.iter().enumerate() {
        for (j, &v) in vals.iter().enumerate() {
            for (what, got) in [("product", prod.data()[j] as i64), ("truncate", tr.data()[j] as i64)] {
                // |got - v / 2^f| < 1, in integers.
                let diff = (got as i128) * (1i128 << f) - v as i128;
                assert!(diff.abs() < 1i128 << f, "{what} of {v}: {got}");
            }
        }
        assert_eq!((cp.rounds, cp.bytes_sent), (2, [24, 16, 16][i] * n as u64), "product cost of party {i}");
        assert_eq!((ct.rounds, ct.bytes_sent), (1, [24, 8, 8][i] * n as u64), "truncation cost of party {i}");
    }
}

#[test]
fn seeded_keys_reproduce_shares_exactly() {
    let cfg = RunConfig { keys: KeySource::InsecureSeed(42), ..RunConfig::default() };
    let go = || {
        run_local(CpuBackend, cfg, |p| {
            let r = p.random_share(&[8])?;
            p.download(r.first())
        })
        .unwrap()
        .map(|o| o.value)
    };
    assert_eq!(go(), go());
    let os = run_local(CpuBackend, RunConfig::default(), |p| {
        let r = p.random_share(&[8])?;
        p.download(r.first())
    })
    .unwrap();
    assert_ne!(os[0].value, go()[0]);
}

#[test]
fn bad_calls_give_errors_not_hangs() {
    let cfg = RunConfig { timeout: Duration::from_secs(20), ..RunConfig::default() };
    // Shape mismatch in a product.
    let err = run_local(CpuBackend, cfg, |p| {
        let x = p.random_share(&[3, 4])?;
        let y = p.random_share(&[5, 6])?;
        p.matmul_int(&x, &y)
    })
    .unwrap_err();
    assert!(matches!(err, SharingError::Ring(_)), "{err}");
    // The owner passes a value of the wrong shape: it fails, the others see it vanish.
    let v = RingTensor::zeros(&[2]);
    let err = run_local(CpuBackend, cfg, |p| p.input(1, (p.id() == 1).then_some(&v), &[3])).unwrap_err();
    assert!(matches!(err, SharingError::Ring(_)), "{err}");
    // A non-owner passing a value is refused.
    let err = run_local(CpuBackend, cfg, |p| p.input(1, Some(&v), &[2])).unwrap_err();
    assert!(matches!(err, SharingError::Invalid(_)), "{err}");
    // A party that vanishes: its neighbours get an error, long before the timeout.
    let start = std::time::Instant::now();
    let out = std::thread::scope(|s| {
        let [t0, t1, t2] = LocalTransport::triple_with_timeout(Duration::from_secs(20));
        drop(t2);
        let h: Vec<_> = [t0, t1]
            .into_iter()
            .map(|t| {
                s.spawn(move || -> cryptgpu_sharing::Result<RingTensor> {
                    let mut p = Party::setup(CpuBackend, t, FixedPoint::default(), KeySource::Os)?;
                    let x = p.random_share(&[4])?;
                    p.reveal(&x)
                })
            })
            .collect();
        h.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    // Party 0 sends its key to party 2 first: it must name party 2. Party 1 sees 2 or 0 vanish.
    assert!(matches!(out[0], Err(SharingError::Net(NetError::PeerGone { peer: 2 }))), "{:?}", out[0]);
    assert!(matches!(out[1], Err(SharingError::Net(NetError::PeerGone { .. }))), "{:?}", out[1]);
    assert!(start.elapsed() < Duration::from_secs(10));
}
