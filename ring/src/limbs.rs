//! Exact ring GEMM through limb splitting: the device-independent plan and limb arithmetic.
//!
//! The ring product `C = A·B mod 2^64` (`A`: `m x k`, `B`: `k x n`, `u64`) is computed exactly on
//! floating-point or integer GEMM hardware by splitting every element into limbs. Two schemes:
//!
//! * [`LimbScheme::F64x16`] (as in the CryptGPU paper): 4 unsigned 16-bit limbs,
//!   `x = sum_i 2^(16 i) x_i` with `x_i` in `[0, 65535]`, stored as `f64`. Every GEMM entry is a
//!   sum of non-negative integers, exact while it stays `<= 2^53` ([`F64_MAX_INNER`]).
//! * [`LimbScheme::I8x8`] (tensor-core IMMA, `s8 x s8 -> s32`): 8 signed 8-bit digits,
//!   `x ≡ sum_i 2^(8 i) d_i (mod 2^64)` with `d_i` in `[-128, 127]` ([`i8_digit`]), accumulated in
//!   `i32` with two's-complement wrap-around.
//!
//! With `L` limbs of `b` bits, `C = sum_{i+j <= L-1} 2^(b (i+j)) · (A_i · B_j) mod 2^64` (pairs with
//! `i + j >= L` are multiples of 2^64 and vanish). Pairs with the same shift `s = i + j` form the
//! *group* `G_s = sum_{i+j=s} A_i · B_j`, computed as ONE GEMM of inner dimension `(s+1)·K` over
//! `[A_0 | A_1 | ... | A_s] · [B_s ; B_(s-1) ; ... ; B_0]`.
//!
//! # Chunks and packed layout
//!
//! `K` is cut into chunks of [`LimbPlan::chunk_k`] columns (the last one shorter), the same chunk
//! boundaries for every group. The chunk bound makes the largest *bounded* group exact: see
//! [`LimbScheme::max_chunk_k`]. The limb matrices are packed so that every (chunk, group) GEMM
//! reads zero-copy sub-views:
//!
//! * packed A: `m x (L·k)` row-major; chunk `c` (K range `[c0, c0 + len)`) occupies columns
//!   `[L·c0, L·(c0 + len))`, laid out `[A_0 | A_1 | ... | A_(L-1)]`, each block `len` wide
//!   ([`LimbPlan::a_col`]).
//! * packed B: `(L·k) x n` row-major; chunk `c` occupies rows `[L·c0, L·(c0 + len))`, laid out
//!   `[B_(L-1) ; ... ; B_1 ; B_0]` (limb `j` at block `L-1-j`, [`LimbPlan::b_row`]).
//!
//! Group `s` of chunk `c` is then A columns `[L·c0, L·c0 + (s+1)·len)` times B rows
//! `[L·c0 + (L-1-s)·len, L·(c0 + len))`: block `t` of the A view is `A_t`, block `t` of the B view
//! is `B_(s-t)` ([`LimbPlan::group_gemm`]). A single pair `(i, j)` is also a sub-view
//! ([`LimbPlan::pair_gemm`]), so an ungrouped execution uses the same packing (and is exact a
//! fortiori, its inner dimension being `len <= (s+1)·len`).
//!
//! Each GEMM output (`m x n`, `f64` or `i32`) turns into ring terms with [`f64_term`] /
//! [`i32_term`]; the terms of all groups and all chunks are added with wrapping `u64` adds
//! ([`recombine_f64`], [`recombine_i32`] do one chunk of one element).
//!
//! Everything here is plain integer arithmetic on scalars, meant to be mirrored bit for bit by
//! device kernels (the CPU execution is `cryptgpu_kernels_cpu::limb_gemm`).

use crate::error::{invalid, Result};

/// Number of 16-bit limbs of the `f64` scheme.
pub const U16_LIMBS: usize = 4;
/// Bits per limb of the `f64` scheme.
pub const U16_LIMB_BITS: u32 = 16;
/// Number of signed 8-bit digits of the `i8` scheme.
pub const I8_DIGITS: usize = 8;
/// Bits per digit of the `i8` scheme.
pub const I8_DIGIT_BITS: u32 = 8;
/// The bias of the signed-digit recoding: `0x80` in every byte (see [`i8_digit`]).
pub const I8_RECODE_BIAS: u64 = 0x8080_8080_8080_8080;

/// Largest limb-product magnitude of the `f64` scheme: `(2^16 - 1)^2`.
pub const F64_MAX_PRODUCT: u64 = 0xffff * 0xffff;
/// Largest digit-product magnitude of the `i8` scheme: `(-128)·(-128) = 2^14`.
pub const I8_MAX_PRODUCT: i64 = 1 << 14;

