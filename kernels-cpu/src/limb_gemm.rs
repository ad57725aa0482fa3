//! The exact ring GEMM by limbs ([`cryptgpu_ring::limbs`]) executed on the CPU.
//!
//! This runs the very plan a GPU backend runs: a [`DevicePlan`] through
//! [`cryptgpu_ring::limbs::execute`], with the split and combine kernels written out in Rust
//! (index for index the CUDA kernels of `kernels-cuda/src/kernels/limbs.cu`), `f64` GEMMs on
//! `matrixmultiply::dgemm` with the cuBLAS (NN, column-major) geometry and `i8 x i8 -> i32` GEMMs
//! with the cuBLASLt IMMA (TN) geometry ([`gemm_i8_i32_tn`], which wraps like the hardware). It is
//! not a fast path on the CPU ([`crate::gemm::gemm`] is); it is the executable specification of
//! the device plan, tested bit for bit against [`crate::gemm::gemm`].

use crate::gemm::MatRef;
use cryptgpu_ring::error::{invalid, shape_err, Result};
use cryptgpu_ring::limbs::{
    self, f64_term, i32_term, i8_digit, u16_limb, ChunkBuffers, CombineStep, DevicePlan, GemmGeometry, LimbExecutor,
    LimbPlan, LimbScheme, Side, SplitStep, Strides, UnpadStep,
};
use rayon::prelude::*;

/// Elements per parallel task when recombining.
const CHUNK: usize = 1 << 12;

/// `c[m x n] = a[m x k] · b[k x n]` over Z_2^64 with the [`LimbScheme::F64x16`] plan; `chunk_k`
/// forces a K chunk (`1 ..= F64_MAX_CHUNK_K`), `None` takes [`LimbScheme::default_chunk_k`]. `c` is
/// dense row-major and overwritten.
pub fn ring_gemm_f64_limbs(
    m: usize,
    k: usize,
    n: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [u64],
    chunk_k: Option<usize>,
) -> Result<()> {
    ring_gemm_limbs(&LimbPlan::new(LimbScheme::F64x16, m, k, n, chunk_k)?, a, b, c)
}

/// `c[m x n] = a[m x k] · b[k x n]` over Z_2^64 with the [`LimbScheme::I8x8`] plan; `chunk_k`
/// forces a K chunk (`1 ..= I8_MAX_CHUNK_K`), `None` takes [`LimbScheme::default_chunk_k`]. `c` is
/// dense row-major and overwritten.
pub fn ring_gemm_i8_limbs(
    m: usize,
    k: usize,
    n: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [u64],
    chunk_k: Option<usize>,
) -> Result<()> {
    ring_gemm_limbs(&LimbPlan::new(LimbScheme::I8x8, m, k, n, chunk_k)?, a, b, c)
}

/// `c[m x n] = a[m x k] · b[k x n]` over Z_2^64 following `plan` (either scheme) as a
/// [`DevicePlan`] for the views' strides. `c` is dense row-major and overwritten. Errors when `c`
/// is not `m·n` long or a view reaches past its data.
pub fn ring_gemm_limbs(plan: &LimbPlan, a: MatRef<'_>, b: MatRef<'_>, c: &mut [u64]) -> Result<()> {
    const OP: &str = "ring_gemm_limbs";
    let (m, k, n) = (plan.m(), plan.k(), plan.n());
    check_view(OP, "A", &a, m, k)?;
    check_view(OP, "B", &b, k, n)?;
    if c.len() != m * n {
        return Err(shape_err(OP, format!("output has {} elements, {m} x {n} needs {}", c.len(), m * n)));
    }
    if c.is_empty() || k == 0 {
        c.fill(0);
        return Ok(());
    }
    let dp = DevicePlan::new(*plan, Strides { rs: a.rs, cs: a.cs }, Strides { rs: b.rs, cs: b.cs })?;
    let mut exec = CpuLimbs { a: a.data, b: b.data, out: c, f: Bufs::default(), i: Bufs::default(), acc: Vec::new() };
    limbs::execute(&dp, &mut exec)
}

/// One chunk's digit buffers (A, B) and group buffer.
#[derive(Default)]
struct Bufs<T, G> {
    a: Vec<T>,
    b: Vec<T>,
    g: Vec<G>,
}

impl<T: Copy + Default, G: Copy + Default> Bufs<T, G> {
    fn reset(&mut self, c: &ChunkBuffers) {
        for (v, len) in [(&mut self.a, c.a_len), (&mut self.b, c.b_len)] {
            v.clear();
            v.resize(len, T::default());
        }
        self.g.clear();
        self.g.resize(c.groups_len, G::default());
    }

    fn side(&mut self, side: Side) -> &mut [T] {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }
}

