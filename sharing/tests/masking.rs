//! Masking tests: every message a party receives inside a protocol must look uniformly random and
//! must not depend on the secrets (see `cryptgpu_sharing::audit` for the statistics).
//!
//! Each protocol runs [`RUNS`] times on each of two fixed secrets (all zeros, and fixed random
//! in-range values) with fresh keys every run (`KeySource::InsecureSeed(seed + run)`, the base seed
//! overridable with `CRYPTGPU_MASKING_SEED` and printed on failure), over [`Recording`]
//! transports. The messages each party receives after the inputs are shared (nothing is revealed)
//! are audited per receiving party and round (small rounds pooled): uniformity of the words and of
//! sums, differences and XORs of messages of the same or consecutive rounds, for both secrets;
//! two-sample homogeneity between the secrets; and, over [`RUNS`] more runs per receiver in which
//! only the key it lacks changes, uniformity of the differences between consecutive runs.
//! Sizes are multiples of 64, so no packed-bit message has padding bits.
//!
//! A run prints one row per protocol (`--nocapture`): statistics, the worst byte, bit and
//! two-sample statistic against its threshold, time. The suite computes about 3.4·10^5 statistics,
//! each a false alarm with probability `ALPHA` = 1e-9, so a given seed fails spuriously with
//! probability below 3.4·10^-4.
//!
//! Deleting a mask is caught: the zero share of `product_term` (words of every product), the AND
//! gate's binary zero share (words of every AND), and each mask of the exact truncation (`k`, `s`,
//! `k'`, `s'`: words; `ρ`: sums of key differences) or of the probabilistic one (`r`: words; `t_1`:
//! key differences).

