//! The exact ring GEMM by limbs ([`cryptgpu_ring::limbs`]) executed on the CPU.
//!
//! This runs the same plan as a GPU backend would: pack A and B into limb matrices
//! ([`pack_a_f64`], [`pack_b_f64`], [`pack_a_i8`], [`pack_b_i8`]), run one GEMM per (chunk, group)
//! on zero-copy sub-views of the packed buffers (`f64` with `matrixmultiply::dgemm`, `i8 x i8 ->
//! i32` with [`gemm_i8_i32`], which wraps like the hardware), and add the recombined ring terms
//! into C. It is not a fast path on the CPU ([`crate::gemm::gemm`] is); it is the executable
//! specification that device implementations and their tests compare against, and it is tested
//! bit for bit against [`crate::gemm::gemm`].

use crate::gemm::MatRef;
use cryptgpu_ring::error::{invalid, shape_err, Result};
use cryptgpu_ring::limbs::{f64_term, i32_term, i8_digit, u16_limb, LimbPlan, LimbScheme, I8_DIGITS, U16_LIMBS};
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

/// `c[m x n] = a[m x k] · b[k x n]` over Z_2^64 following `plan` (either scheme). `c` is dense
/// row-major and overwritten. Errors when `c` is not `m·n` long or a view reaches past its data.
pub fn ring_gemm_limbs(plan: &LimbPlan, a: MatRef<'_>, b: MatRef<'_>, c: &mut [u64]) -> Result<()> {
    const OP: &str = "ring_gemm_limbs";
    let (m, k, n) = (plan.m(), plan.k(), plan.n());
    check_view(OP, "A", &a, m, k)?;
    check_view(OP, "B", &b, k, n)?;
    if c.len() != m * n {
        return Err(shape_err(OP, format!("output has {} elements, {m} x {n} needs {}", c.len(), m * n)));
    }
    c.fill(0);
    if c.is_empty() || k == 0 {
        return Ok(());
    }
    match plan.scheme() {
        LimbScheme::F64x16 => run_f64(plan, a, b, c),
        LimbScheme::I8x8 => run_i8(plan, a, b, c),
    }
}

