//! Binary sharing, MSB / A2B, bit injection and `x * [b]` against plaintext results, with the
//! transport counters checked against the documented costs.

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_net::Counters;
use cryptgpu_ring::{Pool2dParams, RingTensor};
use cryptgpu_sharing::compare::{after_msb, max_axis_cost, max_axis_cost_with, max_pool2d_reference, relu_cost};
use cryptgpu_sharing::convert::{
    b2a_bit_bytes, b2a_bit_one_round_bytes, msb_bytes, msb_variant_bytes, msb_variant_rounds, mul_bit_bytes,
    mul_bit_one_round_bytes, MsbVariant, MSB_ROUNDS,
};
use cryptgpu_sharing::{run_local, LocalLink, Party, RunConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type P = Party<CpuBackend, LocalLink>;

/// Runs `f` on three parties; returns each party's value and the counters of the work inside `f`.
fn run3<R: Send>(f: impl Fn(&mut P) -> cryptgpu_sharing::Result<R> + Sync) -> [(R, Counters); 3] {
    let out = run_local(CpuBackend, RunConfig::default(), |p| {
        let before = p.counters();
        let v = f(p)?;
        Ok::<_, cryptgpu_sharing::SharingError>((v, p.counters().since(&before)))
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
            let before = p.counters();
            let m2 = p.msb_with(&x, MsbVariant::LowLatency)?;
            let c2 = p.counters().since(&before);
            Ok((p.b_reveal(&m)?, c, p.b_reveal(&m2)?, c2))
        });
        for (i, ((got, c, got2, c2), _)) in out.iter().enumerate() {
            for (g, x) in got.data().iter().zip(&v) {
                assert_eq!(*g, x >> 63, "seed {seed}: msb of {x:#x} at party {i}");
            }
            assert_eq!(got, got2, "low-latency msb, seed {seed}");
            assert_eq!(c.rounds, MSB_ROUNDS, "msb rounds");
            assert_eq!(c.bytes_sent, msb_bytes(i, n), "msb bytes of party {i}, n = {n}");
            assert_eq!(c2.rounds, msb_variant_rounds(MsbVariant::LowLatency));
            assert_eq!(c2.rounds, 6);
            assert_eq!(c2.bytes_sent, msb_variant_bytes(MsbVariant::LowLatency, i, n), "party {i}, n = {n}");
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
        let inj1 = p.b2a_bit_one_round(&x)?;
        let c_inj1 = p.counters().since(&before);
        assert_eq!((c_inj1.rounds, c_inj1.bytes_sent), (1, b2a_bit_one_round_bytes(p.id(), n)));
        let (inj1, inj_plain) = (p.reveal(&inj1)?, p.reveal(&inj)?);
        assert_eq!(inj1, inj_plain, "one-round bit injection");
        let before = p.counters();
        let prod = p.mul_bit(&v, &y)?;
        let c_mul = p.counters().since(&before);
        let before = p.counters();
        let prod1 = p.mul_bit_one_round(&v, &y)?;
        let c_mul1 = p.counters().since(&before);
        Ok((
            p.b_reveal(&mixed)?,
            p.b_reveal(&bits)?,
            p.reveal(&inj)?,
            p.reveal(&prod)?,
            p.reveal(&prod1)?,
            [c_and, c_bits, c_inj, c_mul, c_mul1],
        ))
    });
    for (i, ((mixed, bits, inj, prod, prod1, costs), _)) in out.iter().enumerate() {
        assert_eq!(prod, prod1, "one-round x*[b], party {i}");
        for j in 0..n {
            assert_eq!(mixed.data()[j], (!((a[j] & b[j]) ^ b[j]) ^ c) & !c);
            assert_eq!(bits.data()[j], a[j] & b[j] & 1);
            assert_eq!(inj.data()[j], a[j] & 1);
            assert_eq!(prod.data()[j], xs[j].wrapping_mul(b[j] & 1));
        }
        let [c_and, c_bits, c_inj, c_mul, c_mul1] = costs;
        assert_eq!((c_mul1.rounds, c_mul1.bytes_sent), (1, mul_bit_one_round_bytes(i, n)), "one-round x*[b]");
        assert_eq!((c_and.rounds, c_and.bytes_sent), (1, 8 * n as u64), "and");
        assert_eq!((c_bits.rounds, c_bits.bytes_sent), (1, 8 * n.div_ceil(64) as u64), "packed and");
        assert_eq!((c_inj.rounds, c_inj.bytes_sent), (2, b2a_bit_bytes(i, n)), "b2a_bit, party {i}");
        assert_eq!((c_mul.rounds, c_mul.bytes_sent), (2, mul_bit_bytes(i, n)), "mul_bit, party {i}");
    }
}