/// Largest inner dimension `L` of an exact `f64` GEMM of 16-bit limbs: the largest `L` with
/// `L·(2^16-1)^2 <= 2^53` (`2,097,216·(2^16-1)^2 = 2^53 - 6,291,392`). Every partial sum of
/// non-negative integers is then an integer `<= 2^53`, hence exact in any summation order, with
/// or without FMA. At `L + 1` the worst case `(L+1)·(2^16-1)^2 = 2^53 + 4,288,544,833` is odd and
/// above 2^53, so not representable.
pub const F64_MAX_INNER: usize = 2_097_216;

/// Largest inner dimension `L` of an `i8 x i8 -> i32` GEMM that cannot overflow `i32`: the
/// largest `L` with `L·2^14 <= 2^31 - 1` (positive extreme `(-128)·(-128)`; the negative extreme
/// `-128·127` allows more). At `L + 1 = 2^17` the worst case is exactly `2^31`.
pub const I32_MAX_INNER: usize = 131_071;

/// Largest K chunk of [`LimbScheme::F64x16`]: `F64_MAX_INNER / 4 = 524,304` (group `s = 3` has
/// inner dimension `4·chunk`; `4·524,304 = 2,097,216` exactly).
pub const F64_MAX_CHUNK_K: usize = F64_MAX_INNER / U16_LIMBS;

/// Largest K chunk of [`LimbScheme::I8x8`]: `I32_MAX_INNER / 4 = 32,767` (group `s = 3`, the
/// largest group that must not wrap, has inner dimension `4·chunk = 131,068`).
pub const I8_MAX_CHUNK_K: usize = I32_MAX_INNER / 4;

// The bounds, checked at compile time: each is the largest safe value.
const _: () = {
    let (c, two53) = (F64_MAX_PRODUCT as u128, 1u128 << 53);
    assert!(F64_MAX_INNER as u128 * c <= two53 && (F64_MAX_INNER as u128 + 1) * c > two53);
    let (p, i32max) = (I8_MAX_PRODUCT as i128, i32::MAX as i128);
    assert!(I32_MAX_INNER as i128 * p <= i32max && (I32_MAX_INNER as i128 + 1) * p > i32max);
    assert!(4 * F64_MAX_CHUNK_K <= F64_MAX_INNER && 4 * (F64_MAX_CHUNK_K + 1) > F64_MAX_INNER);
    assert!(4 * I8_MAX_CHUNK_K <= I32_MAX_INNER && 4 * (I8_MAX_CHUNK_K + 1) > I32_MAX_INNER);
};

/// Alignment (in elements) of the default K chunk when `k` needs more than one chunk.
pub const CHUNK_ALIGN: usize = 16;

/// Limb `i` (`i < 4`) of `x` in the `f64` scheme: bits `16 i .. 16 i + 16`; 0 for `i >= 4`.
#[inline(always)]
pub const fn u16_limb(x: u64, i: usize) -> u16 {
    if i < U16_LIMBS {
        (x >> (U16_LIMB_BITS as usize * i)) as u16
    } else {
        0
    }
}

/// The 4 unsigned 16-bit limbs of `x`, least significant first.
#[inline]
pub const fn u16_limbs(x: u64) -> [u16; U16_LIMBS] {
    [u16_limb(x, 0), u16_limb(x, 1), u16_limb(x, 2), u16_limb(x, 3)]
}

/// `sum_i 2^(16 i) l_i`: the inverse of [`u16_limbs`].
#[inline]
pub const fn from_u16_limbs(l: [u16; U16_LIMBS]) -> u64 {
    (l[0] as u64) | ((l[1] as u64) << 16) | ((l[2] as u64) << 32) | ((l[3] as u64) << 48)
}

/// Digit `i` (`i < 8`) of the signed-digit recoding of `x`; 0 for `i >= 8`.
///
/// The digits are the unique `d_0..d_7` in `[-128, 127]` with `x ≡ sum_i 2^(8 i) d_i (mod 2^64)`:
/// the same as taking the low byte, subtracting 256 when it is `>= 128` and carrying 1 into the
/// next byte (the carry out of the top byte dropped). Closed form, carry-free per digit:
/// `d_i = byte_i(x + 0x8080...80) - 128` (wrapping add), i.e. `(byte_i(x + bias) ^ 0x80) as i8`.
/// Proof: `sum_i 2^(8 i) (byte_i(y) - 128) = y - bias`, and the digit set is a complete residue
/// system mod 256, which makes the representation mod 2^64 unique.
#[inline(always)]
pub const fn i8_digit(x: u64, i: usize) -> i8 {
    if i < I8_DIGITS {
        (((x.wrapping_add(I8_RECODE_BIAS) >> (I8_DIGIT_BITS as usize * i)) as u8) ^ 0x80) as i8
    } else {
        0
    }
}

