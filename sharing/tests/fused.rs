//! A fixed-point product held back before its truncation's last round and a ReLU whose MSB
//! input round carries that round: `relu(a·b + c)` to one LSB, one round fewer than the two steps
//! apart, consistent replicated outputs and the documented costs.

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_net::Counters;
use cryptgpu_ring::{BinaryOp, FixedPoint, RingTensor};
use cryptgpu_sharing::compare::{relu_cost, relu_pieces, relu_truncating_cost, RELU_PIECE};
use cryptgpu_sharing::convert::MsbVariant;
use cryptgpu_sharing::party::role_of;
use cryptgpu_sharing::trunc::{product_cost, product_held_cost, TruncMode};
use cryptgpu_sharing::{run_local, LocalLink, Party, RunConfig, SharingError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type P = Party<CpuBackend, LocalLink>;

/// What one party saw: the fused ReLU's output and DReLU bits (opened), its output shares, and the counters of the held product, the fused ReLU and the two steps.
struct Seen {
    fused: (RingTensor, RingTensor),
    shares: [RingTensor; 4],
    held: Counters,
    relu: Counters,
    finish_and_relu: Counters,
}

/// `relu(a·b + c)` on `n` random values, `a`, `b`, `c` within `scale` times 8, 2 and 1, with
/// `lead` leading ([`Party::set_lead`]).
fn run(mode: TruncMode, variant: MsbVariant, n: usize, scale: f64, lead: usize) -> [Seen; 3] {
    let codec = FixedPoint::default();
    let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
    let mut values = |scale: f64| -> Vec<f64> { (0..n).map(|_| rng.gen_range(-scale..scale)).collect() };
    let (a, b, c) = (values(8.0 * scale), values(2.0 * scale), values(scale));
    let enc = |v: &[f64]| codec.encode_tensor(&[n], v).unwrap();
    let (ta, tb, tc) = (enc(&a), enc(&b), enc(&c));
    let config = RunConfig { trunc: mode, ..RunConfig::default() };
    let out = run_local(CpuBackend, config, |p: &mut P| {
        let x = p.input(0, (p.id() == 0).then_some(&ta), &[n])?;
        let y = p.input(1, (p.id() == 1).then_some(&tb), &[n])?;
        let bias = p.input(2, (p.id() == 2).then_some(&tc), &[n])?;
        p.set_lead(lead)?;
        let mul = |be: &CpuBackend, s: &_, t: &_| cryptgpu_ring::Backend::binary(be, BinaryOp::Mul, s, t);
        let c0 = p.counters();
        let h = p.bilinear_held(&x, &y, &mul, codec.frac_bits())?;
        let h = p.add_to_truncating(h, &bias)?;
        let c1 = p.counters();
        let (r, d) = p.relu_truncating(h, variant)?;
        let c2 = p.counters();
        let z = p.mul_fp(&x, &y)?;
        let z = p.add(&z, &bias)?;
        let c3 = p.counters();
        p.relu_with(&z, variant)?;
        let c4 = p.counters();
        let mut apart = c4.since(&c3);
        let finish = c3.since(&c2);
        let role = role_of(p.id(), lead);
        let product = product_cost(mode, role);
        assert_eq!((finish.rounds, finish.bytes_sent), (product.0, product.1 * n as u64));
        apart.rounds += 1;
        apart.bytes_sent += finish.bytes_sent - product_held_cost(mode, role).1 * n as u64;
        let shares = [p.download(r.first())?, p.download(r.second())?, p.download(d.first())?, p.download(d.second())?];
        Ok::<_, SharingError>(Seen {
            fused: (p.reveal(&r)?, p.b_reveal(&d)?),
            shares,
            held: c1.since(&c0),
            relu: c2.since(&c1),
            finish_and_relu: apart,
        })
    })
    .expect("protocol run failed");
    let out = out.map(|o| o.value);
    // relu(a·b + c) to one LSB of the truncation; DReLU bits agree away from 0.
    let (r, d) = &out[0].fused;
    let f = codec.frac_bits();
    for k in 0..n {
        let (x, y, c) = (ta.data()[k] as i64, tb.data()[k] as i64, tc.data()[k] as i64);
        let z = ((x as i128 * y as i128) >> f) as i64 + c;
        let got = r.data()[k] as i64;
        assert!((got - z.max(0)).abs() <= 1, "{mode:?} {variant:?}: relu({z}) = {got}");
        if z.abs() > 1 {
            assert_eq!(d.data()[k], (z >= 0) as u64, "{mode:?} {variant:?}: drelu({z})");
        }
    }
    out
}

#[test]
fn relu_after_a_held_truncation_is_the_same_relu_one_round_sooner() {
    for mode in [TruncMode::Exact, TruncMode::Probabilistic] {
        for variant in [MsbVariant::Lean, MsbVariant::LowLatency] {
            for n in [1usize, 3, 200] {
                let out = run(mode, variant, n, 1.0, 0);
                let what = format!("{mode:?} {variant:?} n={n}");
                for (i, s) in out.iter().enumerate() {
                    let held = product_held_cost(mode, i);
                    assert_eq!((s.held.rounds, s.held.bytes_sent), (held.0, held.1 * n as u64), "{what}: held {i}");
                    let relu = relu_truncating_cost(variant, mode, i, n);
                    assert_eq!((s.relu.rounds, s.relu.bytes_sent), relu, "{what}: relu {i}");
                    assert_eq!(relu.0, relu_cost(variant, i, n).0, "{what}: the ReLU's own rounds");
                    // One round fewer than the two steps (the finished product's last round).
                    assert_eq!(s.held.rounds + s.relu.rounds + 1, held.0 + s.finish_and_relu.rounds, "{what}");
                    assert_eq!(s.relu.rounds + 1, s.finish_and_relu.rounds, "{what}");
                    let next = &out[(i + 1) % 3];
                    assert_eq!(s.shares[1], next.shares[0], "{what}: party {i}'s second ReLU share");
                    assert_eq!(s.shares[3], next.shares[2], "{what}: party {i}'s second DReLU share");
                }
                let total: u64 = out.iter().map(|s| s.held.bytes_sent + s.relu.bytes_sent).sum();
                let apart: u64 = out.iter().map(|s| s.held.bytes_sent + s.finish_and_relu.bytes_sent).sum();
                assert_eq!(total, apart, "{what}: bytes in all");
            }
        }
    }
}

/// Above [`RELU_PIECE`] elements both ReLUs run piece after piece: the same outputs, the bytes of
/// one call, the rounds of one call per piece (each mode's held state is cut into pieces).
#[test]
fn a_relu_larger_than_a_piece_runs_in_pieces() {
    let n = RELU_PIECE + 3;
    assert_eq!(relu_pieces(n), 2);
    // Led by parties 2 and 1: the pieces keep the held truncation's lead.
    for (mode, variant, lead) in
        [(TruncMode::Exact, MsbVariant::LowLatency, 2), (TruncMode::Probabilistic, MsbVariant::Lean, 1)]
    {
        // Small values: the probabilistic truncation fails with probability |z| / 2^64 per
        // element (below 2^-34 here, 6e-5 over the 2^20 elements).
        let out = run(mode, variant, n, 1.0 / 128.0, lead);
        for (i, s) in out.iter().enumerate() {
            let r = role_of(i, lead);
            let relu = relu_truncating_cost(variant, mode, r, n);
            assert_eq!((s.relu.rounds, s.relu.bytes_sent), relu, "{mode:?} {variant:?}: party {i}");
            assert_eq!(relu.0, 2 * relu_cost(variant, r, 1).0);
            assert_eq!(relu_cost(variant, r, n).1, relu_cost(variant, r, RELU_PIECE).1 + relu_cost(variant, r, 3).1);
            assert_eq!(s.finish_and_relu.rounds, relu.0 + 1);
            let next = &out[(i + 1) % 3];
            assert_eq!(s.shares[1], next.shares[0], "party {i}'s second ReLU share");
            assert_eq!(s.shares[3], next.shares[2], "party {i}'s second DReLU share");
        }
    }
}

/// [`Party::relu_values`] is `relu_with`'s output without the bits, at the same cost, above a
/// piece too.
#[test]
fn relu_values_is_relu_without_its_bits() {
    let n = RELU_PIECE + 5;
    let codec = FixedPoint::default();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let v: Vec<f64> = (0..n).map(|_| rng.gen_range(-4.0..4.0)).collect();
    let t = codec.encode_tensor(&[n], &v).unwrap();
    let out = run_local(CpuBackend, RunConfig::default(), |p: &mut P| {
        let x = p.input(0, (p.id() == 0).then_some(&t), &[n])?;
        let c0 = p.counters();
        let y = p.relu_values(&x, MsbVariant::LowLatency)?;
        let c1 = p.counters();
        let (z, _) = p.relu_with(&x, MsbVariant::LowLatency)?;
        let c2 = p.counters();
        Ok::<_, SharingError>((p.reveal(&y)?, p.reveal(&z)?, c1.since(&c0), c2.since(&c1)))
    })
    .unwrap();
    for (i, o) in out.iter().enumerate() {
        let (y, z, cy, cz) = &o.value;
        assert_eq!(y, z);
        assert_eq!((cy.rounds, cy.bytes_sent), (cz.rounds, cz.bytes_sent));
        assert_eq!((cy.rounds, cy.bytes_sent), relu_cost(MsbVariant::LowLatency, i, n));
        let want: Vec<u64> = t.data().iter().map(|&x| if (x as i64) < 0 { 0 } else { x }).collect();
        assert_eq!(y.data(), want.as_slice());
    }
}
