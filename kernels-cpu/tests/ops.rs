//! CPU backend operations against direct definitions.

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_ring::{Backend, BinaryOp, Conv2dParams, Pool2dParams, RingTensor, ScalarOp, ShiftOp, UnaryOp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_tensor(rng: &mut ChaCha8Rng, shape: &[usize]) -> RingTensor {
    RingTensor::from_fn(shape, |_| rng.gen())
}

fn hex16(s: &str) -> [u8; 16] {
    let v: Vec<u8> = (0..32).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect();
    v.try_into().unwrap()
}

/// NIST SP 800-38A, F.5.1 CTR-AES128.Encrypt.
#[test]
fn prg_matches_nist_sp800_38a_f51() {
    let key = hex16("2b7e151628aed2a6abf7158809cf4f3c");
    let outputs = [
        "ec8cdf7398607cb0f2d21675ea9ea1e4",
        "362b7c3c6773516318a077d7fc5073ae",
        "6a2cc3787889374fbeb4c81b17ba6c44",
        "e89c399ff0f198c6d40a31db156cabfe",
    ];
    let plain = [
        "6bc1bee22e409f96e93d7e117393172a",
        "ae2d8a571e03ac9c9eb76fac45af8e51",
        "30c81c46a35ce411e5fbc1191a0a52ef",
        "f69f2445df4f9b17ad2b417be66c3710",
    ];
    let cipher = [
        "874d6191b620e3261bef6864990db6ce",
        "9806f66b7970fdff8617187bb9fffdff",
        "5ae4df3edbd5d35e5b4f09020db03eab",
        "1e031dda2fbe03d1792170a0f3009cee",
    ];
    // Initial counter block f0f1...feff = stream f0..f7, counter f8..ff.
    let t = CpuBackend.prg_fill(&key, 0xf0f1f2f3f4f5f6f7, 0xf8f9fafbfcfdfeff, &[8]).unwrap();
    let bytes: Vec<u8> = t.data().iter().flat_map(|v| v.to_le_bytes()).collect();
    for blk in 0..4 {
        let ks = &bytes[16 * blk..16 * blk + 16];
        assert_eq!(ks, hex16(outputs[blk]), "keystream block {blk}");
        let ct: Vec<u8> = ks.iter().zip(hex16(plain[blk])).map(|(k, p)| k ^ p).collect();
        assert_eq!(ct, hex16(cipher[blk]), "ciphertext block {blk}");
    }
}

#[test]
fn prg_draws_compose_and_streams_differ() {
    let key = [7u8; 16];
    let whole = CpuBackend.prg_fill(&key, 3, 100, &[100_001]).unwrap();
    let first = CpuBackend.prg_fill(&key, 3, 100, &[70_000]).unwrap();
    let second = CpuBackend.prg_fill(&key, 3, 100 + 35_000, &[30_001]).unwrap();
    assert_eq!(&whole.data()[..70_000], first.data());
    assert_eq!(&whole.data()[70_000..], second.data());
    let other = CpuBackend.prg_fill(&key, 4, 100, &[16]).unwrap();
    assert_ne!(&whole.data()[..16], other.data());
    // Carry from the counter into the stream id.
    let wrap = CpuBackend.prg_fill(&key, 3, u64::MAX, &[4]).unwrap();
    let next = CpuBackend.prg_fill(&key, 4, 0, &[2]).unwrap();
    assert_eq!(&wrap.data()[2..], next.data());
}

#[test]
fn elementwise_ops_follow_reference_semantics() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let a = rand_tensor(&mut rng, &[3, 50_000]);
    let b = rand_tensor(&mut rng, &[3, 50_000]);
    let be = CpuBackend;
    for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Xor, BinaryOp::And, BinaryOp::Or] {
        let c = be.binary(op, &a, &b).unwrap();
        for i in [0, 1, 77_777, 149_999] {
            assert_eq!(c.data()[i], op.apply(a.data()[i], b.data()[i]), "{op:?}");
        }
    }
    let n = be.unary(UnaryOp::Neg, &a).unwrap();
    assert_eq!(be.binary(BinaryOp::Add, &a, &n).unwrap(), be.zeros(&[3, 50_000]).unwrap());
    let s = be.scalar(ScalarOp::SubFrom, &a, 5).unwrap();
    assert_eq!(s.data()[9], 5u64.wrapping_sub(a.data()[9]));
    let sh = be.shift(ShiftOp::RightArith, &a, 63).unwrap();
    assert!(sh.data().iter().zip(a.data()).all(|(&s, &x)| s == if (x as i64) < 0 { u64::MAX } else { 0 }));
    assert!(be.shift(ShiftOp::Left, &a, 64).is_err());
    let bits = be.bit_extract(&a, 63).unwrap();
    assert!(bits.data().iter().zip(a.data()).all(|(&b, &x)| b == x >> 63));
    let other = RingTensor::zeros(&[3, 49_999]);
    assert!(be.binary(BinaryOp::Add, &a, &other).is_err());
}