/// The 8 signed digits of `x`, least significant first (see [`i8_digit`]).
#[inline]
pub const fn i8_digits(x: u64) -> [i8; I8_DIGITS] {
    let y = x.wrapping_add(I8_RECODE_BIAS);
    let mut d = [0i8; I8_DIGITS];
    let mut i = 0;
    while i < I8_DIGITS {
        d[i] = (((y >> (8 * i)) as u8) ^ 0x80) as i8;
        i += 1;
    }
    d
}

/// `sum_i 2^(8 i) d_i mod 2^64`: the inverse of [`i8_digits`].
#[inline]
pub const fn from_i8_digits(d: [i8; I8_DIGITS]) -> u64 {
    let mut x = 0u64;
    let mut i = 0;
    while i < I8_DIGITS {
        x = x.wrapping_add((d[i] as i64 as u64) << (8 * i));
        i += 1;
    }
    x
}

/// The ring term of one entry `g` of the `f64` GEMM of group (or pair) shift `s`:
/// `(g as u64) << 16 s` (wrapping). `g` must be an exact non-negative integer `< 2^53` (which the
/// plan guarantees); on CUDA `__double2ull_rn` or `_rz` gives the same value.
#[inline(always)]
pub fn f64_term(g: f64, s: usize) -> u64 {
    if s < U16_LIMBS {
        (g as u64) << (U16_LIMB_BITS as usize * s)
    } else {
        0
    }
}

/// The ring term of one entry `g` of the `i32` GEMM of group (or pair) shift `s`:
/// `(g as i64 as u64) << 8 s` (sign-extended, wrapping).
///
/// For `s <= 3` the plan keeps `g` exact (no `i32` overflow), so the sign extension is the exact
/// value mod 2^64. For `s >= 4`, `g` may have wrapped: let `G` be the true sum and `x` any 64-bit
/// extension (sign or zero) of `g`'s 32-bit pattern; then `x ≡ g ≡ G (mod 2^32)`, and since
/// `8 s >= 32`, `x·2^(8 s) ≡ G·2^(8 s) (mod 2^(32 + 8 s))`, a multiple of 2^64: the term is right
/// whichever extension is used, and whatever the wrap-around.
#[inline(always)]
pub const fn i32_term(g: i32, s: usize) -> u64 {
    if s < I8_DIGITS {
        (g as i64 as u64) << (I8_DIGIT_BITS as usize * s)
    } else {
        0
    }
}

/// One element of one chunk from the 4 group outputs `g[s]` of the `f64` scheme:
/// `sum_s f64_term(g[s], s)` (wrapping).
#[inline]
pub fn recombine_f64(g: &[f64; U16_LIMBS]) -> u64 {
    let mut x = 0u64;
    let mut s = 0;
    while s < U16_LIMBS {
        x = x.wrapping_add(f64_term(g[s], s));
        s += 1;
    }
    x
}

/// One element of one chunk from the 8 group outputs `g[s]` of the `i8` scheme:
/// `sum_s i32_term(g[s], s)` (wrapping).
#[inline]
pub const fn recombine_i32(g: &[i32; I8_DIGITS]) -> u64 {
    let mut x = 0u64;
    let mut s = 0;
    while s < I8_DIGITS {
        x = x.wrapping_add(i32_term(g[s], s));
        s += 1;
    }
    x
}

/// How a ring GEMM is split into limb GEMMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimbScheme {
    /// 4 unsigned 16-bit limbs as `f64`, `f64` GEMMs (exact below 2^53); 4 groups, 10 pairs.
    F64x16,
    /// 8 signed 8-bit digits, `i8 x i8 -> i32` GEMMs with wrapping accumulation; 8 groups, 36 pairs.
    I8x8,
}

impl LimbScheme {
    /// The per-shape choice when none is forced: always [`LimbScheme::I8x8`].
    ///
    /// It does 3.6x the multiply-adds of `F64x16` (inner dimensions `36 K` vs `10 K`), but int8
    /// tensor cores exist on every GPU from sm_75 and run far faster than FP64 ones (H100 SXM:
    /// ~1,979 dense int8 TOPS vs ~67 FP64 TFLOPS). Backends may refine this with device knowledge;
    /// the shape is an argument so that they can without changing the signature.
    pub fn select(m: usize, k: usize, n: usize) -> LimbScheme {
        let _ = (m, k, n);
        LimbScheme::I8x8
    }

    /// Number of limbs `L` (4 or 8); also the number of groups (shifts `s = 0..L`).
    pub const fn limbs(self) -> usize {
        match self {
            LimbScheme::F64x16 => U16_LIMBS,
            LimbScheme::I8x8 => I8_DIGITS,
        }
    }

    /// Bits per limb (16 or 8).
    pub const fn limb_bits(self) -> u32 {
        match self {
            LimbScheme::F64x16 => U16_LIMB_BITS,
            LimbScheme::I8x8 => I8_DIGIT_BITS,
        }
    }

