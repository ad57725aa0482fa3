//! The training batch norm's forward pass against f64 over its whole variance range, with round
//! and byte counters checked against [`batch_norm_cost`].

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_ring::FixedPoint;
use cryptgpu_sharing::norm::{batch_norm_cost, pow2_bits, BN_VAR_RANGE};
use cryptgpu_sharing::trunc::TruncMode;
use cryptgpu_sharing::{run_local, KeySource, RunConfig, SharingError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Per channel of `[N, C, H, W]` data: mean, biased variance.
fn stats(x: &[f64], shape: &[usize]) -> Vec<(f64, f64)> {
    let (n, c, inner) = (shape[0], shape[1], shape[2] * shape[3]);
    (0..c)
        .map(|ch| {
            let v: Vec<f64> = (0..n).flat_map(|i| x[(i * c + ch) * inner..][..inner].to_vec()).collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            (mean, v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / v.len() as f64)
        })
        .collect()
}

#[test]
fn batch_norm_train_is_accurate_over_its_range_and_costs_what_it_documents() {
    let seed = 31;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let shape = [4usize, 48, 3, 3];
    let (n, c, inner) = (shape[0], shape[1], 9);
    let codec = FixedPoint::default();
    // Channel standard deviations spread over the range (σ² from 2^-16 to 2^12.5), means off zero.
    let stds: Vec<f64> = (0..c).map(|i| 2f64.powf(-8.0 + 14.2 * i as f64 / (c - 1) as f64)).collect();
    let means: Vec<f64> = (0..c).map(|_| rng.gen_range(-2.0..2.0)).collect();
    let mut x = vec![0.0; n * c * inner];
    for i in 0..n {
        for ch in 0..c {
            for k in 0..inner {
                x[(i * c + ch) * inner + k] = means[ch] + stds[ch] * rng.gen_range(-1.7..1.7);
            }
        }
    }
    let x: Vec<f64> = x.iter().map(|v| codec.decode(codec.encode(*v).unwrap())).collect();
    let gamma: Vec<f64> = (0..c).map(|_| rng.gen_range(0.5..2.0)).collect();
    let beta: Vec<f64> = (0..c).map(|_| rng.gen_range(-0.5..0.5)).collect();
    let eps = 1e-5;
    let tx = codec.encode_tensor(&shape, &x).unwrap();
    let (tg, tb) = (codec.encode_tensor(&[c], &gamma).unwrap(), codec.encode_tensor(&[c], &beta).unwrap());
    let cfg = RunConfig { keys: KeySource::InsecureSeed(seed), ..RunConfig::default() };
    let out = run_local(CpuBackend, cfg, |p| {
        let own = p.id() == 0;
        let sx = p.input(0, own.then_some(&tx), &shape)?;
        let sg = p.input(0, own.then_some(&tg), &[c])?;
        let sb = p.input(0, own.then_some(&tb), &[c])?;
        let before = p.counters();
        let o = p.batch_norm_train(&sx, &sg, &sb, eps)?;
        let cost = p.counters().since(&before);
        let open = |p: &mut cryptgpu_sharing::Party<_, _>, s| -> Result<Vec<f64>, SharingError> {
            Ok(codec.decode_tensor(&p.reveal(s)?))
        };
        let vals = [open(p, &o.y)?, open(p, &o.xhat)?, open(p, &o.scale)?, open(p, &o.mean)?, open(p, &o.var)?];
        Ok::<_, SharingError>((vals, cost))
    })
    .unwrap();
    for (i, o) in out.iter().enumerate() {
        let (_, cost) = &o.value;
        assert_eq!((cost.rounds, cost.bytes_sent), batch_norm_cost(TruncMode::Exact, i, &shape).unwrap(), "party {i}");
        assert_eq!(cost.rounds, 15);
    }
    let [y, xhat, scale, mean, var] = &out[0].value.0;
    let m = (n * inner) as f64;
    let t = pow2_bits(n * inner);
    let lsb = 1.0 / codec.scale();
    let mut worst = 0.0f64;
    for (ch, (mu, s2)) in stats(&x, &shape).into_iter().enumerate() {
        // The encoded 1/m keeps about f significant bits.
        assert!((mean[ch] - mu).abs() < (2.0 + mu.abs()) * lsb, "channel {ch}: mean {} vs {mu}", mean[ch]);
        let v = var[ch] * (t as f64).exp2() / m;
        assert!((v - s2).abs() < 1e-6 * s2 + 2.0 * lsb * (t as f64).exp2() / m, "channel {ch}: var {v} vs {s2}");
        let istd = 1.0 / (s2 + eps).sqrt();
        // The approximation against the exact inverse square root of its input: the private
        // variance plus the encoded ρ·eps (the variance's rounding, below 1 LSB, is inherent).
        let rho = m / (t as f64).exp2();
        let u = var[ch] + codec.decode(codec.encode(rho * eps).unwrap());
        let rel = (scale[ch] / gamma[ch] * (u / rho).sqrt() - 1.0).abs();
        worst = worst.max(rel);
        // Line (9.2e-5), rounding of istd (8.6e-5 at the top) and of the product with gamma.
        assert!(rel < 2.5e-4, "channel {ch} (σ² = {s2:.3e}): istd relative error {rel:.2e}");
        for i in 0..n {
            for k in 0..inner {
                let at = (i * c + ch) * inner + k;
                let want = (x[at] - mu) * istd;
                // Relative error of istd, plus the centred value's rounding (the mean's) times istd.
                let tol = (2.5e-4 + (1.0 - istd * (u / rho).sqrt()).abs()) * want.abs() + 3.0 * lsb * istd + 2.0 * lsb;
                assert!((xhat[at] - want).abs() < tol, "channel {ch}: xhat {} vs {want}", xhat[at]);
                let want_y = gamma[ch] * want + beta[ch];
                assert!((y[at] - want_y).abs() < 2.0 * tol * gamma[ch], "channel {ch}: y {} vs {want_y}", y[at]);
            }
        }
    }
    eprintln!("batch norm: worst istd relative error {worst:.2e} over σ² in [2^-16, 2^12.4]");
    assert_eq!(BN_VAR_RANGE, (-17, 12));
}

#[test]
fn batch_norm_train_rejects_bad_shapes() {
    let out = run_local(CpuBackend, RunConfig::default(), |p| {
        let x = p.public_share(&[1, 2, 1, 1], 0)?;
        let g = p.public_share(&[2], 0)?;
        let one_value = p.batch_norm_train(&x, &g, &g, 1e-5).err().map(|e| e.to_string());
        let x = p.public_share(&[2, 3, 2, 2], 0)?;
        let wrong_gamma = p.batch_norm_train(&x, &g, &g, 1e-5).err().map(|e| e.to_string());
        let g3 = p.public_share(&[3], 0)?;
        let bad_eps = p.batch_norm_train(&x, &g3, &g3, f64::NAN).err().map(|e| e.to_string());
        Ok::<_, SharingError>([one_value, wrong_gamma, bad_eps])
    })
    .unwrap();
    let [a, b, e] = &out[0].value;
    assert!(a.as_deref().unwrap_or("").contains("more than one value per channel"), "{a:?}");
    assert!(b.as_deref().unwrap_or("").contains("gamma has shape [2], expected [3]"), "{b:?}");
    assert!(e.as_deref().unwrap_or("").contains("eps NaN"), "{e:?}");
    assert!(batch_norm_cost(TruncMode::Exact, 0, &[4]).is_err());
    assert_eq!(batch_norm_cost(TruncMode::Probabilistic, 0, &[2, 3, 2, 2]).unwrap().0, 17);
}