/// The CPU [`LimbExecutor`].
struct CpuLimbs<'a, 'o> {
    a: &'a [u64],
    b: &'a [u64],
    out: &'o mut [u64],
    f: Bufs<f64, f64>,
    i: Bufs<i8, i32>,
    /// The padded accumulator (`m x ldc`) of an `i8` plan whose `n` is not a multiple of 4.
    acc: Vec<u64>,
}

impl LimbExecutor for CpuLimbs<'_, '_> {
    fn begin_chunk(&mut self, scheme: LimbScheme, c: &ChunkBuffers) -> Result<()> {
        match scheme {
            LimbScheme::F64x16 => self.f.reset(c),
            LimbScheme::I8x8 => self.i.reset(c),
        }
        Ok(())
    }

    fn split(&mut self, scheme: LimbScheme, st: &SplitStep) -> Result<()> {
        let src = match st.side {
            Side::A => self.a,
            Side::B => self.b,
        };
        if st.outer > 0 && st.inner > 0 {
            let last = st.src_offset + (st.outer - 1) * st.so + (st.inner - 1) * st.st;
            if last >= src.len() {
                return Err(invalid("limb_split", format!("{st:?} reaches past {} elements", src.len())));
            }
        }
        let at = |o: usize, t: usize| src[st.src_offset + o * st.so + t * st.st];
        match scheme {
            // split_u16_f64: side 0 writes [outer][4][inner], side 1 [4 (limb 3 first)][outer][inner].
            LimbScheme::F64x16 => {
                let dst = &mut self.f.side(st.side)[..4 * st.outer * st.inner];
                dst.par_chunks_mut(st.inner).enumerate().for_each(|(r, row)| {
                    let (o, l) = if st.side_code == 0 { (r / 4, r % 4) } else { (r % st.outer, 3 - r / st.outer) };
                    for (t, d) in row.iter_mut().enumerate() {
                        *d = u16_limb(at(o, t), l) as f64;
                    }
                });
            }
            // split_s8: [outer][8][kp], digit planes in order (side 0) or digit 7 first (side 1),
            // zeros for kc <= t < kp.
            LimbScheme::I8x8 => {
                let dst = &mut self.i.side(st.side)[..8 * st.outer * st.inner_pad];
                dst.par_chunks_mut(st.inner_pad).enumerate().for_each(|(r, row)| {
                    let (o, plane) = (r / 8, r % 8);
                    let l = if st.side_code == 0 { plane } else { 7 - plane };
                    for (t, d) in row.iter_mut().enumerate() {
                        *d = if t < st.inner { i8_digit(at(o, t), l) } else { 0 };
                    }
                });
            }
        }
        Ok(())
    }

    fn gemm(&mut self, g: &GemmGeometry) -> Result<()> {
        match g.scheme {
            LimbScheme::F64x16 => {
                let (x, y, d) = (&self.f.b, &self.f.a, &mut self.f.g);
                check_gemm(g, g.rows, g.inner, x.len(), y.len(), d.len())?;
                // SAFETY: check_gemm put X (rows x inner, strides (1, ldx)) inside `x`, Y (inner x
                // cols, strides (1, ldy)) inside `y` and D (rows x cols, strides (1, ldd)) inside
                // `d`, which does not alias them; beta = 0 means D is only written; sizes >= 1.
                unsafe {
                    matrixmultiply::dgemm(
                        g.rows,
                        g.inner,
                        g.cols,
                        1.0,
                        x.as_ptr().add(g.x_offset),
                        1,
                        g.ldx as isize,
                        y.as_ptr().add(g.y_offset),
                        1,
                        g.ldy as isize,
                        0.0,
                        d.as_mut_ptr().add(g.d_offset),
                        1,
                        g.ldd as isize,
                    );
                }
                Ok(())
            }
            LimbScheme::I8x8 => {
                let (x, y, d) = (&self.i.b, &self.i.a, &mut self.i.g);
                check_gemm(g, g.inner, g.rows, x.len(), y.len(), d.len())?;
                let d = &mut d[g.d_offset..g.d_offset + g.ldd * g.cols];
                gemm_i8_i32_tn(g.rows, g.cols, g.inner, &x[g.x_offset..], g.ldx, &y[g.y_offset..], g.ldy, d, g.ldd)
            }
        }
    }

    fn combine(&mut self, scheme: LimbScheme, st: &CombineStep) -> Result<()> {
        if st.padded && self.acc.len() != st.plane {
            self.acc = vec![0; st.plane];
        }
        let dst: &mut [u64] = if st.padded { &mut self.acc } else { self.out };
        if dst.len() != st.plane {
            return Err(invalid("limb_combine", format!("{st:?} for {} outputs", dst.len())));
        }
        let (plane, acc) = (st.plane, st.accumulate);
        match scheme {
            LimbScheme::F64x16 => {
                let g = &self.f.g;
                accumulate(dst, acc, |e| {
                    (0..st.groups).fold(0u64, |x, s| x.wrapping_add(f64_term(g[s * plane + e], s)))
                })
            }
            LimbScheme::I8x8 => {
                let g = &self.i.g;
                accumulate(dst, acc, |e| {
                    (0..st.groups).fold(0u64, |x, s| x.wrapping_add(i32_term(g[s * plane + e], s)))
                })
            }
        }
        Ok(())
    }