#[test]
fn relu_and_comparisons_are_exact() {
    let seed = 14;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let xs = test_values(seed, 200);
    let n = xs.len();
    // y: random values, equal to x at every third position, and x +- 1 elsewhere sometimes.
    let ys: Vec<u64> = xs
        .iter()
        .enumerate()
        .map(|(j, &x)| match j % 4 {
            0 => x,
            1 => x.wrapping_add(1),
            2 => rng.gen_range(-(1i64 << 40)..(1i64 << 40)) as u64,
            _ => x.wrapping_sub(1),
        })
        .collect();
    let g: Vec<u64> = (0..n).map(|_| rng.gen()).collect();
    let t = |v: &[u64]| RingTensor::new(&[n], v.to_vec()).unwrap();
    let (tx, ty, tg) = (t(&xs), t(&ys), t(&g));
    let out = run3(|p| {
        let x = p.input(0, (p.id() == 0).then_some(&tx), &[n])?;
        let y = p.input(1, (p.id() == 1).then_some(&ty), &[n])?;
        let gs = p.input(2, (p.id() == 2).then_some(&tg), &[n])?;
        let before = p.counters();
        let (r, d) = p.relu(&x)?;
        let c_relu = p.counters().since(&before);
        let rb = p.relu_backward(&gs, &d)?;
        let before = p.counters();
        let (r_ll, _) = p.relu_with(&x, MsbVariant::LowLatency)?;
        let c_ll = p.counters().since(&before);
        assert_eq!((c_ll.rounds, c_ll.bytes_sent), relu_cost(MsbVariant::LowLatency, p.id(), n));
        assert_eq!((c_relu.rounds, c_relu.bytes_sent), relu_cost(MsbVariant::Lean, p.id(), n));
        let (r_ll, r_lean) = (p.reveal(&r_ll)?, p.reveal(&r)?);
        assert_eq!(r_ll, r_lean, "low-latency ReLU");
        let before = p.counters();
        let rb_ll = p.relu_backward_with(&gs, &d, MsbVariant::LowLatency)?;
        assert_eq!(p.counters().since(&before).rounds, 1);
        let (rb_ll, rb_lean) = (p.reveal(&rb_ll)?, p.reveal(&rb)?);
        assert_eq!(rb_ll, rb_lean, "one-round ReLU backward");
        let before = p.counters();
        let e = p.eq(&x, &y)?;
        let c_eq = p.counters().since(&before);
        let cmp = [p.lt(&x, &y)?, p.gt(&x, &y)?, p.le(&x, &y)?, p.ge(&x, &y)?, e];
        let mut opened = Vec::new();
        for c in &cmp {
            opened.push(p.b_reveal(c)?);
        }
        let before = p.counters();
        let s = p.sign(&x)?;
        let a = p.abs(&x)?;
        let m = p.max2(&x, &y)?;
        let c_sam = p.counters().since(&before);
        Ok((
            p.reveal(&r)?,
            p.b_reveal(&d)?,
            p.reveal(&rb)?,
            opened,
            p.reveal(&s)?,
            p.reveal(&a)?,
            p.reveal(&m)?,
            c_relu,
            c_eq,
            c_sam,
        ))
    });
    for (i, ((r, d, rb, cmp, s, a, m, c_relu, c_eq, c_sam), _)) in out.iter().enumerate() {
        for j in 0..n {
            let (x, y) = (xs[j] as i64, ys[j] as i64);
            let what = format!("seed {seed} party {i}: x = {x}, y = {y}");
            assert_eq!(r.data()[j] as i64, x.max(0), "relu {what}");
            assert_eq!(d.data()[j], (x >= 0) as u64, "drelu {what}");
            assert_eq!(rb.data()[j], if x >= 0 { g[j] } else { 0 }, "relu backward {what}");
            assert_eq!(s.data()[j] as i64, if x >= 0 { 1 } else { -1 }, "sign {what}");
            assert_eq!(a.data()[j], x.unsigned_abs(), "abs {what}");
            // Comparisons are exact while x - y does not wrap.
            if x.checked_sub(y).is_some() {
                let want = [x < y, x > y, x <= y, x >= y, x == y];
                for (k, c) in cmp.iter().enumerate() {
                    assert_eq!(c.data()[j], want[k] as u64, "comparison {k} {what}");
                }
                assert_eq!(m.data()[j] as i64, x.max(y), "max {what}");
            }
        }
        assert_eq!(c_relu.rounds, MSB_ROUNDS + 2);
        // The x*[b] after an MSB is led by the party after the MSB's lead (`after_msb`).
        assert_eq!(c_relu.bytes_sent, msb_bytes(i, n) + mul_bit_bytes(after_msb(i), n), "relu bytes, party {i}");
        // sign: MSB + bit injection; abs and max2: MSB + x*[b].
        assert_eq!(c_sam.rounds, 3 * (MSB_ROUNDS + 2));
        assert_eq!(c_sam.bytes_sent, 3 * msb_bytes(i, n) + b2a_bit_bytes(i, n) + 2 * mul_bit_bytes(after_msb(i), n));
        assert_eq!(c_eq.rounds, MSB_ROUNDS + 1);
        assert_eq!(c_eq.bytes_sent, msb_bytes(i, 2 * n) + 8 * n.div_ceil(64) as u64, "eq bytes, party {i}");
    }
}