#[test]
fn pack_unpack_round_trip() {
    let be = CpuBackend;
    for n in [1usize, 63, 64, 65, 1000] {
        let bits = RingTensor::from_fn(&[n], |i| ((i * 7 + 3) % 5 == 0) as u64 | 0xF0);
        let packed = be.pack_bits(&bits).unwrap();
        assert_eq!(packed.len(), n.div_ceil(64));
        let back = be.unpack_bits(&packed, &[n]).unwrap();
        assert!(back.data().iter().zip(bits.data()).all(|(&b, &x)| b == x & 1));
        assert!(be.unpack_bits(&packed, &[n + 64]).is_err());
    }
}

/// Direct cross-correlation, the definition the im2col path must meet.
fn conv_naive(x: &RingTensor, w: &RingTensor, p: &Conv2dParams) -> RingTensor {
    let (n, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (o, kh, kw) = (w.shape()[0], w.shape()[2], w.shape()[3]);
    let oh = (h + 2 * p.padding.0 - kh) / p.stride.0 + 1;
    let ow = (wd + 2 * p.padding.1 - kw) / p.stride.1 + 1;
    let mut out = RingTensor::zeros(&[n, o, oh, ow]);
    for b in 0..n {
        for f in 0..o {
            for y in 0..oh {
                for xo in 0..ow {
                    let mut s = 0u64;
                    for ch in 0..c {
                        for i in 0..kh {
                            for j in 0..kw {
                                let iy = (y * p.stride.0 + i) as isize - p.padding.0 as isize;
                                let ix = (xo * p.stride.1 + j) as isize - p.padding.1 as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    let xv = x.data()[((b * c + ch) * h + iy as usize) * wd + ix as usize];
                                    let wv = w.data()[((f * c + ch) * kh + i) * kw + j];
                                    s = s.wrapping_add(xv.wrapping_mul(wv));
                                }
                            }
                        }
                    }
                    out.data_mut()[((b * o + f) * oh + y) * ow + xo] = s;
                }
            }
        }
    }
    out
}

fn dot(a: &RingTensor, b: &RingTensor) -> u64 {
    a.data().iter().zip(b.data()).fold(0u64, |s, (&x, &y)| s.wrapping_add(x.wrapping_mul(y)))
}

#[test]
fn conv2d_and_its_gradients_are_exact() {
    let be = CpuBackend;
    let seed = 11;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cases = [
        ([2, 3, 9, 7], [4, 3, 3, 3], Conv2dParams { stride: (1, 1), padding: (1, 1) }),
        ([1, 2, 12, 12], [3, 2, 5, 4], Conv2dParams { stride: (2, 3), padding: (2, 1) }),
        ([3, 1, 5, 5], [2, 1, 5, 5], Conv2dParams::default()),
        ([1, 3, 32, 32], [8, 3, 11, 11], Conv2dParams { stride: (4, 4), padding: (2, 2) }),
    ];
    for (xs, ws, p) in cases {
        let x = rand_tensor(&mut rng, &xs);
        let w = rand_tensor(&mut rng, &ws);
        let y = be.conv2d(&x, &w, &p).unwrap();
        assert_eq!(y, conv_naive(&x, &w, &p), "seed {seed} conv {xs:?} {ws:?} {p:?}");
        // Adjoint identities hold exactly in the ring: <conv(x,w), g> = <x, dX(g,w)> = <w, dW(x,g)>.
        let g = rand_tensor(&mut rng, y.shape());
        let dx = be.conv2d_input_grad(&g, &w, &xs, &p).unwrap();
        let dw = be.conv2d_weight_grad(&x, &g, (ws[2], ws[3]), &p).unwrap();
        assert_eq!(dx.shape(), &xs);
        assert_eq!(dw.shape(), &ws);
        assert_eq!(dot(&y, &g), dot(&x, &dx), "seed {seed} input grad {xs:?}");
        assert_eq!(dot(&y, &g), dot(&w, &dw), "seed {seed} weight grad {xs:?}");
    }
    let x = RingTensor::zeros(&[1, 3, 8, 8]);
    let bad_w = RingTensor::zeros(&[4, 2, 3, 3]);
    assert!(be.conv2d(&x, &bad_w, &Conv2dParams::default()).is_err());
    let w = RingTensor::zeros(&[4, 3, 3, 3]);
    let bad_g = RingTensor::zeros(&[1, 4, 5, 5]);
    assert!(be.conv2d_input_grad(&bad_g, &w, &[1, 3, 8, 8], &Conv2dParams::default()).is_err());
}

