//! The lead of the asymmetric protocols ([`Party::set_lead`]): under each of the three leads every
//! such protocol opens to the same values (the truncations to one LSB of the plaintext), its
//! shares are replicated, and party `p` sends exactly the documented cost of role
//! `role_of(p, lead)`, in the documented rounds. A lead other than 0, 1 or 2 is refused.

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_ring::{Backend, BinaryOp, FixedPoint, RingTensor};
use cryptgpu_sharing::compare::{relu_cost, relu_truncating_cost};
use cryptgpu_sharing::convert::{
    b2a_bit_bytes, b2a_bit_one_round_bytes, msb_variant_bytes, msb_variant_rounds, mul_bit_bytes,
    mul_bit_one_round_bytes, MsbVariant,
};
use cryptgpu_sharing::party::role_of;
use cryptgpu_sharing::trunc::{product_cost, product_held_cost, truncation_cost, TruncMode};
use cryptgpu_sharing::{run_local, AShare, BShare, KeySource, LocalLink, Party, RunConfig, SharingError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type P = Party<CpuBackend, LocalLink>;
type Outcome = (RingTensor, [RingTensor; 2], (u64, u64));
/// A protocol's documented bytes for role `r` and `n` elements.
type Bytes = fn(usize, usize) -> u64;

const N: usize = 300;
const SEED: u64 = 0x1ead;

/// What a protocol gives a party: the opened output, its two output shares, and the (rounds,
/// bytes sent) of the protocol alone.
fn measure<S>(
    p: &mut P,
    lead: usize,
    run: impl FnOnce(&mut P) -> Result<S, SharingError>,
    open: impl FnOnce(&mut P, &S) -> Result<(RingTensor, [RingTensor; 2]), SharingError>,
) -> Result<Outcome, SharingError> {
    p.set_lead(lead)?;
    let before = p.counters();
    let out = run(p)?;
    let used = p.counters().since(&before);
    p.set_lead(0)?;
    let (opened, shares) = open(p, &out)?;
    Ok((opened, shares, (used.rounds, used.bytes_sent)))
}

fn open_a(p: &mut P, x: &AShare<CpuBackend>) -> Result<(RingTensor, [RingTensor; 2]), SharingError> {
    Ok((p.reveal(x)?, [p.download(x.first())?, p.download(x.second())?]))
}

fn open_b(p: &mut P, x: &BShare<CpuBackend>) -> Result<(RingTensor, [RingTensor; 2]), SharingError> {
    Ok((p.b_reveal(x)?, [p.download(x.first())?, p.download(x.second())?]))
}

/// Runs `f` (which gets the party and the test's secrets) under each lead and checks the
/// replication of the output shares and that party `p` paid `cost(role_of(p, lead))`; returns the
/// opened output per lead.
fn under_each_lead(
    name: &str,
    mode: TruncMode,
    cost: impl Fn(usize) -> (u64, u64),
    f: impl Fn(&mut P, usize, &Secrets) -> Result<Outcome, SharingError> + Sync,
) -> [RingTensor; 3] {
    let s = Secrets::new();
    std::array::from_fn(|lead| {
        // Fixed keys: the probabilistic truncation fails with probability |z| / 2^64 per element
        // (about 2^-20 here, so a run with fresh keys fails now and then).
        let config =
            RunConfig { trunc: mode, keys: KeySource::InsecureSeed(SEED + lead as u64), ..RunConfig::default() };
        let out = run_local(CpuBackend, config, |p: &mut P| f(p, lead, &s))
            .unwrap_or_else(|e| panic!("{name} under lead {lead} (seed {SEED:#x}): {e}"));
        let out = out.map(|o| o.value);
        for (i, (_, shares, paid)) in out.iter().enumerate() {
            let role = role_of(i, lead);
            assert_eq!(*paid, cost(role), "{name}, lead {lead}: party {i} (role {role}) paid {paid:?}");
            assert_eq!(shares[1], out[(i + 1) % 3].1[0], "{name}, lead {lead}: party {i}'s second share");
        }
        let [(first, ..), (second, ..), (third, ..)] = out;
        assert!(first == second && second == third, "{name}, lead {lead}: the parties opened different values");
        first
    })
}

/// The secrets: signed values `x` within 2^40, fixed-point reals `a`, `b` in (-8, 8), bits `c`.
struct Secrets {
    x: RingTensor,
    a: RingTensor,
    b: RingTensor,
    c: RingTensor,
}

impl Secrets {
    fn new() -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(SEED);
        let codec = FixedPoint::default();
        let x = RingTensor::from_fn(&[N], |_| rng.gen_range(-(1i64 << 40)..1i64 << 40) as u64);
        let mut real = || RingTensor::from_fn(&[N], |_| codec.encode(rng.gen_range(-8.0..8.0)).expect("in range"));
        let (a, b) = (real(), real());
        let c = RingTensor::from_fn(&[N], |k| ((k as u64 * 7 + 3) % 5) & 1);
        Secrets { x, a, b, c }
    }

    fn share(&self, p: &mut P) -> Result<[AShare<CpuBackend>; 3], SharingError> {
        let x = p.input(0, (p.id() == 0).then_some(&self.x), &[N])?;
        let a = p.input(1, (p.id() == 1).then_some(&self.a), &[N])?;
        let b = p.input(2, (p.id() == 2).then_some(&self.b), &[N])?;
        Ok([x, a, b])
    }

    fn bits(&self, p: &mut P) -> Result<BShare<CpuBackend>, SharingError> {
        p.b_input(1, (p.id() == 1).then_some(&self.c), &[N])
    }
}