fn run_f64(plan: &LimbPlan, a: MatRef<'_>, b: MatRef<'_>, c: &mut [u64]) -> Result<()> {
    let (m, n, pk) = (plan.m(), plan.n(), plan.packed_k());
    let pa = pack_a(plan, a, |x, i| u16_limb(x, i) as f64);
    let pb = pack_b(plan, b, |x, j| u16_limb(x, j) as f64);
    let mut g = vec![0f64; U16_LIMBS * m * n];
    for chunk in 0..plan.num_chunks() {
        for (s, out) in g.chunks_mut(m * n).enumerate() {
            let t = plan.group_gemm(chunk, s);
            // SAFETY: the plan puts the A view (rows 0..m, columns a_col..a_col + inner, row stride
            // pk) inside `pa` (m·pk elements) and the B view (rows b_row..b_row + inner, n
            // columns) inside `pb` (pk·n elements); `out` holds m·n elements with strides (n, 1),
            // which do not alias; beta = 0 means `out` is only written. m, n, inner >= 1 here.
            unsafe {
                matrixmultiply::dgemm(
                    m,
                    t.inner,
                    n,
                    1.0,
                    pa.as_ptr().add(t.a_col),
                    pk as isize,
                    1,
                    pb.as_ptr().add(t.b_row * n),
                    n as isize,
                    1,
                    0.0,
                    out.as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
        }
        let g = &g;
        accumulate(c, |e| (0..U16_LIMBS).fold(0u64, |x, s| x.wrapping_add(f64_term(g[s * m * n + e], s))));
    }
    Ok(())
}

fn run_i8(plan: &LimbPlan, a: MatRef<'_>, b: MatRef<'_>, c: &mut [u64]) -> Result<()> {
    let (m, n, pk) = (plan.m(), plan.n(), plan.packed_k());
    let pa = pack_a(plan, a, i8_digit);
    let pb = pack_b(plan, b, i8_digit);
    let mut g = vec![0i32; I8_DIGITS * m * n];
    for chunk in 0..plan.num_chunks() {
        g.par_chunks_mut(m * n).enumerate().try_for_each(|(s, out)| {
            let t = plan.group_gemm(chunk, s);
            gemm_i8_i32(m, t.inner, n, &pa[t.a_col..], pk, &pb[t.b_row * n..], n, out)
        })?;
        let g = &g;
        accumulate(c, |e| (0..I8_DIGITS).fold(0u64, |x, s| x.wrapping_add(i32_term(g[s * m * n + e], s))));
    }
    Ok(())
}

/// `c[e] += term(e)` (wrapping), in parallel.
fn accumulate(c: &mut [u64], term: impl Fn(usize) -> u64 + Sync) {
    c.par_chunks_mut(CHUNK).enumerate().for_each(|(blk, cs)| {
        for (off, cv) in cs.iter_mut().enumerate() {
            *cv = cv.wrapping_add(term(blk * CHUNK + off));
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

/// Packs A (`m x k`, checked) into `m x L·k` row-major limbs, limb `i` of `A[r, p]` at column
/// `plan.a_col(i, p)`.
fn pack_a<T: Copy + Default + Send>(plan: &LimbPlan, a: MatRef<'_>, limb: impl Fn(u64, usize) -> T + Sync) -> Vec<T> {
    let pk = plan.packed_k();
    let mut out = vec![T::default(); plan.m() * pk];
    if pk == 0 {
        return out;
    }
    out.par_chunks_mut(pk).enumerate().for_each(|(r, row)| {
        for chunk in 0..plan.num_chunks() {
            let (start, len) = plan.chunk(chunk);
            let seg = &mut row[plan.limbs() * start..][..plan.limbs() * len];
            for (i, dst) in seg.chunks_exact_mut(len).enumerate() {
                for (q, d) in dst.iter_mut().enumerate() {
                    *d = limb(a.data[r * a.rs + (start + q) * a.cs], i);
                }
            }
        }
    });
    out
}

/// Packs B (`k x n`, checked) into `L·k x n` row-major limbs, limb `j` of `B[p, col]` in row
/// `plan.b_row(j, p)`.
fn pack_b<T: Copy + Default + Send>(plan: &LimbPlan, b: MatRef<'_>, limb: impl Fn(u64, usize) -> T + Sync) -> Vec<T> {
    let n = plan.n();
    let mut out = vec![T::default(); plan.packed_k() * n];
    if n == 0 {
        return out;
    }
    out.par_chunks_mut(n).enumerate().for_each(|(row, dst)| {
        let (j, p) = plan.b_row_source(row);
        for (col, d) in dst.iter_mut().enumerate() {
            *d = limb(b.data[p * b.rs + col * b.cs], j);
        }
    });
    out
}

fn check_pack(
    op: &'static str,
    plan: &LimbPlan,
    want: LimbScheme,
    v: &MatRef<'_>,
    rows: usize,
    cols: usize,
) -> Result<()> {
    if plan.scheme() != want {
        return Err(invalid(op, format!("the plan is for {:?}, not {want:?}", plan.scheme())));
    }
    check_view(op, "input", v, rows, cols)
}

/// The packed A of an [`LimbScheme::F64x16`] plan: `m x L·k` row-major 16-bit limbs as `f64`
/// (what a device's split kernel must produce bit for bit).
pub fn pack_a_f64(plan: &LimbPlan, a: MatRef<'_>) -> Result<Vec<f64>> {
    check_pack("pack_a_f64", plan, LimbScheme::F64x16, &a, plan.m(), plan.k())?;
    Ok(pack_a(plan, a, |x, i| u16_limb(x, i) as f64))
}

/// The packed B of an [`LimbScheme::F64x16`] plan: `L·k x n` row-major 16-bit limbs as `f64`.
pub fn pack_b_f64(plan: &LimbPlan, b: MatRef<'_>) -> Result<Vec<f64>> {
    check_pack("pack_b_f64", plan, LimbScheme::F64x16, &b, plan.k(), plan.n())?;
    Ok(pack_b(plan, b, |x, j| u16_limb(x, j) as f64))
}

/// The packed A of an [`LimbScheme::I8x8`] plan: `m x L·k` row-major signed digits.
pub fn pack_a_i8(plan: &LimbPlan, a: MatRef<'_>) -> Result<Vec<i8>> {
    check_pack("pack_a_i8", plan, LimbScheme::I8x8, &a, plan.m(), plan.k())?;
    Ok(pack_a(plan, a, i8_digit))
}

/// The packed B of an [`LimbScheme::I8x8`] plan: `L·k x n` row-major signed digits.
pub fn pack_b_i8(plan: &LimbPlan, b: MatRef<'_>) -> Result<Vec<i8>> {
    check_pack("pack_b_i8", plan, LimbScheme::I8x8, &b, plan.k(), plan.n())?;
    Ok(pack_b(plan, b, i8_digit))
}

/// `c[m x n] = a[m x l] · b[l x n]` with `i8` inputs and wrapping `i32` accumulation (two's
/// complement mod 2^32, as int8 tensor cores without saturation). `a` and `b` are row-major with
/// row strides `lda >= l` and `ldb >= n` (so sub-views of the packed buffers are slices starting at
/// their first element); `c` is dense row-major and overwritten. Rows of C run in parallel.
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8_i32(
    m: usize,
    l: usize,
    n: usize,
    a: &[i8],
    lda: usize,
    b: &[i8],
    ldb: usize,
    c: &mut [i32],
) -> Result<()> {
    const OP: &str = "gemm_i8_i32";
    if c.len() != m * n {
        return Err(shape_err(OP, format!("output has {} elements, {m} x {n} needs {}", c.len(), m * n)));
    }
    let fits = |rows: usize, cols: usize, ld: usize, len: usize| {
        rows == 0
            || cols == 0
            || (ld >= cols && (rows - 1).checked_mul(ld).and_then(|x| x.checked_add(cols)).is_some_and(|e| e <= len))
    };
    if !fits(m, l, lda, a.len()) || !fits(l, n, ldb, b.len()) {
        return Err(shape_err(
            OP,
            format!(
                "A {m} x {l} (ld {lda}, {} elements) or B {l} x {n} (ld {ldb}, {} elements) out of bounds",
                a.len(),
                b.len()
            ),
        ));
    }
    if n == 0 {
        return Ok(());
    }
    c.par_chunks_mut(n).enumerate().for_each(|(r, crow)| {
        crow.fill(0);
        if l == 0 {
            return;
        }
        for (p, &av) in a[r * lda..][..l].iter().enumerate() {
            let av = av as i32;
            for (cv, &bv) in crow.iter_mut().zip(&b[p * ldb..][..n]) {
                *cv = cv.wrapping_add(av * bv as i32);
            }
        }
    });
    Ok(())
}