#[test]
fn sum_pool_and_backward() {
    let be = CpuBackend;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = rand_tensor(&mut rng, &[2, 3, 7, 6]);
    let p = Pool2dParams { kernel: (3, 2), stride: (2, 2), padding: (1, 0) };
    let y = be.sum_pool2d(&x, &p).unwrap();
    assert_eq!(y.shape(), &[2, 3, 4, 3]);
    // Sum pooling is the convolution of each channel with an all-ones kernel.
    let xr = be.reshape(&x, &[6, 1, 7, 6]).unwrap();
    let ones = RingTensor::from_fn(&[1, 1, 3, 2], |_| 1);
    let want = conv_naive(&xr, &ones, &Conv2dParams { stride: (2, 2), padding: (1, 0) });
    assert_eq!(y.data(), want.data());
    let g = rand_tensor(&mut rng, y.shape());
    let dx = be.sum_pool2d_backward(&g, x.shape(), &p).unwrap();
    assert_eq!(dot(&y, &g), dot(&x, &dx));
    let bad = Pool2dParams { kernel: (2, 2), stride: (2, 2), padding: (2, 0) };
    assert!(be.sum_pool2d(&x, &bad).is_err());
}

#[test]
fn layout_ops() {
    let be = CpuBackend;
    let a = RingTensor::from_fn(&[2, 3, 4], |i| i as u64);
    let p = be.permute(&a, &[2, 0, 1]).unwrap();
    assert_eq!(p.shape(), &[4, 2, 3]);
    // p[k, i, j] = a[i, j, k] = 12 i + 4 j + k
    assert_eq!(p.data()[(3 * 2 + 1) * 3 + 2], 12 + 8 + 3);
    let s = be.slice(&a, 1, 1, 3).unwrap();
    assert_eq!(s.shape(), &[2, 2, 4]);
    assert_eq!(s.data()[0], 4);
    assert_eq!(s.data()[8], 16);
    let c = be.concat(&[&a, &s], 1).unwrap();
    assert_eq!(c.shape(), &[2, 5, 4]);
    assert_eq!(be.slice(&c, 1, 3, 5).unwrap(), s);
    assert_eq!(be.slice(&c, 1, 0, 3).unwrap(), a);
    assert!(be.concat(&[&a, &p], 1).is_err());
    let sum = be.sum_axis(&a, 1, false).unwrap();
    assert_eq!(sum.shape(), &[2, 4]);
    assert_eq!(sum.data()[1], 1 + 5 + 9);
    assert_eq!(be.sum_axis(&a, 2, true).unwrap().shape(), &[2, 3, 1]);
    let row = RingTensor::from_fn(&[3, 1], |i| i as u64);
    let b = be.broadcast_to(&row, &[2, 3, 4]).unwrap();
    assert_eq!(b.data()[12 + 2 * 4 + 3], 2);
    assert!(be.broadcast_to(&row, &[2, 4, 4]).is_err());
    assert!(be.reshape(&a, &[5, 5]).is_err());
    assert!(be.slice(&a, 1, 2, 4).is_err());
    assert!(be.sum_axis(&a, 3, false).is_err());
}

#[test]
fn batched_and_transposed_matmul() {
    let be = CpuBackend;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let a = rand_tensor(&mut rng, &[3, 5, 7]);
    let b = rand_tensor(&mut rng, &[3, 9, 7]);
    let c = be.matmul(&a, &b, false, true).unwrap();
    assert_eq!(c.shape(), &[3, 5, 9]);
    for bi in 0..3 {
        let ai = be.slice(&a, 0, bi, bi + 1).unwrap().reshape(&[5, 7]).unwrap();
        let bt = be.permute(&be.slice(&b, 0, bi, bi + 1).unwrap().reshape(&[9, 7]).unwrap(), &[1, 0]).unwrap();
        let ci = be.matmul(&ai, &bt, false, false).unwrap();
        assert_eq!(&c.data()[bi * 45..(bi + 1) * 45], ci.data());
    }
}

#[test]
fn owned_reshape_download_and_concat_match_the_borrowing_ones() {
    let be = CpuBackend;
    let t = be.upload(&RingTensor::from_fn(&[2, 3], |i| i as u64 * 7)).unwrap();
    assert_eq!(be.reshape_owned(t.clone(), &[3, 2]).unwrap(), be.reshape(&t, &[3, 2]).unwrap());
    assert!(be.reshape_owned(t.clone(), &[4]).is_err());
    assert_eq!(be.download_owned(t.clone()).unwrap(), be.download(&t).unwrap());
    let u = be.upload(&RingTensor::from_fn(&[1, 3], |i| i as u64 + 100)).unwrap();
    assert_eq!(be.concat_owned(vec![t.clone(), u.clone()]).unwrap(), be.concat(&[&t, &u], 0).unwrap());
    let w = be.upload(&RingTensor::from_fn(&[1, 2], |i| i as u64)).unwrap();
    assert!(be.concat_owned(vec![t, w]).is_err());
}