fn signed(t: &RingTensor) -> Vec<i64> {
    t.data().iter().map(|&v| v as i64).collect()
}

fn per_element((rounds, bytes): (u64, u64)) -> (u64, u64) {
    (rounds, bytes * N as u64)
}

#[test]
fn exact_protocols_open_the_same_values_under_every_lead() {
    let s = Secrets::new();
    let x = signed(&s.x);
    for variant in [MsbVariant::Lean, MsbVariant::LowLatency] {
        let rounds = msb_variant_rounds(variant);
        let msb = under_each_lead(
            "msb",
            TruncMode::Exact,
            |r| (rounds, msb_variant_bytes(variant, r, N)),
            |p, lead, s| {
                let [x, ..] = s.share(p)?;
                measure(p, lead, |p| p.msb_with(&x, variant), open_b)
            },
        );
        for m in &msb {
            assert_eq!(m.data(), x.iter().map(|&v| (v < 0) as u64).collect::<Vec<_>>(), "msb {variant:?}");
        }
        let relu = under_each_lead(
            "relu",
            TruncMode::Exact,
            |r| relu_cost(variant, r, N),
            |p, lead, s| {
                let [x, ..] = s.share(p)?;
                measure(p, lead, |p| p.relu_with(&x, variant).map(|(y, _)| y), open_a)
            },
        );
        for y in &relu {
            assert_eq!(signed(y), x.iter().map(|&v| v.max(0)).collect::<Vec<_>>(), "relu {variant:?}");
        }
    }
    let a2b = under_each_lead(
        "a2b",
        TruncMode::Exact,
        |r| (7, if r == 0 { 104 } else { 96 } * N as u64),
        |p, lead, s| {
            let [x, ..] = s.share(p)?;
            measure(p, lead, |p| p.a2b(&x), open_b)
        },
    );
    assert!(a2b.iter().all(|t| *t == s.x), "a2b");
    let c: Vec<u64> = s.c.data().to_vec();
    type BitOp = fn(&mut P, &BShare<CpuBackend>) -> Result<AShare<CpuBackend>, SharingError>;
    let injections: [(&str, BitOp, u64, Bytes); 2] = [
        ("b2a_bit", |p, b| p.b2a_bit(b), 2, b2a_bit_bytes),
        ("b2a_bit_one_round", |p, b| p.b2a_bit_one_round(b), 1, b2a_bit_one_round_bytes),
    ];
    for (name, op, rounds, bytes) in injections {
        let out = under_each_lead(
            name,
            TruncMode::Exact,
            |r| (rounds, bytes(r, N)),
            |p, lead, s| {
                let b = s.bits(p)?;
                measure(p, lead, |p| op(p, &b), open_a)
            },
        );
        assert!(out.iter().all(|t| t.data() == c), "{name}");
    }
    type MulBit = fn(&mut P, &AShare<CpuBackend>, &BShare<CpuBackend>) -> Result<AShare<CpuBackend>, SharingError>;
    let selections: [(&str, MulBit, u64, Bytes); 2] = [
        ("mul_bit", |p, x, b| p.mul_bit(x, b), 2, mul_bit_bytes),
        ("mul_bit_one_round", |p, x, b| p.mul_bit_one_round(x, b), 1, mul_bit_one_round_bytes),
    ];
    for (name, op, rounds, bytes) in selections {
        let out = under_each_lead(
            name,
            TruncMode::Exact,
            |r| (rounds, bytes(r, N)),
            |p, lead, s| {
                let [x, ..] = s.share(p)?;
                let b = s.bits(p)?;
                measure(p, lead, |p| op(p, &x, &b), open_a)
            },
        );
        let want: Vec<i64> = x.iter().zip(&c).map(|(&v, &b)| v * b as i64).collect();
        assert!(out.iter().all(|t| signed(t) == want), "{name}");
    }
}

