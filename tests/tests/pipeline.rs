//! A small private fixed-point pipeline (convolution, then a dense layer) against f64, and
//! reproducibility of whole runs under seeded keys.

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_ring::{Conv2dParams, FixedPoint};
use cryptgpu_sharing::{run_local, KeySource, RunConfig};
use cryptgpu_testkit::random_fixed;

fn conv_f64(x: &[f64], xs: [usize; 4], w: &[f64], ws: [usize; 4], p: &Conv2dParams) -> (Vec<f64>, [usize; 4]) {
    let [n, c, h, wd] = xs;
    let [o, _, kh, kw] = ws;
    let oh = (h + 2 * p.padding.0 - kh) / p.stride.0 + 1;
    let ow = (wd + 2 * p.padding.1 - kw) / p.stride.1 + 1;
    let mut out = vec![0.0; n * o * oh * ow];
    for b in 0..n {
        for f in 0..o {
            for y in 0..oh {
                for xo in 0..ow {
                    let mut s = 0.0;
                    for ch in 0..c {
                        for i in 0..kh {
                            for j in 0..kw {
                                let iy = (y * p.stride.0 + i) as isize - p.padding.0 as isize;
                                let ix = (xo * p.stride.1 + j) as isize - p.padding.1 as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    s += x[((b * c + ch) * h + iy as usize) * wd + ix as usize]
                                        * w[((f * c + ch) * kh + i) * kw + j];
                                }
                            }
                        }
                    }
                    out[((b * o + f) * oh + y) * ow + xo] = s;
                }
            }
        }
    }
    (out, [n, o, oh, ow])
}

#[test]
fn conv_then_dense_matches_f64() {
    let codec = FixedPoint::default();
    let p = Conv2dParams { stride: (1, 1), padding: (1, 1) };
    let (xv, x) = random_fixed(1, &[2, 1, 8, 8], 1.0, codec).expect("in range");
    let (wv, w) = random_fixed(2, &[4, 1, 3, 3], 0.5, codec).expect("in range");
    let (dv, d) = random_fixed(3, &[256, 10], 0.1, codec).expect("in range");
    let out = run_local(CpuBackend, RunConfig { codec, ..RunConfig::default() }, |party| {
        let sx = party.input(0, (party.id() == 0).then_some(&x), x.shape())?;
        let sw = party.input(1, (party.id() == 1).then_some(&w), w.shape())?;
        let sd = party.input(1, (party.id() == 1).then_some(&d), d.shape())?;
        let y = party.conv2d_fp(&sx, &sw, &p)?;
        let flat = y.map(|t| cryptgpu_ring::Backend::reshape(party.backend(), t, &[2, 256]))?;
        let z = party.matmul_fp(&flat, &sd)?;
        party.reveal(&z)
    })
    .unwrap();
    let (y, _) = conv_f64(&xv, [2, 1, 8, 8], &wv, [4, 1, 3, 3], &p);
    let got = codec.decode_tensor(&out[0].value);
    for r in 0..2 {
        for c in 0..10 {
            let exact: f64 = (0..256).map(|t| y[r * 256 + t] * dv[t * 10 + c]).sum();
            // Two truncations of < 1 LSB each plus encoding errors propagated through 9 + 256 terms.
            assert!(
                approx::abs_diff_eq!(got[r * 10 + c], exact, epsilon = 2e-4),
                "output ({r},{c}): {} vs {exact}",
                got[r * 10 + c]
            );
        }
    }
    assert!(out.iter().all(|o| o.value == out[0].value));
}

#[test]
fn seeded_runs_are_bit_identical() {
    let codec = FixedPoint::default();
    let (_, a) = random_fixed(4, &[16, 32], 1.0, codec).expect("in range");
    let (_, b) = random_fixed(5, &[32, 8], 1.0, codec).expect("in range");
    let cfg = RunConfig { codec, keys: KeySource::InsecureSeed(9), ..RunConfig::default() };
    let go = || {
        run_local(CpuBackend, cfg, |party| {
            let x = party.input(0, (party.id() == 0).then_some(&a), a.shape())?;
            let y = party.input(2, (party.id() == 2).then_some(&b), b.shape())?;
            let z = party.matmul_fp(&x, &y)?;
            Ok::<_, cryptgpu_sharing::SharingError>((party.download(z.first())?, party.reveal(&z)?))
        })
        .unwrap()
        .map(|o| o.value)
    };
    assert_eq!(go(), go());
}