    /// Left shift of group `s`'s terms: `s·limb_bits` (always below 64 for `s < limbs`).
    pub const fn shift(self, s: usize) -> u32 {
        s as u32 * self.limb_bits()
    }

    /// Whether group `s`'s GEMM must be exact (bounded inner dimension). All `f64` groups; the
    /// `i8` groups with `s <= 3`, the ones whose term needs more than the 32 accumulator bits
    /// (`64 - 8 s > 32`). `i8` groups `s >= 4` may wrap (see [`i32_term`]).
    pub const fn group_is_bounded(self, s: usize) -> bool {
        match self {
            LimbScheme::F64x16 => true,
            LimbScheme::I8x8 => s < 4,
        }
    }

    /// Largest exact inner dimension of one GEMM: [`F64_MAX_INNER`] or [`I32_MAX_INNER`].
    pub const fn max_exact_inner(self) -> usize {
        match self {
            LimbScheme::F64x16 => F64_MAX_INNER,
            LimbScheme::I8x8 => I32_MAX_INNER,
        }
    }

    /// Largest K chunk: the largest bounded group (`s = 3`, inner `4·chunk`) stays within
    /// [`max_exact_inner`](Self::max_exact_inner). [`F64_MAX_CHUNK_K`] or [`I8_MAX_CHUNK_K`].
    pub const fn max_chunk_k(self) -> usize {
        match self {
            LimbScheme::F64x16 => F64_MAX_CHUNK_K,
            LimbScheme::I8x8 => I8_MAX_CHUNK_K,
        }
    }

    /// The chunk a plan uses when none is forced: `max(k, 1)` when `k <= max_chunk_k()`, else the
    /// largest multiple of [`CHUNK_ALIGN`] not above `max_chunk_k()` (524,304 or 32,752), so that
    /// every chunk offset in the packed buffers stays 16-element aligned for tensor-core GEMMs.
    pub const fn default_chunk_k(self, k: usize) -> usize {
        let max = self.max_chunk_k();
        if k == 0 {
            1
        } else if k <= max {
            k
        } else {
            max / CHUNK_ALIGN * CHUNK_ALIGN
        }
    }

    /// The pairs `(i, j)` of group `s` in GEMM block order: `(0, s), (1, s-1), ..., (s, 0)`;
    /// empty for `s >= limbs`.
    pub fn group_pairs(self, s: usize) -> impl Iterator<Item = (usize, usize)> {
        let end = if s < self.limbs() { s + 1 } else { 0 };
        (0..end).map(move |i| (i, s - i))
    }

    /// All pairs `(i, j)` with `i + j < limbs`, grouped by `s = i + j` (10 or 36 pairs).
    pub fn pairs(self) -> Vec<(usize, usize)> {
        (0..self.limbs()).flat_map(|s| self.group_pairs(s)).collect()
    }
}

/// One limb GEMM: `out[m x n] = packedA[:, a_col .. a_col + inner] · packedB[b_row .. b_row + inner, :]`,
/// whose entries become ring terms shifted left by `shift` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimbGemm {
    /// The K chunk.
    pub chunk: usize,
    /// The group's shift index `s = i + j` (the term is shifted by `s·limb_bits`).
    pub s: usize,
    /// First column of the A operand in the packed A (row stride [`LimbPlan::packed_k`]).
    pub a_col: usize,
    /// First row of the B operand in the packed B (row stride `n`).
    pub b_row: usize,
    /// Inner dimension of this GEMM.
    pub inner: usize,
    /// Left shift of the terms in bits (`s·limb_bits`).
    pub shift: u32,
}

/// The execution plan of one exact ring GEMM `m x k x n` by limbs (see the module docs).
///
/// Valid by construction ([`LimbPlan::new`]): the chunk is within the scheme's bound and every
/// buffer size fits in memory arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimbPlan {
    scheme: LimbScheme,
    m: usize,
    k: usize,
    n: usize,
    chunk_k: usize,
}

impl LimbPlan {
    /// A plan with the given scheme; `chunk_k` forces a chunk (tests, tuning), `None` uses
    /// [`LimbScheme::default_chunk_k`]. Errors when `chunk_k` is 0 or above `scheme.max_chunk_k()`, or when
    /// a packed buffer (`m·L·k`, `L·k·n`) or the output `m·n` overflows `usize`.
    pub fn new(scheme: LimbScheme, m: usize, k: usize, n: usize, chunk_k: Option<usize>) -> Result<Self> {
        const OP: &str = "limb_plan";
        let max = scheme.max_chunk_k();
        let chunk_k = match chunk_k {
            Some(c) if c == 0 || c > max => {
                return Err(invalid(OP, format!("chunk_k {c} must be in 1..={max} for {scheme:?}")));
            }
            Some(c) => c,
            None => scheme.default_chunk_k(k),
        };
        // Every buffer (packed A and B, one GEMM output, C) must fit in isize::MAX bytes at 8 bytes
        // per element.
        let bytes = |x: usize, y: usize| x.checked_mul(y)?.checked_mul(8).filter(|&b| b <= isize::MAX as usize);
        let lk = scheme.limbs().checked_mul(k);
        let fits = lk.and_then(|lk| bytes(m, lk)).and(lk.and_then(|lk| bytes(lk, n))).and(bytes(m, n));
        if fits.is_none() {
            return Err(invalid(OP, format!("{m} x {k} x {n} is too large for {scheme:?} limb buffers")));
        }
        Ok(LimbPlan { scheme, m, k, n, chunk_k })
    }