#[test]
fn max_and_argmax_along_axes_lowest_index_wins() {
    let seed = 15;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let shape = [3usize, 7, 5];
    let len: usize = shape.iter().product();
    // Few distinct values so that ties are common; some large magnitudes.
    let vals: Vec<i64> = (0..len)
        .map(|_| match rng.gen_range(0..4) {
            0 => rng.gen_range(-3..3),
            1 => rng.gen_range(-(1i64 << 61)..(1i64 << 61)),
            _ => rng.gen_range(-100..100) << 20,
        })
        .collect();
    let tx = RingTensor::from_i64(&shape, &vals).unwrap();
    for axis in 0..3 {
        let out = run3(|p| {
            let x = p.input(0, (p.id() == 0).then_some(&tx), &shape)?;
            let before = p.counters();
            let (m, oh) = p.max_axis(&x, axis, true)?;
            let c = p.counters().since(&before);
            let before = p.counters();
            let (m2, none) = p.max_axis(&x, axis, false)?;
            let c2 = p.counters().since(&before);
            assert!(none.is_none());
            let before = p.counters();
            let (m3, oh3) = p.max_axis_with(&x, axis, true, MsbVariant::LowLatency)?;
            let c3 = p.counters().since(&before);
            assert_eq!(
                (c3.rounds, c3.bytes_sent),
                max_axis_cost_with(MsbVariant::LowLatency, p.id(), x.len() / shape[axis], shape[axis], true)
            );
            let (m3, oh3) = (p.reveal(&m3)?, p.reveal(&oh3.unwrap())?);
            let (m, oh) = (p.reveal(&m)?, p.reveal(&oh.unwrap())?);
            assert_eq!((&m, &oh), (&m3, &oh3), "low-latency max/argmax");
            Ok((m, oh, p.reveal(&m2)?, c, c2))
        });
        let strides = [shape[1] * shape[2], shape[2], 1];
        let rows = len / shape[axis];
        for (i, ((m, oh, m2, c, c2), _)) in out.iter().enumerate() {
            assert_eq!(m, m2);
            assert_eq!(oh.shape(), &shape);
            let mut out_idx = 0;
            for a in 0..shape[0] {
                for b in 0..shape[1] {
                    for d in 0..shape[2] {
                        let idx = [a, b, d];
                        if idx[axis] != 0 {
                            continue;
                        }
                        let base: usize = (0..3).map(|k| idx[k] * strides[k]).sum();
                        let line: Vec<i64> = (0..shape[axis]).map(|t| vals[base + t * strides[axis]]).collect();
                        let best = *line.iter().max().unwrap();
                        let first = line.iter().position(|&v| v == best).unwrap();
                        assert_eq!(m.data()[out_idx] as i64, best, "axis {axis} line {idx:?}");
                        for t in 0..shape[axis] {
                            assert_eq!(
                                oh.data()[base + t * strides[axis]],
                                (t == first) as u64,
                                "argmax axis {axis} {idx:?}"
                            );
                        }
                        out_idx += 1;
                    }
                }
            }
            assert_eq!(out_idx, rows);
            assert_eq!((c.rounds, c.bytes_sent), max_axis_cost(i, rows, shape[axis], true), "axis {axis} party {i}");
            assert_eq!((c2.rounds, c2.bytes_sent), max_axis_cost(i, rows, shape[axis], false));
        }
    }
}