#[test]
fn truncations_are_within_one_lsb_under_every_lead() {
    let s = Secrets::new();
    let f = FixedPoint::default().frac_bits();
    let mul = |be: &CpuBackend, p: &_, q: &_| be.binary(BinaryOp::Mul, p, q);
    let (a, b, x) = (signed(&s.a), signed(&s.b), signed(&s.x));
    let product: Vec<i64> = a.iter().zip(&b).map(|(&a, &b)| ((a as i128 * b as i128) >> f) as i64).collect();
    let near = |name: &str, got: &RingTensor, want: &[i64]| {
        for (k, (&g, &w)) in signed(got).iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1, "{name}: element {k} is {g}, expected {w} to one LSB (seed {SEED:#x})");
        }
    };
    for mode in [TruncMode::Exact, TruncMode::Probabilistic] {
        let divided: Vec<i64> = x.iter().map(|&v| v >> 12).collect();
        for t in under_each_lead(
            "truncate_by",
            mode,
            |r| per_element(truncation_cost(mode, r)),
            |p, lead, s| {
                let [x, ..] = s.share(p)?;
                measure(p, lead, |p| p.truncate_by(&x, 12), open_a)
            },
        ) {
            near(&format!("truncate_by {mode:?}"), &t, &divided);
        }
        for t in under_each_lead(
            "mul_fp",
            mode,
            |r| per_element(product_cost(mode, r)),
            |p, lead, s| {
                let [_, a, b] = s.share(p)?;
                measure(p, lead, |p| p.mul_fp(&a, &b), open_a)
            },
        ) {
            near(&format!("mul_fp {mode:?}"), &t, &product);
        }
        // A held product and the ReLU carrying its last round, the lead changed in between: the
        // ReLU runs under the product's lead.
        let relu: Vec<i64> = product.iter().map(|&v| v.max(0)).collect();
        for variant in [MsbVariant::Lean, MsbVariant::LowLatency] {
            for t in under_each_lead(
                "relu_truncating",
                mode,
                |r| {
                    let (held, relu) =
                        (per_element(product_held_cost(mode, r)), relu_truncating_cost(variant, mode, r, N));
                    (held.0 + relu.0, held.1 + relu.1)
                },
                |p, lead, s| {
                    let [_, a, b] = s.share(p)?;
                    measure(
                        p,
                        lead,
                        |p| {
                            let held = p.bilinear_held(&a, &b, &mul, f)?;
                            assert_eq!(held.lead(), lead);
                            p.set_lead((lead + 1) % 3)?;
                            let (y, _) = p.relu_truncating(held, variant)?;
                            assert_eq!(p.lead(), (lead + 1) % 3, "relu_truncating restores the lead");
                            Ok(y)
                        },
                        open_a,
                    )
                },
            ) {
                near(&format!("relu_truncating {mode:?} {variant:?}"), &t, &relu);
            }
        }
    }
}

#[test]
fn a_lead_must_be_a_party() {
    let out = run_local(CpuBackend, RunConfig::default(), |p: &mut P| {
        let refused = p.set_lead(3).map(drop);
        Ok::<_, SharingError>((refused.map_err(|e| e.to_string()), p.lead()))
    })
    .unwrap();
    for o in out {
        let (refused, lead) = o.value;
        assert!(refused.unwrap_err().contains("lead 3 is not party 0, 1 or 2"));
        assert_eq!(lead, 0);
    }
}