    /// The plan of `m x k x n` with the forced scheme, or [`LimbScheme::select`]'s, and the
    /// default chunk.
    pub fn select(m: usize, k: usize, n: usize, force: Option<LimbScheme>) -> Result<Self> {
        LimbPlan::new(force.unwrap_or_else(|| LimbScheme::select(m, k, n)), m, k, n, None)
    }

    /// The scheme.
    pub const fn scheme(&self) -> LimbScheme {
        self.scheme
    }

    /// Rows of A and C.
    pub const fn m(&self) -> usize {
        self.m
    }

    /// Inner dimension of the ring GEMM.
    pub const fn k(&self) -> usize {
        self.k
    }

    /// Columns of B and C.
    pub const fn n(&self) -> usize {
        self.n
    }

    /// Columns of K per chunk (`1 ..= scheme.max_chunk_k()`); the last chunk may be shorter.
    pub const fn chunk_k(&self) -> usize {
        self.chunk_k
    }

    /// Number of limbs `L` of the scheme.
    pub const fn limbs(&self) -> usize {
        self.scheme.limbs()
    }

    /// Width of the packed A and height of the packed B: `L·k`.
    pub const fn packed_k(&self) -> usize {
        self.limbs() * self.k
    }

    /// Number of K chunks (0 when `k = 0`).
    pub const fn num_chunks(&self) -> usize {
        self.k.div_ceil(self.chunk_k)
    }

    /// The K range `(start, len)` of chunk `c` (`len = 0` past the end).
    pub const fn chunk(&self, c: usize) -> (usize, usize) {
        let start = c.saturating_mul(self.chunk_k);
        if start >= self.k {
            return (self.k, 0);
        }
        let rest = self.k - start;
        (start, if rest < self.chunk_k { rest } else { self.chunk_k })
    }

    /// Column of the packed A holding limb `i` of `A[:, p]` (`i < L`, `p < k`).
    pub const fn a_col(&self, i: usize, p: usize) -> usize {
        let (start, len) = self.chunk(p / self.chunk_k);
        self.limbs() * start + i * len + (p - start)
    }

    /// Row of the packed B holding limb `j` of `B[p, :]` (`j < L`, `p < k`).
    pub const fn b_row(&self, j: usize, p: usize) -> usize {
        let (start, len) = self.chunk(p / self.chunk_k);
        self.limbs() * start + (self.limbs() - 1 - j) * len + (p - start)
    }

    /// The inverse of [`a_col`](Self::a_col): `(limb i, p)` of packed-A column `col` (for a kernel
    /// that writes the packed buffer one element per thread). Requires `col < L·k`.
    pub const fn a_col_source(&self, col: usize) -> (usize, usize) {
        let (start, off, len) = self.packed_position(col);
        (off / len, start + off % len)
    }

    /// The inverse of [`b_row`](Self::b_row): `(limb j, p)` of packed-B row `row`. Requires
    /// `row < L·k`.
    pub const fn b_row_source(&self, row: usize) -> (usize, usize) {
        let (start, off, len) = self.packed_position(row);
        (self.limbs() - 1 - off / len, start + off % len)
    }

    /// `(chunk start, offset inside the chunk's packed segment, chunk length)` of a packed index.
    const fn packed_position(&self, idx: usize) -> (usize, usize, usize) {
        let c = idx / (self.limbs() * self.chunk_k);
        let (start, len) = self.chunk(c);
        (start, idx - self.limbs() * start, len)
    }

    /// The GEMM of group `s < L` in chunk `c < num_chunks()`: inner dimension `(s+1)·len`.
    pub const fn group_gemm(&self, c: usize, s: usize) -> LimbGemm {
        let (start, len) = self.chunk(c);
        let base = self.limbs() * start;
        LimbGemm {
            chunk: c,
            s,
            a_col: base,
            b_row: base + (self.limbs() - 1 - s) * len,
            inner: (s + 1) * len,
            shift: self.scheme.shift(s),
        }
    }