#[test]
fn max_pooling_forward_and_backward_match_plaintext() {
    let seed = 16;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cases = [
        (Pool2dParams { kernel: (2, 2), stride: (2, 2), padding: (0, 0) }, [2usize, 3, 8, 8]),
        (Pool2dParams { kernel: (3, 3), stride: (2, 2), padding: (1, 1) }, [1, 2, 7, 9]),
        (Pool2dParams { kernel: (3, 2), stride: (1, 2), padding: (2, 1) }, [2, 1, 5, 6]),
    ];
    for (p2, shape) in cases {
        let len: usize = shape.iter().product();
        // All-negative planes check that padding (which would read as 0) never wins; small ranges give ties.
        let all_negative = p2.padding == (1, 1);
        let vals: Vec<i64> = (0..len)
            .map(|j| match (all_negative, j % 3) {
                (true, _) => -(rng.gen_range(1..5) << 18),
                (false, 0) => rng.gen_range(-5..0),
                _ => rng.gen_range(-5..5) << 18,
            })
            .collect();
        let tx = RingTensor::from_i64(&shape, &vals).unwrap();
        let win = cryptgpu_ring::shape::pool2d_window("test", &shape, &p2).unwrap();
        let out_shape = [win.n, win.c, win.oh, win.ow];
        let gv: Vec<u64> = (0..out_shape.iter().product()).map(|_| rng.gen()).collect();
        let tg = RingTensor::new(&out_shape, gv).unwrap();
        let (want_y, want_gx) = max_pool2d_reference(&tx, Some(&tg), &p2).unwrap();
        let out = run3(|p| {
            let x = p.input(0, (p.id() == 0).then_some(&tx), &shape)?;
            let g = p.input(1, (p.id() == 1).then_some(&tg), &out_shape)?;
            let before = p.counters();
            let (y, oh) = p.max_pool2d(&x, &p2)?;
            let c = p.counters().since(&before);
            let before = p.counters();
            let gx = p.max_pool2d_backward(&g, &oh, &shape, &p2)?;
            let cb = p.counters().since(&before);
            Ok((p.reveal(&y)?, p.reveal(&gx)?, c, cb))
        });
        let (k, cols) = (win.kh * win.kw, out_shape.iter().product::<usize>());
        for (i, ((y, gx, c, cb), _)) in out.iter().enumerate() {
            assert_eq!(y, &want_y, "seed {seed} {p2:?}");
            assert_eq!(gx, &want_gx, "seed {seed} {p2:?} backward");
            assert_eq!((c.rounds, c.bytes_sent), max_axis_cost(i, cols, k, true));
            assert_eq!((cb.rounds, cb.bytes_sent), (1, 8 * (k * cols) as u64));
        }
    }
}