use std::time::Instant;

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_net::{LocalTransport, RecordLog, RecordedMessage, Recording};
use cryptgpu_ring::{Backend, Conv2dParams, FixedPoint, Pool2dParams, RingTensor};
use cryptgpu_sharing::approx::{ExpConfig, SoftmaxConfig};
use cryptgpu_sharing::audit::{Audit, Finding, Report, Test};
use cryptgpu_sharing::convert::MsbVariant;
use cryptgpu_sharing::norm::pow2_bits;
use cryptgpu_sharing::{run_local_keyed, AShare, BShare, KeySource, Party, Result, RunConfig, TruncMode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type P = Party<CpuBackend, Recording<LocalTransport>>;
type A = AShare<CpuBackend>;
type Bits = BShare<CpuBackend>;

/// Runs per secret.
const RUNS: u64 = 8;
/// Elements of most protocols' inputs (`RUNS · N` = 131072 words per per-element message).
const N: usize = 1 << 14;
/// Default base seed of the runs' keys.
const DEFAULT_SEED: u64 = 0x6d61_736b;

const EXACT: TruncMode = TruncMode::Exact;
const PROB: TruncMode = TruncMode::Probabilistic;

fn base_seed() -> u64 {
    match std::env::var("CRYPTGPU_MASKING_SEED") {
        Ok(s) => s.parse().unwrap_or_else(|_| panic!("CRYPTGPU_MASKING_SEED={s:?} is not a u64")),
        Err(_) => DEFAULT_SEED,
    }
}

/// What the fixed secret values are drawn from (when not zero).
#[derive(Clone, Copy)]
enum Values {
    /// Any ring element.
    Any,
    /// 0 or 1.
    Bit,
    /// Signed values in `(-2^61, 2^61)` (max, comparisons, truncation inputs).
    Signed,
    /// Fixed-point encodings of reals uniform in `[lo, hi)`.
    Real(f64, f64),
}

/// Which secret a run uses.
#[derive(Clone, Copy)]
enum Secret {
    Zeros,
    Fixed,
}

impl Secret {
    /// The fixed secret tensor number `tag`: owned by party `tag % 3`, drawn from a seed that
    /// depends on `tag` only (the same in every run).
    fn tensor(self, tag: u64, shape: &[usize], v: Values) -> RingTensor {
        let mut rng = ChaCha8Rng::seed_from_u64(0x5ec7 + tag);
        let codec = FixedPoint::default();
        RingTensor::from_fn(shape, |_| match (self, v) {
            (Secret::Zeros, _) => 0,
            (_, Values::Any) => rng.gen(),
            (_, Values::Bit) => rng.gen::<u64>() & 1,
            (_, Values::Signed) => (rng.gen::<i64>() >> 2) as u64,
            (_, Values::Real(lo, hi)) => codec.encode(rng.gen_range(lo..hi)).expect("in range"),
        })
    }

    /// An arithmetic sharing of tensor `tag`.
    fn a(self, p: &mut P, tag: u64, shape: &[usize], v: Values) -> Result<A> {
        let owner = (tag % 3) as usize;
        let t = (p.id() == owner).then(|| self.tensor(tag, shape, v));
        p.input(owner, t.as_ref(), shape)
    }

    /// A binary sharing of tensor `tag`.
    fn b(self, p: &mut P, tag: u64, shape: &[usize], v: Values) -> Result<Bits> {
        let owner = (tag % 3) as usize;
        let t = (p.id() == owner).then(|| self.tensor(tag, shape, v));
        p.b_input(owner, t.as_ref(), shape)
    }
}

/// Audits `protocol` (run after `prepare`, whose messages are not audited) and panics with the
/// report when a check fails: uniformity over [`RUNS`] runs on each secret, homogeneity between
/// the secrets, and key differences over [`RUNS`] runs per receiver on the fixed secret.
fn audit<S, R>(
    name: &str,
    mode: TruncMode,
    prepare: impl Fn(&mut P, Secret) -> Result<S> + Sync,
    protocol: impl Fn(&mut P, S) -> Result<R> + Sync,
) {
    let start = Instant::now();
    let seed = base_seed();
    let run = |keys: [u64; 3], secret: Secret| -> [Vec<RecordedMessage>; 3] {
        let transports = LocalTransport::triple().map(Recording::new);
        let logs: [RecordLog; 3] = std::array::from_fn(|i| transports[i].log());
        let config = RunConfig { trunc: mode, ..RunConfig::default() };
        run_local_keyed(transports, keys.map(KeySource::InsecureSeed), CpuBackend, config, |p| {
            let state = prepare(p, secret)?;
            logs[p.id()].clear();
            protocol(p, state).map(drop)
        })
        .unwrap_or_else(|e| panic!("{name}: run with key seeds {keys:?} failed: {e}"));
        logs.map(|l| l.take())
    };
    // Uniformity and homogeneity: key seeds seed + 0..2·RUNS, the same at every party.
    let mut audits = [Audit::new(name), Audit::new(name)];
    for (k, secret) in [Secret::Zeros, Secret::Fixed].into_iter().enumerate() {
        for r in 0..RUNS {
            let logs = run([seed.wrapping_add(k as u64 * RUNS + r); 3], secret);
            for (party, log) in logs.iter().enumerate() {
                audits[k].add_run(party, log);
            }
        }
    }
    // Key differences: receiver i keeps the seeds of the keys it holds, the other one changes.
    let mut keyed = Audit::new(name);
    let keyed_seed = |i: usize, j: usize, r: u64| {
        let varied = j == (i + 2) % 3;
        seed.wrapping_add(2 * RUNS + 16 * i as u64 + if varied { 3 + r } else { j as u64 })
    };
    for i in 0..3 {
        let mut previous: Option<Vec<RecordedMessage>> = None;
        for r in 0..RUNS {
            let mine = Vec::from(run(std::array::from_fn(|j| keyed_seed(i, j, r)), Secret::Fixed)).swap_remove(i);
            if let Some(prev) = &previous {
                keyed.add_key_difference(i, prev, &mine);
            }
            previous = Some(mine);
        }
    }
    let mut report = audits[0].uniformity();
    report.merge(audits[1].uniformity());
    report.merge(audits[0].homogeneity(&audits[1]));
    report.merge(keyed.uniformity());
    println!("{}", summary(&report, start.elapsed().as_secs_f64()));
    assert!(
        report.passed(),
        "{report}(base seed {seed}, from CRYPTGPU_MASKING_SEED or the default: zero secrets with key seeds \
         {seed}.., fixed secrets with {}..; key differences for receiver i keep seeds {} + 16i + (i, i+1) \
         and vary {} + 16i + 3 + run)",
        seed.wrapping_add(RUNS),
        seed.wrapping_add(2 * RUNS),
        seed.wrapping_add(2 * RUNS),
    );
}

/// One table row: the worst statistic of each kind against its threshold.
fn summary(r: &Report, secs: f64) -> String {
    let worst = |kind: fn(Test) -> bool| -> String {
        r.worst.iter().find(|f| kind(f.test)).map_or("-".into(), |f: &Finding| {
            format!("{:.1} / {:.1} (P{} {:?} {} {:?})", f.value, f.threshold, f.party, f.view, f.scope, f.test)
        })
    };
    format!(
        "| {} | {} | {} | {} | {} | {secs:.1} s |",
        r.protocol,
        r.statistics,
        worst(|t| matches!(t, Test::Byte(_))),
        worst(|t| matches!(t, Test::Bit(_))),
        worst(|t| matches!(t, Test::TwoSample(_))),
    )
}

fn two(p: &mut P, s: Secret, shape_x: &[usize], shape_y: &[usize], v: Values) -> Result<(A, A)> {
    Ok((s.a(p, 0, shape_x, v)?, s.a(p, 1, shape_y, v)?))
}

const FP: Values = Values::Real(-8.0, 8.0);

// ----- products and truncation -----

#[test]
fn mul() {
    audit("mul", EXACT, |p, s| two(p, s, &[N], &[N], Values::Any), |p, (x, y)| p.mul_int(&x, &y));
}

#[test]
fn matmul() {
    audit("matmul", EXACT, |p, s| two(p, s, &[128, 64], &[64, 128], Values::Any), |p, (x, y)| p.matmul_int(&x, &y));
}

const CONV: Conv2dParams = Conv2dParams { stride: (1, 1), padding: (1, 1) };

#[test]
fn conv2d() {
    let shapes = (&[4, 16, 16, 16][..], &[16, 16, 3, 3][..]);
    audit("conv2d", EXACT, |p, s| two(p, s, shapes.0, shapes.1, Values::Any), |p, (x, w)| p.conv2d_int(&x, &w, &CONV));
}

#[test]
fn conv2d_input_grad() {
    // dx = conv2d_input_grad(gy, w), truncated, as in training: [4, 16, 16, 16].
    let xs = [4, 16, 16, 16];
    audit(
        "conv2d input grad",
        EXACT,
        |p, s| two(p, s, &[4, 16, 16, 16], &[16, 16, 3, 3], FP),
        |p, (gy, w)| p.bilinear(&gy, &w, &|be, g, w| be.conv2d_input_grad(g, w, &xs, &CONV), true),
    );
}

#[test]
fn conv2d_weight_grad() {
    // dw = conv2d_weight_grad(x, gy), truncated: [64, 64, 3, 3] (36864 elements).
    audit(
        "conv2d weight grad",
        EXACT,
        |p, s| two(p, s, &[1, 64, 8, 8], &[1, 64, 8, 8], FP),
        |p, (x, gy)| p.bilinear(&x, &gy, &|be, x, g| be.conv2d_weight_grad(x, g, (3, 3), &CONV), true),
    );
}

#[test]
fn truncate_exact() {
    audit("truncate (exact)", EXACT, |p, s| s.a(p, 1, &[N], Values::Signed), |p, x| p.truncate(&x));
}

#[test]
fn truncate_probabilistic() {
    audit("truncate (probabilistic)", PROB, |p, s| s.a(p, 2, &[N], Values::Signed), |p, x| p.truncate(&x));
}

#[test]
fn mul_fp_exact() {
    audit("mul_fp (exact)", EXACT, |p, s| two(p, s, &[N], &[N], FP), |p, (x, y)| p.mul_fp(&x, &y));
}

#[test]
fn mul_fp_probabilistic() {
    audit("mul_fp (probabilistic)", PROB, |p, s| two(p, s, &[N], &[N], FP), |p, (x, y)| p.mul_fp(&x, &y));
}

// ----- binary protocols and conversions -----

#[test]
fn and() {
    audit(
        "b_and",
        EXACT,
        |p, s| Ok((s.b(p, 0, &[N], Values::Any)?, s.b(p, 2, &[N], Values::Any)?)),
        |p, (x, y)| p.b_and(&x, &y),
    );
}

#[test]
fn and_many() {
    audit(
        "b_and_many",
        EXACT,
        |p, s| Ok([s.b(p, 0, &[N], Values::Any)?, s.b(p, 1, &[N], Values::Any)?, s.b(p, 2, &[N / 2], Values::Any)?]),
        |p, [x, y, z]| p.b_and_many(&[(&x, &y), (&y, &x), (&z, &z)]),
    );
}

fn signed(p: &mut P, s: Secret) -> Result<A> {
    s.a(p, 0, &[N], Values::Signed)
}

#[test]
fn a2b() {
    audit("a2b", EXACT, signed, |p, x| p.a2b(&x));
}

#[test]
fn msb() {
    audit("msb", EXACT, signed, |p, x| p.msb(&x));
}

#[test]
fn msb_low_latency() {
    audit("msb (low latency)", EXACT, signed, |p, x| p.msb_with(&x, MsbVariant::LowLatency));
}

#[test]
fn bit_injection() {
    audit("b2a_bit", EXACT, |p, s| s.b(p, 1, &[N], Values::Bit), |p, b| p.b2a_bit(&b));
}

#[test]
fn bit_injection_one_round() {
    audit("b2a_bit_one_round", EXACT, |p, s| s.b(p, 2, &[N], Values::Bit), |p, b| p.b2a_bit_one_round(&b));
}

fn value_and_bit(p: &mut P, s: Secret) -> Result<(A, Bits)> {
    Ok((s.a(p, 0, &[N], Values::Any)?, s.b(p, 1, &[N], Values::Bit)?))
}

#[test]
fn mul_bit() {
    audit("mul_bit", EXACT, value_and_bit, |p, (x, b)| p.mul_bit(&x, &b));
}

#[test]
fn mul_bit_one_round() {
    audit("mul_bit_one_round", EXACT, value_and_bit, |p, (x, b)| p.mul_bit_one_round(&x, &b));
}

// ----- comparisons and layers -----

#[test]
fn relu() {
    for (name, v) in [("relu", MsbVariant::Lean), ("relu (low latency)", MsbVariant::LowLatency)] {
        audit(name, EXACT, signed, |p, x| p.relu_with(&x, v));
    }
}

#[test]
fn product_then_relu() {
    // The truncation's last message rides on the MSB's input round led by its sender.
    let mul = |be: &CpuBackend, x: &_, y: &_| cryptgpu_ring::Backend::binary(be, cryptgpu_ring::BinaryOp::Mul, x, y);
    for (name, mode) in [("mul_fp + relu (exact)", EXACT), ("mul_fp + relu (probabilistic)", PROB)] {
        for v in [MsbVariant::Lean, MsbVariant::LowLatency] {
            audit(
                &format!("{name} {v:?}"),
                mode,
                |p, s| two(p, s, &[N], &[N], FP),
                |p, (x, y)| {
                    let held = p.bilinear_held(&x, &y, &mul, p.codec().frac_bits())?;
                    p.relu_truncating(held, v)
                },
            );
        }
    }
}

#[test]
fn led_by_parties_1_and_2() {
    // The asymmetric protocols with another party in the lead role (`Party::set_lead`): the
    // networks' product-then-ReLU (exact split, low-latency MSB, one-round `x * [b]`), the lean
    // ReLU (fused input round, two-round `x * [b]`), bit injection and the probabilistic truncation.
    let mul = |be: &CpuBackend, x: &_, y: &_| cryptgpu_ring::Backend::binary(be, cryptgpu_ring::BinaryOp::Mul, x, y);
    for lead in [1, 2] {
        audit(
            &format!("mul_fp + relu (exact) LowLatency, lead {lead}"),
            EXACT,
            |p, s| two(p, s, &[N], &[N], FP),
            |p, (x, y)| {
                p.set_lead(lead)?;
                let held = p.bilinear_held(&x, &y, &mul, p.codec().frac_bits())?;
                p.relu_truncating(held, MsbVariant::LowLatency)
            },
        );
        audit(&format!("relu, lead {lead}"), EXACT, signed, |p, x| {
            p.set_lead(lead)?;
            p.relu_with(&x, MsbVariant::Lean)
        });
        audit(
            &format!("b2a_bit, lead {lead}"),
            EXACT,
            |p, s| s.b(p, 1, &[N], Values::Bit),
            |p, b| {
                p.set_lead(lead)?;
                p.b2a_bit(&b)
            },
        );
        audit(
            &format!("truncate (probabilistic), lead {lead}"),
            PROB,
            |p, s| s.a(p, 2, &[N], Values::Signed),
            |p, x| {
                p.set_lead(lead)?;
                p.truncate(&x)
            },
        );
    }
}

#[test]
fn relu_backward() {
    for (name, v) in [("relu backward", MsbVariant::Lean), ("relu backward (low latency)", MsbVariant::LowLatency)] {
        audit(
            name,
            EXACT,
            |p, s| {
                let (x, g) = two(p, s, &[N], &[N], Values::Signed)?;
                let (_, d) = p.relu_with(&x, v)?;
                Ok((g, d))
            },
            |p, (g, d)| p.relu_backward_with(&g, &d, v),
        );
    }
}

#[test]
fn max_and_argmax() {
    for (name, argmax) in [("max", false), ("argmax", true)] {
        audit(name, EXACT, |p, s| s.a(p, 2, &[1088, 8], Values::Signed), |p, x| p.max_axis(&x, 1, argmax));
    }
}

const POOL: Pool2dParams = Pool2dParams { kernel: (3, 3), stride: (2, 2), padding: (1, 1) };

#[test]
fn max_pool() {
    audit("max_pool2d", EXACT, |p, s| s.a(p, 0, &[2, 16, 16, 16], Values::Signed), |p, x| p.max_pool2d(&x, &POOL));
}

#[test]
fn max_pool_backward() {
    // 2x2 windows: a cheap forward pass for the one-hot, 4 · 4096 products in the backward one.
    let (xs, pool) = ([4, 16, 16, 16], Pool2dParams { kernel: (2, 2), stride: (2, 2), padding: (0, 0) });
    audit(
        "max_pool2d backward",
        EXACT,
        |p, s| {
            let (x, gy) = two(p, s, &xs, &[4, 16, 8, 8], Values::Signed)?;
            let (_, onehot) = p.max_pool2d(&x, &pool)?;
            Ok((gy, onehot))
        },
        |p, (gy, onehot)| p.max_pool2d_backward(&gy, &onehot, &xs, &pool),
    );
}

// ----- fixed-point functions -----

#[test]
fn exp() {
    audit("exp", EXACT, |p, s| s.a(p, 1, &[N / 2], Values::Real(-10.0, 2.0)), |p, x| p.exp(&x, &ExpConfig::default()));
}

#[test]
fn reciprocal() {
    audit("reciprocal", EXACT, |p, s| s.a(p, 2, &[2048], Values::Real(1.0, 6.0e4)), |p, x| p.reciprocal(&x, 0, 16, 4));
}

#[test]
fn inv_sqrt() {
    audit("inv_sqrt", EXACT, |p, s| s.a(p, 0, &[2048], Values::Real(0.01, 6.0e4)), |p, x| p.inv_sqrt(&x, -8, 16, 3));
}

#[test]
fn softmax() {
    audit(
        "softmax",
        EXACT,
        |p, s| s.a(p, 1, &[512, 8], Values::Real(-10.0, 10.0)),
        |p, x| p.softmax(&x, &SoftmaxConfig::default()),
    );
}

/// `Σ c_i·x_i` truncated once, as the private engine's `lincomb` (constants with `e` extra bits).
fn lincomb(p: &mut P, terms: &[(f64, &A)]) -> Result<A> {
    let f = p.codec().frac_bits();
    let big = terms.iter().fold(0.0f64, |m, (c, _)| m.max(c.abs()));
    let e = if big < 1.0 { ((-big.log2()).floor() as u32).min(61 - f) } else { 0 };
    let scaled = |p: &P, (c, x): &(f64, &A)| p.mul_scalar(x, (c * ((f + e) as f64).exp2()).round() as i64 as u64);
    let mut acc = scaled(p, &terms[0])?;
    for t in &terms[1..] {
        acc = p.add(&acc, &scaled(p, t)?)?;
    }
    p.truncate_by(&acc, f + e)
}

/// Sum over every axis but 1 of `[N, C, H, W]`, and its inverse broadcast.
fn channel_sum(p: &P, x: &A) -> Result<A> {
    let be = p.backend();
    let s = x.shape().to_vec();
    x.map(|t| be.sum_axis(&be.sum_axis(&be.reshape(t, &[s[0], s[1], s[2] * s[3]])?, 2, false)?, 0, false))
}

fn broadcast(p: &P, v: &A, to: &[usize]) -> Result<A> {
    let be = p.backend();
    v.map(|t| be.broadcast_to(&be.reshape(t, &[1, to[1], 1, 1])?, to))
}

#[test]
fn batch_norm_training_step() {
    // The private engine's training batch norm: `Party::batch_norm_train`, then the backward
    // pass and the running-variance update of nn/src/engine.rs.
    const SHAPE: [usize; 4] = [8, 16, 8, 8];
    let m = (SHAPE[0] * SHAPE[2] * SHAPE[3]) as f64;
    audit(
        "batch norm (train step)",
        EXACT,
        |p, s| {
            let x = s.a(p, 0, &SHAPE, Values::Real(-4.0, 4.0))?;
            let g = s.a(p, 1, &SHAPE, Values::Real(-1.0, 1.0))?;
            let gamma = s.a(p, 2, &[16], Values::Real(0.5, 2.0))?;
            let beta = s.a(p, 3, &[16], Values::Real(-1.0, 1.0))?;
            let running = s.a(p, 4, &[16], Values::Real(0.5, 2.0))?;
            Ok((x, g, gamma, beta, running))
        },
        |p, (x, g, gamma, beta, running)| {
            let o = p.batch_norm_train(&x, &gamma, &beta, 1e-5)?;
            let dbeta = channel_sum(p, &g)?;
            let gx = p.mul_fp(&g, &o.xhat)?;
            let dgamma = channel_sum(p, &gx)?;
            let mg = lincomb(p, &[(1.0 / m, &dbeta)])?;
            let mgx = lincomb(p, &[(1.0 / m, &dgamma)])?;
            let t = p.sub(&g, &broadcast(p, &mg, &SHAPE)?)?;
            let xm = p.mul_fp(&o.xhat, &broadcast(p, &mgx, &SHAPE)?)?;
            let t = p.sub(&t, &xm)?;
            let dx = p.mul_fp(&t, &broadcast(p, &o.scale, &SHAPE)?)?;
            let pow2 = (pow2_bits(m as usize) as f64).exp2();
            let rv = lincomb(p, &[(0.9, &running), (0.1 * pow2 / (m - 1.0), &o.var)])?;
            Ok((dx, rv))
        },
    );
}
