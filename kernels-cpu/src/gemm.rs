//! Blocked, packed, parallel GEMM over Z_2^64 (wrapping `u64` multiply-add).
//!
//! The classic three-level blocking (as in BLIS): the `k` dimension is cut into `KC` slabs and
//! `n` into `NC` panels; each `KC x NC` block of B is packed once into `NR`-wide micro-panels, then
//! the rows of C are split into `MC`-row blocks that run in parallel, each packing its `MC x KC`
//! block of A into `MR`-tall micro-panels and calling an `MR x NR` register-blocked micro-kernel.
//! Operands are read through arbitrary (row, column) strides, so transposes cost nothing.
//! On x86-64 with AVX2 the micro-kernel is compiled a second time with AVX2 enabled and chosen at
//! run time; both compile from the same source and give identical (exact) results.

use rayon::prelude::*;

const MR: usize = 4;
const NR: usize = 8;
const KC: usize = 256;
const MC: usize = 64;
const NC: usize = 1024;

/// A read-only strided matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    /// Backing elements.
    pub data: &'a [u64],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl MatRef<'_> {
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> u64 {
        self.data[i * self.rs + j * self.cs]
    }
}

/// `c[m x n] (+)= a[m x k] · b[k x n]` over Z_2^64; `c` is dense row-major. When `accumulate` is
/// false `c` is overwritten.
pub fn gemm(m: usize, k: usize, n: usize, a: MatRef<'_>, b: MatRef<'_>, c: &mut [u64], accumulate: bool) {
    assert_eq!(c.len(), m * n, "gemm: output buffer has the wrong size");
    if !accumulate {
        c.fill(0);
    }
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let mut bpack = vec![0u64; KC * NC.min(n.next_multiple_of(NR))];
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            pack_b(b, pc, kc, jc, nc, &mut bpack);
            let bpack = &bpack[..];
            c.par_chunks_mut(MC * n).enumerate().for_each_init(
                || vec![0u64; MC * KC],
                |apack, (blk, crows)| {
                    let ic = blk * MC;
                    let mc = crows.len() / n;
                    pack_a(a, ic, mc, pc, kc, apack);
                    macro_block(mc, nc, kc, apack, bpack, &mut crows[jc..], n);
                },
            );
        }
    }
}

/// Packs rows `ic..ic+mc`, columns `pc..pc+kc` of A into `MR`-row micro-panels, zero-padded.
fn pack_a(a: MatRef<'_>, ic: usize, mc: usize, pc: usize, kc: usize, out: &mut [u64]) {
    for (panel, ir) in (0..mc).step_by(MR).enumerate() {
        let dst = &mut out[panel * MR * kc..(panel + 1) * MR * kc];
        let rows = MR.min(mc - ir);
        for p in 0..kc {
            for r in 0..MR {
                dst[p * MR + r] = if r < rows { a.at(ic + ir + r, pc + p) } else { 0 };
            }
        }
    }
}

/// Packs rows `pc..pc+kc`, columns `jc..jc+nc` of B into `NR`-column micro-panels, zero-padded.
fn pack_b(b: MatRef<'_>, pc: usize, kc: usize, jc: usize, nc: usize, out: &mut [u64]) {
    out.par_chunks_mut(NR * kc).take(nc.div_ceil(NR)).enumerate().for_each(|(panel, dst)| {
        let jr = panel * NR;
        let cols = NR.min(nc - jr);
        for p in 0..kc {
            for col in 0..NR {
                dst[p * NR + col] = if col < cols { b.at(pc + p, jc + jr + col) } else { 0 };
            }
        }
    });
}

/// Runs the micro-kernel over an `mc x nc` block; `c` starts at the block's top-left corner.
fn macro_block(mc: usize, nc: usize, kc: usize, apack: &[u64], bpack: &[u64], c: &mut [u64], ldc: usize) {
    for jr in (0..nc).step_by(NR) {
        let bp = &bpack[(jr / NR) * NR * kc..][..NR * kc];
        for ir in (0..mc).step_by(MR) {
            let ap = &apack[(ir / MR) * MR * kc..][..MR * kc];
            let tile = micro_kernel(kc, ap, bp);
            let rows = MR.min(mc - ir);
            let cols = NR.min(nc - jr);
            for (r, trow) in tile.iter().enumerate().take(rows) {
                let crow = &mut c[(ir + r) * ldc + jr..][..cols];
                for (cv, &t) in crow.iter_mut().zip(trow) {
                    *cv = cv.wrapping_add(t);
                }
            }
        }
    }
}

#[inline(always)]
fn micro_kernel_body(kc: usize, ap: &[u64], bp: &[u64]) -> [[u64; NR]; MR] {
    let mut acc = [[0u64; NR]; MR];
    for (a, b) in ap.chunks_exact(MR).zip(bp.chunks_exact(NR)).take(kc) {
        for r in 0..MR {
            for col in 0..NR {
                acc[r][col] = acc[r][col].wrapping_add(a[r].wrapping_mul(b[col]));
            }
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn micro_kernel_avx2(kc: usize, ap: &[u64], bp: &[u64]) -> [[u64; NR]; MR] {
    micro_kernel_body(kc, ap, bp)
}

#[inline]
fn micro_kernel(kc: usize, ap: &[u64], bp: &[u64]) -> [[u64; NR]; MR] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above); the function is otherwise safe.
            return unsafe { micro_kernel_avx2(kc, ap, bp) };
        }
    }
    micro_kernel_body(kc, ap, bp)
}

/// The naive triple loop, the reference the blocked GEMM is tested against.
pub fn gemm_naive(m: usize, k: usize, n: usize, a: MatRef<'_>, b: MatRef<'_>) -> Vec<u64> {
    let mut c = vec![0u64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0u64;
            for p in 0..k {
                s = s.wrapping_add(a.at(i, p).wrapping_mul(b.at(p, j)));
            }
            c[i * n + j] = s;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn blocked_equals_naive_on_awkward_shapes() {
        let seed = 7;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (MR + 1, KC + 3, NR + 1),
            (MC + 5, 2 * KC + 1, 13),
            (17, 300, NC + 9),
            (0, 4, 4),
            (4, 0, 4),
        ] {
            let a: Vec<u64> = (0..m * k).map(|_| rng.gen()).collect();
            let b: Vec<u64> = (0..k * n).map(|_| rng.gen()).collect();
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let av = if ta { MatRef { data: &a, rs: 1, cs: m } } else { MatRef { data: &a, rs: k, cs: 1 } };
                let bv = if tb { MatRef { data: &b, rs: 1, cs: k } } else { MatRef { data: &b, rs: n, cs: 1 } };
                let want = gemm_naive(m, k, n, av, bv);
                let mut got = vec![1u64; m * n];
                gemm(m, k, n, av, bv, &mut got, false);
                assert_eq!(got, want, "seed {seed} shape {m}x{k}x{n} ta={ta} tb={tb}");
            }
        }
    }
}