/// The outputs of the binary and conversion protocols are proper replicated sharings: party `i`'s
/// second share is party `i+1`'s first, and no single share equals the secret.
#[test]
fn outputs_are_consistent_replicated_sharings() {
    let v = test_values(17, 500);
    let n = v.len();
    let t = RingTensor::new(&[n], v.clone()).unwrap();
    let out = run3(|p| {
        let x = p.input(0, (p.id() == 0).then_some(&t), &[n])?;
        let m = p.msb(&x)?;
        let m2 = p.msb_with(&x, MsbVariant::LowLatency)?;
        let b = p.a2b(&x)?;
        let inj = p.b2a_bit(&m)?;
        let prod = p.mul_bit(&x, &m)?;
        let prod1 = p.mul_bit_one_round(&x, &m)?;
        let inj1 = p.b2a_bit_one_round(&m)?;
        let and = p.b_and(&b, &b)?;
        let mut shares = Vec::new();
        for (f, s) in [
            (m.first(), m.second()),
            (b.first(), b.second()),
            (inj.first(), inj.second()),
            (prod.first(), prod.second()),
            (and.first(), and.second()),
            (m2.first(), m2.second()),
            (prod1.first(), prod1.second()),
            (inj1.first(), inj1.second()),
        ] {
            shares.push((p.download(f)?, p.download(s)?));
        }
        Ok(shares)
    });
    for k in 0..8 {
        for i in 0..3 {
            let (_, second) = &out[i].0[k];
            let (next_first, _) = &out[(i + 1) % 3].0[k];
            assert_eq!(second, next_first, "protocol output {k}: party {i}'s second share");
        }
    }
    // The full A2B output's shares are not the plaintext (they are re-randomised words).
    for (i, o) in out.iter().enumerate() {
        let (f, s) = &o.0[1];
        let same = f.data().iter().zip(&v).filter(|(a, b)| a == b).count()
            + s.data().iter().zip(&v).filter(|(a, b)| a == b).count();
        assert!(same < 5, "party {i} holds the plaintext in {same} places");
    }
}

#[test]
fn max_axis_edge_lengths_and_empty_inputs() {
    let mut rng = ChaCha8Rng::seed_from_u64(18);
    for len in [1usize, 2, 13, 16, 17] {
        let rows = 5;
        let vals: Vec<i64> = (0..rows * len).map(|_| rng.gen_range(-3..3)).collect();
        let t = RingTensor::from_i64(&[rows, len], &vals).unwrap();
        let out = run3(|p| {
            let x = p.input(0, (p.id() == 0).then_some(&t), &[rows, len])?;
            let before = p.counters();
            let (m, oh) = p.max_axis(&x, 1, true)?;
            let c = p.counters().since(&before);
            Ok((p.reveal(&m)?, p.reveal(&oh.unwrap())?, c))
        });
        let ((m, oh, c), _) = &out[1];
        assert_eq!((c.rounds, c.bytes_sent), max_axis_cost(1, rows, len, true));
        for r in 0..rows {
            let line = &vals[r * len..(r + 1) * len];
            let best = *line.iter().max().unwrap();
            let first = line.iter().position(|&v| v == best).unwrap();
            assert_eq!(m.data()[r] as i64, best, "len {len} row {r}");
            for (k, &o) in oh.data()[r * len..(r + 1) * len].iter().enumerate() {
                assert_eq!(o, (k == first) as u64, "len {len} row {r}");
            }
        }
    }
    // Empty tensors: no communication, empty results.
    let out = run3(|p| {
        let x = p.random_share(&[0, 3])?;
        let (r, _) = p.relu(&x)?;
        let e = p.eq(&x, &x)?;
        Ok((r.len(), e.len()))
    });
    assert_eq!(out[0].0, (0, 0));
}