    fn unpad(&mut self, u: &UnpadStep) -> Result<()> {
        for (dst, src) in self.out.chunks_exact_mut(u.width).zip(self.acc.chunks_exact(u.src_ld)).take(u.rows) {
            dst.copy_from_slice(&src[..u.width]);
        }
        Ok(())
    }
}

/// Checks that a GEMM's X (`x_rows x x_cols` column-major at `ldx`), Y and D lie in their buffers.
fn check_gemm(g: &GemmGeometry, x_rows: usize, x_cols: usize, x: usize, y: usize, d: usize) -> Result<()> {
    let end = |off: usize, rows: usize, cols: usize, ld: usize| off + (cols - 1) * ld + rows;
    let ok = g.rows > 0
        && g.cols > 0
        && g.inner > 0
        && g.ldx >= x_rows
        && g.ldy >= g.inner
        && g.ldd >= g.rows
        && end(g.x_offset, x_rows, x_cols, g.ldx) <= x
        && end(g.y_offset, g.inner, g.cols, g.ldy) <= y
        && end(g.d_offset, g.rows, g.cols, g.ldd) <= d;
    if ok {
        Ok(())
    } else {
        Err(invalid("limb_gemm", format!("{g:?} reaches past its buffers ({x}, {y}, {d} elements)")))
    }
}

/// `c[e] (+)= term(e)` (wrapping), in parallel.
fn accumulate(c: &mut [u64], add: bool, term: impl Fn(usize) -> u64 + Sync) {
    c.par_chunks_mut(CHUNK).enumerate().for_each(|(blk, cs)| {
        for (off, cv) in cs.iter_mut().enumerate() {
            let t = term(blk * CHUNK + off);
            *cv = if add { cv.wrapping_add(t) } else { t };
        }
    });
}

/// Checks that every element of a `rows x cols` view lies inside its data.
fn check_view(op: &'static str, name: &str, v: &MatRef<'_>, rows: usize, cols: usize) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let last = (rows - 1).checked_mul(v.rs).and_then(|r| (cols - 1).checked_mul(v.cs).and_then(|c| r.checked_add(c)));
    match last {
        Some(l) if l < v.data.len() => Ok(()),
        _ => Err(shape_err(
            op,
            format!(
                "{name} view {rows} x {cols} with strides ({}, {}) reaches past its {} elements",
                v.rs,
                v.cs,
                v.data.len()
            ),
        )),
    }
}

/// The cuBLASLt IMMA (TN) product with wrapping `i32` sums (two's complement mod 2^32, as int8
/// tensor cores without saturation): `d[i + j·ldd] = sum_p x[p + i·ldx] · y[p + j·ldy]` for
/// `i < rows`, `j < cols`, `p < inner` (X stored `inner x rows`, Y `inner x cols`, D `rows x cols`,
/// all column-major). Columns of D run in parallel.
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8_i32_tn(
    rows: usize,
    cols: usize,
    inner: usize,
    x: &[i8],
    ldx: usize,
    y: &[i8],
    ldy: usize,
    d: &mut [i32],
    ldd: usize,
) -> Result<()> {
    const OP: &str = "gemm_i8_i32_tn";
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let fits = |ld: usize, len: usize, r: usize, c: usize| ld >= r && (c - 1) * ld + r <= len;
    if !fits(ldx, x.len(), inner, rows) || !fits(ldy, y.len(), inner, cols) || !fits(ldd, d.len(), rows, cols) {
        return Err(shape_err(
            OP,
            format!(
                "X {inner} x {rows} (ld {ldx}, {} elements), Y {inner} x {cols} (ld {ldy}, {}) or D {rows} x {cols} \
                 (ld {ldd}, {}) out of bounds",
                x.len(),
                y.len(),
                d.len()
            ),
        ));
    }
    d.par_chunks_mut(ldd).take(cols).enumerate().for_each(|(j, dcol)| {
        let ycol = &y[j * ldy..][..inner];
        for (i, dv) in dcol[..rows].iter_mut().enumerate() {
            let xcol = &x[i * ldx..][..inner];
            *dv = xcol.iter().zip(ycol).fold(0i32, |acc, (&a, &b)| acc.wrapping_add(a as i32 * b as i32));
        }
    });
    Ok(())
}
