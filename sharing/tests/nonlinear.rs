//! Binary sharing, MSB / A2B, bit injection and `x * [b]` against plaintext results, with the
//! transport counters checked against the documented costs.

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_net::{Counters, LocalTransport};
use cryptgpu_ring::RingTensor;
use cryptgpu_sharing::convert::{b2a_bit_bytes, msb_bytes, mul_bit_bytes, MSB_ROUNDS};
use cryptgpu_sharing::{run_local, Party, RunConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type P = Party<CpuBackend, LocalTransport>;

/// Runs `f` on three parties; returns each party's value and the counters of the work inside `f`.
fn run3<R: Send>(f: impl Fn(&mut P) -> cryptgpu_sharing::Result<R> + Sync) -> [(R, Counters); 3] {
    let out = run_local(CpuBackend, RunConfig::default(), |p| {
        let before = p.counters();
        let v = f(p)?;
        Ok((v, p.counters().since(&before)))
    })
    .expect("protocol run failed");
    out.map(|o| o.value)
}

/// Special values: 0, +-1, +-2, +-2^62, i64::MIN, i64::MAX, and values within 2^8 of +-2^(63-f).
fn edge_values() -> Vec<u64> {
    let mut v: Vec<i64> = vec![0, 1, -1, 2, -2, 1 << 62, -(1 << 62), i64::MIN, i64::MAX, i64::MIN + 1, i64::MAX - 1];
    let f = 20;
    for base in [1i64 << (63 - f), -(1i64 << (63 - f))] {
        for d in [-256i64, -255, -17, -1, 0, 1, 17, 255, 256] {
            v.push(base + d);
        }
    }
    v.into_iter().map(|x| x as u64).collect()
}

fn test_values(seed: u64, random: usize) -> Vec<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v = edge_values();
    v.extend((0..random).map(|_| rng.gen::<u64>()));
    // Small fixed-point-like values of both signs.
    v.extend((0..random).map(|_| rng.gen_range(-(1i64 << 30)..(1i64 << 30)) as u64));
    v
}

#[test]
fn msb_is_exact_and_costs_seven_rounds() {
    let seed = 11;
    for n_random in [0usize, 1, 50, 1000] {
        let v = test_values(seed, n_random);
        let n = v.len();
        let t = RingTensor::new(&[n], v.clone()).unwrap();
        let out = run3(|p| {
            let x = p.input(1, (p.id() == 1).then_some(&t), &[n])?;
            let before = p.counters();
            let m = p.msb(&x)?;
            let c = p.counters().since(&before);
            Ok((p.b_reveal(&m)?, c))
        });
        for (i, ((got, c), _)) in out.iter().enumerate() {
            for (g, x) in got.data().iter().zip(&v) {
                assert_eq!(*g, x >> 63, "seed {seed}: msb of {x:#x} at party {i}");
            }
            assert_eq!(c.rounds, MSB_ROUNDS, "msb rounds");
            assert_eq!(c.bytes_sent, msb_bytes(i, n), "msb bytes of party {i}, n = {n}");
        }
    }
}

#[test]
fn a2b_gives_all_bits() {
    let v = test_values(12, 300);
    let n = v.len();
    let t = RingTensor::new(&[n], v.clone()).unwrap();
    let out = run3(|p| {
        let x = p.input(2, (p.id() == 2).then_some(&t), &[n])?;
        let before = p.counters();
        let b = p.a2b(&x)?;
        let c = p.counters().since(&before);
        Ok((p.b_reveal(&b)?, c))
    });
    for (i, ((got, c), _)) in out.iter().enumerate() {
        assert_eq!(got.data(), &v[..]);
        assert_eq!(c.rounds, 7);
        assert_eq!(c.bytes_sent, if i == 0 { 104 } else { 96 } * n as u64);
    }
}

#[test]
fn binary_ops_and_bit_conversions() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let n = 257;
    let a: Vec<u64> = (0..n).map(|_| rng.gen()).collect();
    let b: Vec<u64> = (0..n).map(|_| rng.gen()).collect();
    let xs: Vec<u64> = (0..n).map(|_| rng.gen()).collect();
    let c = 0x0123_4567_89ab_cdefu64;
    let (ta, tb, tx) = (
        RingTensor::new(&[n], a.clone()).unwrap(),
        RingTensor::new(&[n], b.clone()).unwrap(),
        RingTensor::new(&[n], xs.clone()).unwrap(),
    );
    let out = run3(|p| {
        let x = p.b_input(0, (p.id() == 0).then_some(&ta), &[n])?;
        let y = p.b_input(2, (p.id() == 2).then_some(&tb), &[n])?;
        let v = p.input(1, (p.id() == 1).then_some(&tx), &[n])?;
        let before = p.counters();
        let and = p.b_and(&x, &y)?;
        let c_and = p.counters().since(&before);
        let mixed = p.b_xor_scalar(&p.b_not(&p.b_xor(&and, &y)?)?, c)?;
        let mixed = p.b_and_scalar(&mixed, !c)?;
        let before = p.counters();
        let bits = p.b_and_bits(&x, &y)?;
        let c_bits = p.counters().since(&before);
        let before = p.counters();
        let inj = p.b2a_bit(&x)?;
        let c_inj = p.counters().since(&before);
        let before = p.counters();
        let prod = p.mul_bit(&v, &y)?;
        let c_mul = p.counters().since(&before);
        Ok((p.b_reveal(&mixed)?, p.b_reveal(&bits)?, p.reveal(&inj)?, p.reveal(&prod)?, [c_and, c_bits, c_inj, c_mul]))
    });
    for (i, ((mixed, bits, inj, prod, costs), _)) in out.iter().enumerate() {
        for j in 0..n {
            assert_eq!(mixed.data()[j], (!((a[j] & b[j]) ^ b[j]) ^ c) & !c);
            assert_eq!(bits.data()[j], a[j] & b[j] & 1);
            assert_eq!(inj.data()[j], a[j] & 1);
            assert_eq!(prod.data()[j], xs[j].wrapping_mul(b[j] & 1));
        }
        let [c_and, c_bits, c_inj, c_mul] = costs;
        assert_eq!((c_and.rounds, c_and.bytes_sent), (1, 8 * n as u64), "and");
        assert_eq!((c_bits.rounds, c_bits.bytes_sent), (1, 8 * n.div_ceil(64) as u64), "packed and");
        assert_eq!((c_inj.rounds, c_inj.bytes_sent), (2, b2a_bit_bytes(i, n)), "b2a_bit, party {i}");
        assert_eq!((c_mul.rounds, c_mul.bytes_sent), (2, mul_bit_bytes(i, n)), "mul_bit, party {i}");
    }
}
