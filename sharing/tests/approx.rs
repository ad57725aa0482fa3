//! Fixed-point functions (exp, reciprocal, inverse square root, softmax, cross-entropy gradient)
//! against f64, with round and byte counters checked against the documented formulas.

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_net::Counters;
use cryptgpu_ring::FixedPoint;
use cryptgpu_sharing::approx::{
    exp_cost, exp_domain, exp_rounds, guess_cost, ln_cost, log_softmax_cost, softmax_cost, ExpConfig, SoftmaxConfig,
};
use cryptgpu_sharing::trunc::{product_cost, truncation_cost, TruncMode};

const MODE: TruncMode = TruncMode::Exact;

/// Per-element product cost `P` of `party` (rounds, bytes).
fn pc(party: usize) -> (u64, u64) {
    product_cost(MODE, party)
}

/// Per-element truncation cost `T` of `party` (rounds, bytes).
fn tc(party: usize) -> (u64, u64) {
    truncation_cost(MODE, party)
}
use cryptgpu_sharing::compare::after_msb;
use cryptgpu_sharing::convert::{msb_bytes, mul_bit_bytes, MsbVariant};
use cryptgpu_sharing::{run_local, KeySource, LocalLink, Party, RunConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type P = Party<CpuBackend, LocalLink>;

/// Runs `f` on three parties with seeded keys (reproducible); returns values and counters of `f`.
fn run3<R: Send>(seed: u64, f: impl Fn(&mut P) -> cryptgpu_sharing::Result<R> + Sync) -> [(R, Counters); 3] {
    let cfg = RunConfig { keys: KeySource::InsecureSeed(seed), ..RunConfig::default() };
    let out = run_local(CpuBackend, cfg, |p| {
        let before = p.counters();
        let v = f(p)?;
        Ok::<_, cryptgpu_sharing::SharingError>((v, p.counters().since(&before)))
    })
    .expect("protocol run failed");
    out.map(|o| o.value)
}

fn codec() -> FixedPoint {
    FixedPoint::default()
}

/// Shares `vals` from party 0, applies `op`, reveals; returns the decoded values and the op's counters.
fn apply(
    seed: u64,
    shape: &[usize],
    vals: &[f64],
    op: impl Fn(
            &mut P,
            &cryptgpu_sharing::AShare<CpuBackend>,
        ) -> cryptgpu_sharing::Result<cryptgpu_sharing::AShare<CpuBackend>>
        + Sync,
) -> (Vec<f64>, [Counters; 3]) {
    let t = codec().encode_tensor(shape, vals).unwrap();
    let out = run3(seed, |p| {
        let x = p.input(0, (p.id() == 0).then_some(&t), shape)?;
        let before = p.counters();
        let y = op(p, &x)?;
        let c = p.counters().since(&before);
        Ok((p.reveal(&y)?, c))
    });
    (codec().decode_tensor(&out[0].0 .0), [out[0].0 .1, out[1].0 .1, out[2].0 .1])
}

#[test]
fn exp_within_bound_and_guard_clamps() {
    let seed = 21;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut xs: Vec<f64> = (0..400).map(|_| rng.gen_range(-40.0..4.0)).collect();
    xs.extend([0.0, -2.0, -1e-6, 3.0, -511.0, -600.0, -5000.0]);
    let n = xs.len();
    let cfg = ExpConfig::default();
    let (got, c) = apply(seed, &[n], &xs, |p, x| p.exp(x, &cfg));
    for (x, g) in xs.iter().zip(&got) {
        let want = x.exp();
        // Documented: e^x·|x|³/(6·4^n) of approximation, about 2^(n-f)·e^x of rounding. The
        // rounding's worst case: the base 1 + t + t²/2 is off by up to 2 LSB (t's truncation and
        // t²/2's), each squaring k = 1..iters adds one LSB to y_k = e^(x·2^k/n), and squaring
        // doubles a relative error, so the final one is at most
        // 2·n·lsb + Σ_k 2^(iters-k)·lsb / y_k (which of the bound it reaches depends on the
        // randomness that splits each truncated value).
        let n = 2f64.powi(cfg.iters as i32);
        let lsb = 1.0 / codec().scale();
        let squarings: f64 = (1..=cfg.iters)
            .map(|k| 2f64.powi((cfg.iters - k) as i32) * lsb / (x * 2f64.powi(k as i32) / n).exp())
            .sum();
        let rounding = 2.0 * n * lsb + squarings;
        let bound = if *x >= -n { want * (x.abs().powi(3) / (6.0 * n * n) + rounding) + 4.0 * lsb } else { 1e-9 };
        assert!(approx::abs_diff_eq!(*g, want, epsilon = bound), "seed {seed}: exp({x}) = {g}, want {want}");
    }
    for (i, ci) in c.iter().enumerate() {
        assert_eq!((ci.rounds, ci.bytes_sent), exp_cost(MODE, i, n, &cfg));
    }
    // Without the guard: T + (1 + n)·P per element.
    let cfg = ExpConfig { iters: 9, guard: false };
    let (got, c) = apply(seed, &[3], &[-1.0, 0.5, -100.0], |p, x| p.exp(x, &cfg));
    approx::assert_abs_diff_eq!(got[..2], [(-1.0f64).exp(), 0.5f64.exp()][..], epsilon = 2e-3);
    approx::assert_abs_diff_eq!(got[2], 0.0, epsilon = 1e-3);
    for (i, ci) in c.iter().enumerate() {
        assert_eq!((ci.rounds, ci.bytes_sent), (exp_rounds(MODE, &cfg), (tc(i).1 + 10 * pc(i).1) * 3));
    }
}

#[test]
fn reciprocal_converges_on_1_to_2_pow_16_and_is_accurate_below_2_pow_8() {
    let seed = 22;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut xs: Vec<f64> = (0..300).map(|_| 2f64.powf(rng.gen_range(0.0..16.0))).collect();
    xs.extend([1.0, 1.5, 2.0, 255.9, 256.0, 400.0, 1000.0, 65535.0, 65536.0]);
    let n = xs.len();
    let iters = 4;
    let (got, c) = apply(seed, &[n], &xs, |p, x| p.reciprocal(x, 0, 16, iters));
    let lsb = 1.0 / codec().scale();
    for (x, g) in xs.iter().zip(&got) {
        let xe = codec().decode(codec().encode(*x).unwrap());
        let want = 1.0 / xe;
        assert!(approx::abs_diff_eq!(*g, want, epsilon = 4.0 * lsb), "seed {seed}: 1/{x} = {g}, want {want}");
        if *x <= 256.0 {
            assert!(
                approx::relative_eq!(*g, want, max_relative = 1e-3),
                "seed {seed}: relative error of 1/{x}: {g} vs {want}"
            );
        }
    }
    let (r, b) = guess_cost(0, n, 0, 16);
    assert_eq!(c[0].rounds, r + 2 * pc(0).0 * iters as u64);
    assert_eq!(c[0].bytes_sent, b + 2 * pc(0).1 * iters as u64 * n as u64);
    // Small inputs with a wider range.
    let xs: Vec<f64> = (0..100).map(|_| 2f64.powf(rng.gen_range(-8.0..8.0))).collect();
    let (got, _) = apply(seed, &[10, 10], &xs, |p, x| p.reciprocal(x, -8, 8, 4));
    for (x, g) in xs.iter().zip(&got) {
        let want = 1.0 / codec().decode(codec().encode(*x).unwrap());
        assert!(approx::relative_eq!(*g, want, max_relative = 1e-3), "seed {seed}: 1/{x} = {g}, want {want}");
    }
}

#[test]
fn inverse_sqrt_relative_error_below_1e3() {
    let seed = 23;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut xs: Vec<f64> = (0..300).map(|_| 2f64.powf(rng.gen_range(-8.0..16.0))).collect();
    xs.extend([2f64.powi(-8), 1.0, 2.0, 3.0, 65535.0, 65536.0]);
    let n = xs.len();
    let (got, c) = apply(seed, &[n], &xs, |p, x| p.inv_sqrt(x, -8, 16, 4));
    for (x, g) in xs.iter().zip(&got) {
        let want = 1.0 / codec().decode(codec().encode(*x).unwrap()).sqrt();
        assert!(approx::relative_eq!(*g, want, max_relative = 1e-3), "seed {seed}: 1/sqrt({x}) = {g}, want {want}");
    }
    let (r, b) = guess_cost(1, n, -8, 16);
    assert_eq!((c[1].rounds, c[1].bytes_sent), (r + (2 + 3 * 4) * pc(1).0, b + (2 + 3 * 4) * pc(1).1 * n as u64));
}

fn softmax_f64(row: &[f64]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

#[test]
fn softmax_within_1e3_for_10_200_1000_classes() {
    let seed = 24;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (rows, classes) in [(64usize, 10usize), (16, 200), (4, 1000)] {
        let mut xs: Vec<f64> = (0..rows * classes).map(|_| rng.gen_range(-30.0..30.0)).collect();
        // A row with a tie at the max and a row of equal values.
        xs[classes] = 30.0;
        xs[classes + 1] = 30.0;
        for v in &mut xs[..classes] {
            *v = -7.25;
        }
        // The 200-class case runs the max-shift tree with the low-latency protocols.
        let max_variant = if classes == 200 { MsbVariant::LowLatency } else { MsbVariant::Lean };
        let cfg = SoftmaxConfig { max_variant, ..SoftmaxConfig::default() };
        let (got, c) = apply(seed, &[rows, classes], &xs, |p, x| p.softmax(x, &cfg));
        let mut worst = 0.0f64;
        for r in 0..rows {
            let want = softmax_f64(&xs[r * classes..(r + 1) * classes]);
            for (g, w) in got[r * classes..(r + 1) * classes].iter().zip(&want) {
                worst = worst.max((g - w).abs());
            }
        }
        eprintln!("softmax {rows}x{classes}: max abs error {worst:.2e}");
        assert!(worst < 1e-3, "seed {seed}: {rows}x{classes}: max error {worst}");
        let levels = (classes as f64).log2().ceil() as u64;
        assert_eq!(
            c[0].rounds,
            if classes == 200 { 7 } else { 9 } * levels
                + exp_rounds(MODE, &cfg.exp)
                + guess_cost(0, rows, -1, 0).0
                + 2 * pc(0).0 * cfg.nr_iters as u64
                + pc(0).0
        );
        for (i, ci) in c.iter().enumerate() {
            assert_eq!((ci.rounds, ci.bytes_sent), softmax_cost(MODE, i, rows, classes, &cfg), "party {i}");
        }
    }
}

#[test]
fn log_softmax_within_1e3_and_costs_exact() {
    let seed = 26;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (rows, classes) in [(32usize, 10usize), (4, 1000), (3, 1)] {
        let mut xs: Vec<f64> = (0..rows * classes).map(|_| rng.gen_range(-30.0..30.0)).collect();
        // A row of equal values: the sum is exactly C.
        for v in &mut xs[..classes] {
            *v = 2.5;
        }
        let cfg = SoftmaxConfig::default();
        let (got, c) = apply(seed, &[rows, classes], &xs, |p, x| p.log_softmax(x, &cfg));
        let mut worst = 0.0f64;
        for r in 0..rows {
            let want = softmax_f64(&xs[r * classes..(r + 1) * classes]);
            for (g, w) in got[r * classes..(r + 1) * classes].iter().zip(&want) {
                worst = worst.max((g - w.ln()).abs());
            }
        }
        eprintln!("log_softmax {rows}x{classes}: max abs error {worst:.2e}");
        assert!(worst < 1e-3, "seed {seed}: {rows}x{classes}: max error {worst}");
        for (i, ci) in c.iter().enumerate() {
            assert_eq!((ci.rounds, ci.bytes_sent), log_softmax_cost(MODE, i, rows, classes, &cfg), "party {i}");
        }
    }
}

#[test]
fn ln_costs_exact() {
    let xs: Vec<f64> = (1..=12).map(|i| i as f64 * 0.75).collect();
    let (_, c) = apply(27, &[12], &xs, |p, x| p.ln(x, -1, 3));
    for (i, ci) in c.iter().enumerate() {
        assert_eq!((ci.rounds, ci.bytes_sent), ln_cost(MODE, i, 12, -1, 3), "party {i}");
    }
}

#[test]
fn cross_entropy_gradient() {
    let seed = 25;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for n in [8usize, 6] {
        let c = 5;
        let p: Vec<f64> = (0..n * c).map(|_| rng.gen_range(0.0..1.0)).collect();
        let y: Vec<f64> = (0..n * c).map(|i| (i % c == (i / c) % c) as u8 as f64).collect();
        let (tp, ty) = (codec().encode_tensor(&[n, c], &p).unwrap(), codec().encode_tensor(&[n, c], &y).unwrap());
        let out = run3(seed, |pt| {
            let ps = pt.input(0, (pt.id() == 0).then_some(&tp), &[n, c])?;
            let ys = pt.input(1, (pt.id() == 1).then_some(&ty), &[n, c])?;
            let before = pt.counters();
            let g = pt.cross_entropy_grad(&ps, &ys)?;
            let cost = pt.counters().since(&before);
            Ok((pt.reveal(&g)?, cost))
        });
        let got = codec().decode_tensor(&out[0].0 .0);
        for i in 0..n * c {
            let want = (p[i] - y[i]) / n as f64;
            assert!(
                approx::abs_diff_eq!(got[i], want, epsilon = 3.0 / codec().scale()),
                "seed {seed} n {n}: {} vs {want}",
                got[i]
            );
        }
        for (i, ((_, cost), _)) in out.iter().enumerate() {
            assert_eq!((cost.rounds, cost.bytes_sent), (tc(i).0, tc(i).1 * (n * c) as u64));
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let cfg = RunConfig::default();
    let err = run_local(CpuBackend, cfg, |p| {
        let x = p.random_share(&[4])?;
        p.exp(&x, &ExpConfig { iters: 0, guard: false })
    });
    assert!(err.is_err());
    let err = run_local(CpuBackend, cfg, |p| {
        let x = p.random_share(&[4])?;
        p.reciprocal(&x, 5, 5, 3)
    });
    assert!(err.is_err());
    let err = run_local(CpuBackend, cfg, |p| {
        let x = p.random_share(&[4, 0])?;
        p.softmax(&x, &SoftmaxConfig::default())
    });
    assert!(err.is_err());
    let err = run_local(CpuBackend, cfg, |p| {
        let x = p.random_share(&[4])?;
        p.max_axis(&x, 1, true)
    });
    assert!(err.is_err());
}

#[test]
fn natural_log_and_cross_entropy_loss() {
    let seed = 26;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut xs: Vec<f64> = (0..300).map(|_| 2f64.powf(rng.gen_range(-16.0..9.0))).collect();
    xs.extend([2f64.powi(-16), 0.5, 1.0, 1.999, 2.0, 511.0]);
    let n = xs.len();
    let (got, c) = apply(seed, &[n], &xs, |p, x| p.ln(x, -16, 8));
    for (x, g) in xs.iter().zip(&got) {
        let want = codec().decode(codec().encode(*x).unwrap()).ln();
        assert!(approx::abs_diff_eq!(*g, want, epsilon = 1e-5), "seed {seed}: ln({x}) = {g}, want {want}");
    }
    let (r, b) = guess_cost(2, n, -16, 8);
    assert_eq!((c[2].rounds, c[2].bytes_sent), (r + 4 * pc(2).0 + tc(2).0, b + (6 * pc(2).1 + tc(2).1) * n as u64));

    // Loss of softmax-like rows (one with a vanishing true-class probability, floored at 2^-16).
    let (rows, classes) = (6usize, 4usize);
    let mut p: Vec<f64> = Vec::new();
    for _ in 0..rows {
        let e: Vec<f64> = (0..classes).map(|_| rng.gen_range(0.01..1.0)).collect();
        let s: f64 = e.iter().sum();
        p.extend(e.iter().map(|v| v / s));
    }
    p[0] = 1e-9;
    let labels: Vec<usize> = (0..rows).map(|i| if i == 0 { 0 } else { rng.gen_range(0..classes) }).collect();
    let y: Vec<f64> = (0..rows * classes).map(|i| (labels[i / classes] == i % classes) as u8 as f64).collect();
    let (tp, ty) =
        (codec().encode_tensor(&[rows, classes], &p).unwrap(), codec().encode_tensor(&[rows, classes], &y).unwrap());
    let out = run3(seed, |pt| {
        let ps = pt.input(0, (pt.id() == 0).then_some(&tp), &[rows, classes])?;
        let ys = pt.input(1, (pt.id() == 1).then_some(&ty), &[rows, classes])?;
        let before = pt.counters();
        let l = pt.cross_entropy_loss(&ps, &ys)?;
        let cost = pt.counters().since(&before);
        Ok((pt.reveal(&l)?, cost))
    });
    let got = codec().decode_tensor(&out[0].0 .0)[0];
    let want: f64 = -(0..rows).map(|i| p[i * classes + labels[i]].max(2f64.powi(-16)).ln()).sum::<f64>() / rows as f64;
    assert!(approx::abs_diff_eq!(got, want, epsilon = 1e-3), "seed {seed}: loss {got}, want {want}");
    for (i, ((_, cost), _)) in out.iter().enumerate() {
        let (nr, nc) = (rows as u64, (rows * classes) as u64);
        let bytes = pc(i).1 * nc
            + msb_bytes(i, rows)
            + mul_bit_bytes(after_msb(i), rows)
            + guess_cost(i, rows, -16, 0).1
            + (6 * pc(i).1 + tc(i).1) * nr
            + tc(i).1;
        let rounds = pc(i).0 + 9 + guess_cost(i, rows, -16, 0).0 + 4 * pc(i).0 + tc(i).0 + tc(i).0;
        assert_eq!((cost.rounds, cost.bytes_sent), (rounds, bytes), "loss cost, party {i}");
    }
}

/// Shares `xs` and `ys` from parties 0 and 1 and reveals their fixed-point product.
fn product(seed: u64, xs: &[f64], ys: &[f64]) -> Vec<f64> {
    let n = xs.len();
    let (tx, ty) = (codec().encode_tensor(&[n], xs).unwrap(), codec().encode_tensor(&[n], ys).unwrap());
    let out = run3(seed, |p| {
        let x = p.input(0, (p.id() == 0).then_some(&tx), &[n])?;
        let y = p.input(1, (p.id() == 1).then_some(&ty), &[n])?;
        let z = p.mul_fp(&x, &y)?;
        p.reveal(&z)
    });
    codec().decode_tensor(&out[0].0)
}

/// The exact truncation's bound `-2^(62-2f) <= x·y < 2^(62-2f)` (`FixedPoint::max_product`): exact
/// up to it; past it wrong by `2^(64-2f)` against the product's sign with probability about
/// `(|z| - 2^62)/2^63`, as `cryptgpu_ring::fixed` states.
#[test]
fn exact_truncation_holds_up_to_the_product_bound() {
    let seed = 27;
    let c = codec();
    let lsb = 1.0 / c.scale();
    let edge = c.max_product().sqrt(); // 2048
    let miss = 2f64.powi(64 - 2 * c.frac_bits() as i32);
    let k = 128;
    // (x, y) cases, k copies each: just below +bound, exactly -bound, just past -bound (wrong with
    // probability 2^-32), then 1.96 times the bound (0.48) of both signs.
    let cases =
        [(edge, edge - lsb), (-edge, edge), (-edge, edge + lsb), (1.4 * edge, 1.4 * edge), (-1.4 * edge, 1.4 * edge)];
    let xs: Vec<f64> = cases.iter().flat_map(|&(x, _)| std::iter::repeat_n(x, k)).collect();
    let ys: Vec<f64> = cases.iter().flat_map(|&(_, y)| std::iter::repeat_n(y, k)).collect();
    let got = product(seed, &xs, &ys);
    let mut wrong = [0usize; 5];
    for (i, g) in got.iter().enumerate() {
        let want = c.decode(c.encode(xs[i]).unwrap()) * c.decode(c.encode(ys[i]).unwrap());
        if (g - want).abs() <= lsb {
            continue;
        }
        let flipped = want - miss * want.signum();
        assert!(
            approx::abs_diff_eq!(*g, flipped, epsilon = lsb),
            "seed {seed}: {} * {} = {g}, want {want}",
            xs[i],
            ys[i]
        );
        wrong[i / k] += 1;
    }
    assert_eq!(&wrong[..3], &[0, 0, 0], "seed {seed}");
    for w in &wrong[3..] {
        assert!((k / 4..3 * k / 4).contains(w), "seed {seed}: {wrong:?} of {k} wrong at 1.96x the bound");
    }
}

/// Tolerance of `exp(x)` inside its domain: the approximation's `e^x·|x|³/(6·4^n)` and about
/// `2^(n-f)·e^x` of rounding, plus a few LSBs.
fn exp_tolerance(x: f64, cfg: &ExpConfig) -> f64 {
    let n = 2f64.powi(cfg.iters as i32);
    let lsb = 1.0 / codec().scale();
    x.exp() * (x.abs().powi(3) / (6.0 * n * n) + 2.0 * n * lsb) + 4.0 * lsb
}

#[test]
fn exp_domain_edges() {
    let seed = 28;
    let f = codec().frac_bits();
    let guarded = ExpConfig::default();
    let bare = ExpConfig { guard: false, ..guarded };
    let (lo_g, hi) = exp_domain(f, &guarded);
    let (lo, hi_b) = exp_domain(f, &bare);
    assert_eq!((lo_g, lo, hi, hi_b), (-codec().max_abs(), -256.0, 22.0 * std::f64::consts::LN_2, hi));
    // At and just inside the edges: accurate (the bottom edge with the guard is every encodable x).
    for (cfg, xs) in [(guarded, vec![hi - 0.01, 15.0, 5.0, -1e12, lo_g]), (bare, vec![hi - 0.01, -255.0, lo])] {
        let (got, _) = apply(seed, &[xs.len()], &xs, |p, x| p.exp(x, &cfg));
        for (x, g) in xs.iter().zip(&got) {
            assert!(
                approx::abs_diff_eq!(*g, x.exp(), epsilon = exp_tolerance(*x, &cfg)),
                "seed {seed}: exp({x}) = {g} ({cfg:?})"
            );
        }
    }
    // Past the top: the last squaring's truncation fails (by -2^(64-2f)) for some elements.
    let k = 64;
    let x = hi + 0.6;
    let (got, _) = apply(seed, &[k], &vec![x; k], |p, x| p.exp(x, &guarded));
    let miss = 2f64.powi(64 - 2 * f as i32);
    let tol = exp_tolerance(x, &guarded);
    let wrong = got.iter().filter(|g| (*g - x.exp()).abs() > tol).count();
    let near = |g: f64, v: f64| approx::abs_diff_eq!(g, v, epsilon = tol);
    assert!(got.iter().all(|&g| near(g, x.exp()) || near(g, x.exp() - miss)), "seed {seed}: {got:?}");
    assert!((k / 8..7 * k / 8).contains(&wrong), "seed {seed}: {wrong} of {k} wrong at x = {x}");
    // Past the bottom without the guard the base grows again: 1 at -2^(n+1); the guard clamps.
    let xs = [2.0 * lo, 1.5 * lo];
    let (got, _) = apply(seed, &[2], &xs, |p, x| p.exp(x, &bare));
    assert!(approx::abs_diff_eq!(got[..2], [1.0, 0.0][..], epsilon = 1e-4), "seed {seed}: {got:?}");
    let (got, _) = apply(seed, &[2], &xs, |p, x| p.exp(x, &guarded));
    assert!(got.iter().all(|&g| approx::abs_diff_eq!(g, 0.0, epsilon = 1e-4)), "seed {seed}: {got:?}");
}

/// Batch norm's inverse square root (`[2^-17, 2^17)`, 3 Newton steps) at and past its edges.
#[test]
fn inverse_sqrt_domain_edges() {
    let seed = 29;
    let (lo, hi, iters) = (-17, 16, 3);
    let lsb = 1.0 / codec().scale();
    let bottom = 2f64.powi(lo);
    let top = 2f64.powi(hi + 1);
    // Inside: both edges, then past the top (c = 1.25, 1.5, 2) and below the bottom (c = 1/2, 1/4).
    let xs =
        [bottom, bottom + lsb, 1.0, top / 2.0, top - lsb, 1.25 * top, 1.5 * top, 2.0 * top, bottom / 2.0, bottom / 4.0];
    let (got, _) = apply(seed, &[xs.len()], &xs, |p, x| p.inv_sqrt(x, lo, hi, iters));
    let rel: Vec<f64> = xs.iter().zip(&got).map(|(x, g)| (g * x.sqrt() - 1.0).abs()).collect();
    // Inside: below 4e-4 (one LSB of the last product, relative to a result of at least 2^-8.5).
    assert!(rel[..5].iter().all(|&e| e < 4e-4), "seed {seed}: inside {rel:?}");
    let documented = [1e-3, 2e-2, 0.4, 8e-3, 7e-2];
    for (e, d) in rel[5..].iter().zip(documented) {
        assert!(*e > d / 3.0 && *e < d * 3.0, "seed {seed}: outside {rel:?}, documented {documented:?}");
    }
}