    /// The GEMM of the single pair `(i, j)` (`i + j < L`) in chunk `c`: inner dimension `len`.
    pub const fn pair_gemm(&self, c: usize, i: usize, j: usize) -> LimbGemm {
        let (start, len) = self.chunk(c);
        let base = self.limbs() * start;
        LimbGemm {
            chunk: c,
            s: i + j,
            a_col: base + i * len,
            b_row: base + (self.limbs() - 1 - j) * len,
            inner: len,
            shift: self.scheme.shift(i + j),
        }
    }

    /// All grouped GEMMs, chunk-major then by `s` (`num_chunks()·L` of them).
    pub fn group_gemms(&self) -> impl Iterator<Item = LimbGemm> + '_ {
        (0..self.num_chunks()).flat_map(move |c| (0..self.limbs()).map(move |s| self.group_gemm(c, s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiny deterministic generator (the ring crate has no rand dependency).
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    const EDGES: [u64; 10] = [
        0,
        1,
        u64::MAX,
        0x8080_8080_8080_8080,
        0x7f7f_7f7f_7f7f_7f7f,
        0x7f7f_7f7f_7f7f_7f80,
        i64::MIN as u64,
        i64::MAX as u64,
        0xff,
        0x80,
    ];

    fn values(count: usize) -> Vec<u64> {
        let mut st = 0x1234_5678;
        let mut v = EDGES.to_vec();
        v.extend((0..count).map(|_| splitmix(&mut st)));
        // Values whose bytes are all in {0x7f, 0x80, 0xff, 0x00}: the carry-chain extremes.
        v.extend((0..count).map(|_| {
            let r = splitmix(&mut st);
            (0..8).fold(0u64, |x, b| x | ([0x7fu64, 0x80, 0xff, 0x00][((r >> (2 * b)) & 3) as usize] << (8 * b)))
        }));
        v
    }

    /// The textbook recoding: low byte, minus 256 if >= 128 with a carry into the next byte.
    fn digits_by_carry(x: u64) -> [i8; 8] {
        let mut d = [0i8; 8];
        let mut carry = 0i32;
        for (i, di) in d.iter_mut().enumerate() {
            let t = ((x >> (8 * i)) & 0xff) as i32 + carry;
            let (v, c) = if t >= 128 { (t - 256, 1) } else { (t, 0) };
            *di = v as i8;
            carry = c;
        }
        d
    }

    #[test]
    fn limbs_and_digits_reconstruct() {
        for x in values(100_000) {
            let l = u16_limbs(x);
            assert_eq!(from_u16_limbs(l), x, "{x:#x}");
            assert!((0..4).all(|i| u16_limb(x, i) == l[i]));
            let d = i8_digits(x);
            assert_eq!(from_i8_digits(d), x, "{x:#x}");
            assert_eq!(d, digits_by_carry(x), "{x:#x}");
            assert!((0..8).all(|i| i8_digit(x, i) == d[i]));
            // Exact integer identity: sum d_i 2^(8i) = x - 2^64·carry_out.
            let v: i128 = d.iter().enumerate().map(|(i, &di)| (di as i128) << (8 * i)).sum();
            assert!(v == x as i128 || v == x as i128 - (1i128 << 64), "{x:#x}");
        }
        assert_eq!(u16_limb(u64::MAX, 4), 0);
        assert_eq!(i8_digit(u64::MAX, 8), 0);
        assert_eq!(i8_digits(0x7f7f_7f7f_7f7f_7f80), [-128; 8]);
        assert_eq!(i8_digits(0x7f7f_7f7f_7f7f_7f7f), [127; 8]);
        assert_eq!(i8_digits(u64::MAX), [-1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(i8_digits(i64::MIN as u64), [0, 0, 0, 0, 0, 0, 0, -128]);
        assert_eq!(i8_digits(0x8080_8080_8080_8080), [-128, -127, -127, -127, -127, -127, -127, -127]);
    }

    #[test]
    fn every_digit_value_occurs_and_products_are_bounded() {
        let mut seen = [false; 256];
        for b in 0..=255u64 {
            for carry_in in [0u64, 0xff] {
                // Byte 1 gets b, byte 0 is 0 or 0xff (0xff makes a carry into byte 1).
                let d = i8_digit((b << 8) | carry_in, 1);
                seen[(d as i16 + 128) as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
        let max = (-128i32..=127).flat_map(|a| (-128i32..=127).map(move |b| (a * b).abs())).max();
        assert_eq!(max, Some(I8_MAX_PRODUCT as i32));
        assert_eq!(F64_MAX_PRODUCT, (u16::MAX as u64).pow(2));
    }

    #[test]
    fn f64_bound_is_the_largest_exact_one() {
        let c = F64_MAX_PRODUCT as f64;
        let mut s = 0f64;
        for _ in 0..F64_MAX_INNER {
            s += c;
        }
        let exact = F64_MAX_INNER as u128 * F64_MAX_PRODUCT as u128;
        assert!(exact <= 1u128 << 53);
        assert_eq!(s as u128, exact);
        // One more worst-case term is no longer exact.
        let exact1 = exact + F64_MAX_PRODUCT as u128;
        assert!(exact1 > 1u128 << 53);
        assert_ne!((s + c) as u128, exact1);
        assert_eq!(F64_MAX_INNER, ((1u128 << 53) / F64_MAX_PRODUCT as u128) as usize);
    }

    #[test]
    fn i32_bound_is_the_largest_exact_one() {
        let sum = |len: usize, term: i32| (0..len).try_fold(0i32, |acc, _| acc.checked_add(term));
        assert_eq!(sum(I32_MAX_INNER, I8_MAX_PRODUCT as i32), Some(I32_MAX_INNER as i32 * (1 << 14)));
        assert_eq!(sum(I32_MAX_INNER + 1, I8_MAX_PRODUCT as i32), None);
        assert!(sum(I32_MAX_INNER, -128 * 127).is_some());
    }

    #[test]
    fn pairs_and_groups() {
        assert_eq!(LimbScheme::F64x16.pairs().len(), 10);
        assert_eq!(LimbScheme::I8x8.pairs().len(), 36);
        assert!(LimbScheme::I8x8.pairs().iter().all(|&(i, j)| i + j < 8));
        assert_eq!(LimbScheme::I8x8.group_pairs(3).collect::<Vec<_>>(), [(0, 3), (1, 2), (2, 1), (3, 0)]);
        assert_eq!(LimbScheme::F64x16.group_pairs(4).count(), 0);
        let bounded: Vec<usize> = (0..8).filter(|&s| LimbScheme::I8x8.group_is_bounded(s)).collect();
        assert_eq!(bounded, [0, 1, 2, 3]);
        assert!((0..4).all(|s| LimbScheme::F64x16.group_is_bounded(s)));
        assert_eq!(LimbScheme::select(512, 512, 512), LimbScheme::I8x8);
    }

    #[test]
    fn plan_checks_its_arguments() {
        assert!(LimbPlan::new(LimbScheme::I8x8, 2, 3, 4, Some(0)).is_err());
        assert!(LimbPlan::new(LimbScheme::I8x8, 2, 3, 4, Some(I8_MAX_CHUNK_K + 1)).is_err());
        assert!(LimbPlan::new(LimbScheme::I8x8, 2, 3, 4, Some(I8_MAX_CHUNK_K)).is_ok());
        assert!(LimbPlan::new(LimbScheme::F64x16, 2, 3, 4, Some(F64_MAX_CHUNK_K)).is_ok());
        assert!(LimbPlan::new(LimbScheme::F64x16, usize::MAX / 2, 3, 4, None).is_err());
        let p = LimbPlan::select(5, 100_000, 7, None).unwrap();
        assert_eq!((p.scheme(), p.chunk_k(), p.num_chunks()), (LimbScheme::I8x8, 32_752, 4));
        assert_eq!(p.chunk(3), (3 * 32_752, 100_000 - 3 * 32_752));
        assert_eq!(LimbPlan::select(5, 1000, 7, None).unwrap().chunk_k(), 1000);
        assert_eq!(LimbScheme::F64x16.default_chunk_k(F64_MAX_CHUNK_K + 1), F64_MAX_CHUNK_K);
        assert_eq!(LimbScheme::F64x16.default_chunk_k(F64_MAX_CHUNK_K), F64_MAX_CHUNK_K);
        let p = LimbPlan::select(5, 0, 7, Some(LimbScheme::F64x16)).unwrap();
        assert_eq!((p.num_chunks(), p.group_gemms().count()), (0, 0));
    }

    #[test]
    fn packed_layout_is_a_bijection_and_group_views_pair_the_right_limbs() {
        for scheme in [LimbScheme::F64x16, LimbScheme::I8x8] {
            let p = LimbPlan::new(scheme, 1, 11, 1, Some(4)).unwrap();
            let l = p.limbs();
            let mut a_seen = vec![None; p.packed_k()];
            let mut b_seen = vec![None; p.packed_k()];
            for q in 0..p.k() {
                for i in 0..l {
                    assert!(a_seen[p.a_col(i, q)].replace((i, q)).is_none());
                    assert!(b_seen[p.b_row(i, q)].replace((i, q)).is_none());
                    assert_eq!(p.a_col_source(p.a_col(i, q)), (i, q));
                    assert_eq!(p.b_row_source(p.b_row(i, q)), (i, q));
                }
            }
            for g in p.group_gemms() {
                let (start, len) = p.chunk(g.chunk);
                for t in 0..g.inner {
                    let (i, qa) = a_seen[g.a_col + t].unwrap();
                    let (j, qb) = b_seen[g.b_row + t].unwrap();
                    assert_eq!((i + j, qa), (g.s, qb));
                    assert!(qa >= start && qa < start + len);
                }
                let pairs =
                    (0..g.inner).step_by(len).map(|t| (a_seen[g.a_col + t].unwrap().0, b_seen[g.b_row + t].unwrap().0));
                assert_eq!(pairs.collect::<Vec<_>>(), scheme.group_pairs(g.s).collect::<Vec<_>>());
            }
            let g = p.pair_gemm(1, 2, 1);
            assert_eq!((g.inner, a_seen[g.a_col].unwrap(), b_seen[g.b_row].unwrap()), (4, (2, 4), (1, 4)));
        }
    }

    /// Runs a plan with naive exact GEMMs (f64 and wrapping i32, as the hardware) and compares
    /// with the naive ring product.
    #[test]
    fn plan_with_naive_limb_gemms_equals_ring_product() {
        let mut st = 99;
        let (m, k, n) = (3, 10, 4);
        for round in 0..4 {
            let a: Vec<u64> = (0..m * k).map(|i| if round == 0 { EDGES[i % 10] } else { splitmix(&mut st) }).collect();
            let b: Vec<u64> = (0..k * n).map(|i| if round == 0 { EDGES[i % 7] } else { splitmix(&mut st) }).collect();
            let want: Vec<u64> = (0..m * n)
                .map(|e| (0..k).fold(0u64, |s, p| s.wrapping_add(a[e / n * k + p].wrapping_mul(b[p * n + e % n]))))
                .collect();
            for chunk in [1, 3, 10] {
                let p = LimbPlan::new(LimbScheme::F64x16, m, k, n, Some(chunk)).unwrap();
                let mut pa = vec![0f64; m * p.packed_k()];
                let mut pb = vec![0f64; p.packed_k() * n];
                for q in 0..k {
                    for i in 0..4 {
                        (0..m).for_each(|r| pa[r * p.packed_k() + p.a_col(i, q)] = u16_limb(a[r * k + q], i) as f64);
                        (0..n).for_each(|c| pb[p.b_row(i, q) * n + c] = u16_limb(b[q * n + c], i) as f64);
                    }
                }
                let mut got = vec![0u64; m * n];
                for c in 0..p.num_chunks() {
                    for (e, out) in got.iter_mut().enumerate() {
                        let mut g = [0f64; 4];
                        for (s, gs) in g.iter_mut().enumerate() {
                            let t = p.group_gemm(c, s);
                            *gs = (0..t.inner)
                                .map(|x| pa[e / n * p.packed_k() + t.a_col + x] * pb[(t.b_row + x) * n + e % n])
                                .sum();
                        }
                        *out = out.wrapping_add(recombine_f64(&g));
                    }
                }
                assert_eq!(got, want, "f64 round {round} chunk {chunk}");

                let p = LimbPlan::new(LimbScheme::I8x8, m, k, n, Some(chunk)).unwrap();
                let mut pa = vec![0i8; m * p.packed_k()];
                let mut pb = vec![0i8; p.packed_k() * n];
                for q in 0..k {
                    for i in 0..8 {
                        (0..m).for_each(|r| pa[r * p.packed_k() + p.a_col(i, q)] = i8_digit(a[r * k + q], i));
                        (0..n).for_each(|c| pb[p.b_row(i, q) * n + c] = i8_digit(b[q * n + c], i));
                    }
                }
                let mut got = vec![0u64; m * n];
                for c in 0..p.num_chunks() {
                    for (e, out) in got.iter_mut().enumerate() {
                        let mut g = [0i32; 8];
                        for (s, gs) in g.iter_mut().enumerate() {
                            let t = p.group_gemm(c, s);
                            *gs = (0..t.inner).fold(0i32, |acc, x| {
                                let av = pa[e / n * p.packed_k() + t.a_col + x] as i32;
                                acc.wrapping_add(av * pb[(t.b_row + x) * n + e % n] as i32)
                            });
                        }
                        *out = out.wrapping_add(recombine_i32(&g));
                    }
                }
                assert_eq!(got, want, "i8 round {round} chunk {chunk}");
            }
        }
    }

    #[test]
    fn wrapped_high_groups_give_the_same_terms() {
        // For s >= 4 the i32 value only matters mod 2^32: any wrap gives the same term, and
        // zero extension equals sign extension after the shift.
        let mut st = 5;
        for _ in 0..10_000 {
            let big = splitmix(&mut st) as i64 >> 20;
            let wrapped = big as i32;
            for s in 4..8 {
                let exact = (big as u64) << (8 * s);
                assert_eq!(i32_term(wrapped, s), exact);
                assert_eq!((wrapped as u32 as u64) << (8 * s), exact);
            }
        }
    }
}
