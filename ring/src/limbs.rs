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
//! # Chunks
//!
//! `K` is cut into chunks of [`LimbPlan::chunk_k`] columns (the last one shorter), the same chunk
//! boundaries for every group. The chunk bound makes every group's GEMM exact: see
//! [`LimbScheme::max_chunk_k`]. Each GEMM output (`f64` or `i32`) turns into ring terms with
//! [`f64_term`] / [`i32_term`]; the terms of all groups and all chunks are added with wrapping
//! `u64` adds ([`recombine_f64`], [`recombine_i32`] do one chunk of one element).
//!
//! # Device execution
//!
//! [`DevicePlan`] turns a [`LimbPlan`] into the launches a GPU backend runs (per-chunk digit
//! buffers, split kernels, GEMM geometries padded for cuBLASLt, recombination), and [`execute`]
//! drives any [`LimbExecutor`] through them: the CUDA backend and the host replay of its kernels
//! run the same plan objects through the same driver.
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

/// Largest K chunk of [`LimbScheme::I8x8`]: `I32_MAX_INNER / 8 = 16,383`. The widest group
/// (`s = 7`, inner dimension `8·chunk = 131,064`) then cannot overflow `i32` either, so exactness
/// never depends on how the hardware treats an `i32` overflow (wrap or saturate: cuBLASLt does not
/// document it). Zero padding of the inner dimension (see [`DevicePlan`]) adds only zero products.
pub const I8_MAX_CHUNK_K: usize = I32_MAX_INNER / I8_DIGITS;

// The bounds, checked at compile time: each is the largest safe value.
const _: () = {
    let (c, two53) = (F64_MAX_PRODUCT as u128, 1u128 << 53);
    assert!(F64_MAX_INNER as u128 * c <= two53 && (F64_MAX_INNER as u128 + 1) * c > two53);
    let (p, i32max) = (I8_MAX_PRODUCT as i128, i32::MAX as i128);
    assert!(I32_MAX_INNER as i128 * p <= i32max && (I32_MAX_INNER as i128 + 1) * p > i32max);
    assert!(4 * F64_MAX_CHUNK_K <= F64_MAX_INNER && 4 * (F64_MAX_CHUNK_K + 1) > F64_MAX_INNER);
    assert!(8 * I8_MAX_CHUNK_K <= I32_MAX_INNER && 8 * (I8_MAX_CHUNK_K + 1) > I32_MAX_INNER);
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
/// The plan keeps `g` exact (no `i32` overflow, see [`I8_MAX_CHUNK_K`]), so the sign extension is
/// the exact value mod 2^64. (For `s >= 4` the term would even survive a wrapped `g`: let `G` be the true sum and `x` any 64-bit
/// extension (sign or zero) of `g`'s 32-bit pattern; then `x ≡ g ≡ G (mod 2^32)`, and since
/// `8 s >= 32`, `x·2^(8 s) ≡ G·2^(8 s) (mod 2^(32 + 8 s))`, a multiple of 2^64: the term is right
/// whichever extension is used, and whatever the wrap-around.)
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

    /// Largest exact inner dimension of one GEMM: [`F64_MAX_INNER`] or [`I32_MAX_INNER`].
    pub const fn max_exact_inner(self) -> usize {
        match self {
            LimbScheme::F64x16 => F64_MAX_INNER,
            LimbScheme::I8x8 => I32_MAX_INNER,
        }
    }

    /// Largest K chunk: every group's GEMM (inner dimension up to `L·chunk`) stays within
    /// [`max_exact_inner`](Self::max_exact_inner). [`F64_MAX_CHUNK_K`] or [`I8_MAX_CHUNK_K`].
    pub const fn max_chunk_k(self) -> usize {
        match self {
            LimbScheme::F64x16 => F64_MAX_CHUNK_K,
            LimbScheme::I8x8 => I8_MAX_CHUNK_K,
        }
    }

    /// The chunk a plan uses when none is forced: `max(k, 1)` when `k <= max_chunk_k()`, else the
    /// largest multiple of [`CHUNK_ALIGN`] not above `max_chunk_k()` (524,304 or 16,368), so that
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
        // Every buffer (the limbs of A and B, one GEMM output, C) must fit in isize::MAX bytes at 8 bytes
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
}

// ------------------------------------------------------------------------------------------------
// The device plan: the exact kernel and GEMM launches a backend runs.

/// Zero padding of each chunk's K per digit plane in the `i8` scheme: 16 digits, so that every
/// digit plane (and so every GEMM operand pointer) starts 16-byte aligned.
pub const I8_K_PAD: usize = 16;

/// What cuBLASLt documents for IMMA kernels (`CUBLAS_COMPUTE_32I`, `CUDA_R_8I` inputs) with the
/// regular (column-major) data ordering, the first and preferred set of requirements in the
/// `cublasLtMatmul()` section of the cuBLAS documentation (CUDA 13.0):
///
/// * all matrix pointers 4-byte aligned, "for even better performance, this condition should hold
///   with 16 instead of 4": we require [`IMMA_POINTER_ALIGN`] = 16;
/// * leading dimensions of A, B and C multiples of 4;
/// * only the "TN" format: A transposed, B not;
/// * dimensions `m` and `k` multiples of 4 (`n` is free).
///
/// (The second set, `CUBLASLT_ORDER_COL32` layouts, is not used; it does not exist on Hopper.)
pub const IMMA_DIM_MULTIPLE: usize = 4;
/// Byte alignment required of every IMMA operand pointer (see [`IMMA_DIM_MULTIPLE`]).
pub const IMMA_POINTER_ALIGN: usize = 16;

/// Which ring operand a split reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The left operand `A` (`m x k`).
    A,
    /// The right operand `B` (`k x n`).
    B,
}

/// Element strides of a matrix operand: element `(i, j)` is at `i·rs + j·cs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Strides {
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

/// The buffers of one chunk: digit buffers of A and B and the `L` group outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkBuffers {
    /// Elements (`f64` or `i8`) of the A digit buffer; the split writes all of them.
    pub a_len: usize,
    /// Elements of the B digit buffer.
    pub b_len: usize,
    /// The split of B writes `[0, b_written)`; `[b_written, b_len)` is row padding that must be zero.
    pub b_written: usize,
    /// Elements (`f64` or `i32`) of the group buffer: `L` planes, each written in full by its GEMM.
    pub groups_len: usize,
}

/// One launch of the split kernel of the scheme (`split_u16_f64` or `split_s8`), with its arguments:
/// it reads `src(o, t) = src[src_offset + o·so + t·st]` for `o < outer`, `t < inner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SplitStep {
    /// The operand read.
    pub side: Side,
    /// The kernel's `side` argument (0 for A, 1 for B).
    pub side_code: i32,
    /// First source element: the chunk's first K index times the operand's K stride.
    pub src_offset: usize,
    /// Source stride of the outer index.
    pub so: usize,
    /// Source stride of the inner index.
    pub st: usize,
    /// Outer extent (`f64`: `m` for A, the chunk's K for B; `i8`: `m` for A, `n` for B).
    pub outer: usize,
    /// Inner extent (`f64`: the chunk's K for A, `n` for B; `i8`: the chunk's K).
    pub inner: usize,
    /// `i8`: the chunk's K padded to [`I8_K_PAD`] (digits `inner..inner_pad` are written as 0);
    /// `f64`: equal to `inner`.
    pub inner_pad: usize,
}

/// One limb GEMM in column-major BLAS terms: `D[rows x cols] = op(X)[rows x inner] · Y[inner x cols]`
/// (the row-major `G_s[m x n] = A_s · B_s` computed as `G_s^T = B_s^T · A_s^T`), where X lives in the
/// B digit buffer, Y in the A digit buffer and D in the group buffer (offsets in elements).
///
/// `f64` (cuBLAS DGEMM, NN): `X[i + p·ldx]`. `i8` (cuBLASLt IMMA, TN): X transposed, stored
/// `inner x rows`, `X[p + i·ldx]`. Both: `Y[p + j·ldy]`, `D[i + j·ldd]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GemmGeometry {
    /// The scheme (which GEMM library call).
    pub scheme: LimbScheme,
    /// The group's shift index.
    pub s: usize,
    /// Rows of D (BLAS `m`).
    pub rows: usize,
    /// Columns of D (BLAS `n`).
    pub cols: usize,
    /// Inner dimension (BLAS `k`).
    pub inner: usize,
    /// Offset of X in the B digit buffer.
    pub x_offset: usize,
    /// Leading dimension of X.
    pub ldx: usize,
    /// Offset of Y in the A digit buffer.
    pub y_offset: usize,
    /// Leading dimension of Y.
    pub ldy: usize,
    /// Offset of D in the group buffer.
    pub d_offset: usize,
    /// Leading dimension of D.
    pub ldd: usize,
}

impl GemmGeometry {
    /// Whether X is transposed (`i8`: TN, the only IMMA format).
    pub const fn transpose_x(&self) -> bool {
        matches!(self.scheme, LimbScheme::I8x8)
    }

    /// The cache key of a GEMM library plan: every field but the offsets and the shift.
    pub const fn shape_key(&self) -> [usize; 6] {
        [self.rows, self.cols, self.inner, self.ldx, self.ldy, self.ldd]
    }
}

/// Checks a GEMM against the cuBLASLt IMMA requirements ([`IMMA_DIM_MULTIPLE`]) and against plain
/// BLAS validity (leading dimensions cover their matrices, sizes fit `i32`), given the byte
/// addresses of the X, Y and D pointers (the buffer base plus the offset; a replay passes 0 for
/// the bases, allocations being at least 256-byte aligned). The message names the broken condition.
pub fn check_imma_conditions(g: &GemmGeometry, x_addr: u64, y_addr: u64, d_addr: u64) -> Result<(), String> {
    let q = IMMA_DIM_MULTIPLE;
    let fail = |what: String| Err(format!("IMMA condition broken for {g:?}: {what}"));
    if g.scheme != LimbScheme::I8x8 || !g.transpose_x() {
        return fail("only the TN format of the i8 scheme is supported".into());
    }
    if g.rows % q != 0 || g.inner % q != 0 {
        return fail(format!("m = {} and k = {} must be multiples of {q}", g.rows, g.inner));
    }
    if g.ldx % q != 0 || g.ldy % q != 0 || g.ldd % q != 0 {
        return fail(format!("leading dimensions {} / {} / {} must be multiples of {q}", g.ldx, g.ldy, g.ldd));
    }
    if g.ldx < g.inner || g.ldy < g.inner || g.ldd < g.rows {
        return fail("a leading dimension is shorter than its column".into());
    }
    let align = IMMA_POINTER_ALIGN as u64;
    if x_addr % align != 0 || y_addr % align != 0 || d_addr % align != 0 {
        return fail(format!("pointers {x_addr:#x} / {y_addr:#x} / {d_addr:#x} must be {align}-byte aligned"));
    }
    if [g.rows, g.cols, g.inner, g.ldx, g.ldy, g.ldd].iter().any(|&v| v > i32::MAX as usize) {
        return fail("a size exceeds i32".into());
    }
    Ok(())
}

/// Recombination of one chunk's group buffer into the accumulator (kernel `combine_f64` or
/// `combine_i32`): `acc[i] (+)= sum_s term(groups[s·plane + i], s)` for `i < plane`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CombineStep {
    /// Elements per group plane and of the accumulator (`m·ldc`).
    pub plane: usize,
    /// Number of groups `L`.
    pub groups: usize,
    /// Add to the accumulator (every chunk but the first) rather than overwrite it.
    pub accumulate: bool,
    /// The accumulator is a padded `m x ldc` buffer (then [`UnpadStep`] follows), not the output.
    pub padded: bool,
}

/// The final copy of a padded accumulator (`m x src_ld`) into the dense `m x n` output (kernel
/// `copy_rows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnpadStep {
    /// Rows `m`.
    pub rows: usize,
    /// Row stride of the accumulator (`ldc`).
    pub src_ld: usize,
    /// Columns `n` (the output's row stride).
    pub width: usize,
}

/// A [`LimbPlan`] made executable: for given operand strides, every buffer size, kernel launch and
/// GEMM geometry a backend runs, padded for cuBLASLt in the `i8` scheme. The CUDA backend and the
/// host replay of its kernels both run it through [`execute`].
///
/// Per chunk `c` (K range `[k0, k0 + kc)`; `kp` = `kc` padded to [`I8_K_PAD`] for `i8`, `kc` for
/// `f64`):
///
/// * `f64`: A limbs `[m][4][kc]`, B limbs `[4 (limb 3 first)][kc][n]`; group `s` is DGEMM NN with
///   `rows = n`, `cols = m`, `inner = (s+1)·kc`, X at `(3-s)·kc·n` (ld `n`), Y at 0 (ld `4·kc`),
///   D plane `s` (ld `n`).
/// * `i8`: A digits `[m][8][kp]`, B digits `[ldc][8 (digit 7 first)][kp]` (rows `n..ldc` zero),
///   `ldc = n` rounded up to [`IMMA_DIM_MULTIPLE`]; group `s` is IMMA TN with `rows = ldc`,
///   `cols = m`, `inner = (s+1)·kp`, X at `(7-s)·kp` (ld `8·kp`), Y at 0 (ld `8·kp`), D plane `s`
///   (ld `ldc`). Each plane holds `m·ldc` `i32`, a multiple of 4: planes stay 16-byte aligned.
///
/// Exactness: group `s` sums at most `(s+1)·kc <= L·chunk_k` products (padding adds zeros), each
/// at most `(2^16-1)^2` (`f64`) or `2^14` in magnitude (`i8`); [`LimbScheme::max_chunk_k`] keeps
/// `L·chunk_k` within [`F64_MAX_INNER`] (every partial sum an integer `<= 2^53`, exact in any order)
/// or [`I32_MAX_INNER`] (no partial sum overflows `i32`, whatever the summation order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DevicePlan {
    plan: LimbPlan,
    a: Strides,
    b: Strides,
    ldc: usize,
}

impl DevicePlan {
    /// The device plan of `plan` for operands with strides `a` and `b`. Errors when a dimension is
    /// 0 (the caller handles empty products) or a buffer or GEMM size overflows.
    pub fn new(plan: LimbPlan, a: Strides, b: Strides) -> Result<Self> {
        const OP: &str = "limb_device_plan";
        let (m, k, n) = (plan.m(), plan.k(), plan.n());
        if m == 0 || k == 0 || n == 0 {
            return Err(invalid(OP, format!("{m} x {k} x {n} is empty")));
        }
        let ldc = match plan.scheme() {
            LimbScheme::F64x16 => n,
            LimbScheme::I8x8 => n.next_multiple_of(IMMA_DIM_MULTIPLE),
        };
        let p = DevicePlan { plan, a, b, ldc };
        let kp = p.chunk_pad(0);
        let l = plan.limbs();
        let sizes = [m.checked_mul(l * kp), ldc.checked_mul(l * kp), m.checked_mul(ldc).and_then(|x| x.checked_mul(l))];
        let fits = sizes.iter().all(|s| s.is_some_and(|v| v.checked_mul(8).is_some_and(|b| b <= isize::MAX as usize)));
        if !fits || [ldc, m, l * kp].iter().any(|&v| v > i32::MAX as usize) {
            return Err(invalid(OP, format!("{m} x {k} x {n} is too large for the GEMM libraries")));
        }
        Ok(p)
    }

    /// The chunking plan.
    pub const fn plan(&self) -> &LimbPlan {
        &self.plan
    }

    /// The scheme.
    pub const fn scheme(&self) -> LimbScheme {
        self.plan.scheme()
    }

    /// Row stride of the group planes and of the accumulator: `n`, rounded up to
    /// [`IMMA_DIM_MULTIPLE`] for `i8`.
    pub const fn ldc(&self) -> usize {
        self.ldc
    }

    /// Number of chunks.
    pub const fn num_chunks(&self) -> usize {
        self.plan.num_chunks()
    }

    /// K of chunk `c` per digit plane: padded to [`I8_K_PAD`] for `i8`.
    pub const fn chunk_pad(&self, c: usize) -> usize {
        let (_, len) = self.plan.chunk(c);
        match self.plan.scheme() {
            LimbScheme::F64x16 => len,
            LimbScheme::I8x8 => len.next_multiple_of(I8_K_PAD),
        }
    }

    /// Whether the result goes through a padded accumulator and an [`UnpadStep`].
    pub const fn is_padded(&self) -> bool {
        self.ldc != self.plan.n()
    }

    /// The buffers of chunk `c`.
    pub const fn buffers(&self, c: usize) -> ChunkBuffers {
        let (m, n, l, kp) = (self.plan.m(), self.plan.n(), self.plan.limbs(), self.chunk_pad(c));
        let b_rows = match self.plan.scheme() {
            LimbScheme::F64x16 => n,
            LimbScheme::I8x8 => self.ldc,
        };
        ChunkBuffers { a_len: m * l * kp, b_len: b_rows * l * kp, b_written: n * l * kp, groups_len: l * m * self.ldc }
    }

    /// The split launch of `side` in chunk `c`.
    pub const fn split(&self, c: usize, side: Side) -> SplitStep {
        let (k0, kc) = self.plan.chunk(c);
        let kp = self.chunk_pad(c);
        let (m, n) = (self.plan.m(), self.plan.n());
        let (a, b) = (self.a, self.b);
        match (self.plan.scheme(), side) {
            (LimbScheme::F64x16, Side::A) => SplitStep {
                side,
                side_code: 0,
                src_offset: k0 * a.cs,
                so: a.rs,
                st: a.cs,
                outer: m,
                inner: kc,
                inner_pad: kc,
            },
            (LimbScheme::F64x16, Side::B) => SplitStep {
                side,
                side_code: 1,
                src_offset: k0 * b.rs,
                so: b.rs,
                st: b.cs,
                outer: kc,
                inner: n,
                inner_pad: n,
            },
            (LimbScheme::I8x8, Side::A) => SplitStep {
                side,
                side_code: 0,
                src_offset: k0 * a.cs,
                so: a.rs,
                st: a.cs,
                outer: m,
                inner: kc,
                inner_pad: kp,
            },
            (LimbScheme::I8x8, Side::B) => SplitStep {
                side,
                side_code: 1,
                src_offset: k0 * b.rs,
                so: b.cs,
                st: b.rs,
                outer: n,
                inner: kc,
                inner_pad: kp,
            },
        }
    }

    /// The GEMM of group `s` in chunk `c`.
    pub const fn gemm(&self, c: usize, s: usize) -> GemmGeometry {
        let (m, n, l, kp) = (self.plan.m(), self.plan.n(), self.plan.limbs(), self.chunk_pad(c));
        let scheme = self.plan.scheme();
        let plane = m * self.ldc;
        let (x_offset, ldx) = match scheme {
            LimbScheme::F64x16 => ((l - 1 - s) * kp * n, n),
            LimbScheme::I8x8 => ((l - 1 - s) * kp, l * kp),
        };
        GemmGeometry {
            scheme,
            s,
            rows: self.ldc,
            cols: m,
            inner: (s + 1) * kp,
            x_offset,
            ldx,
            y_offset: 0,
            ldy: l * kp,
            d_offset: s * plane,
            ldd: self.ldc,
        }
    }

    /// The recombination of chunk `c`.
    pub const fn combine(&self, c: usize) -> CombineStep {
        CombineStep {
            plane: self.plan.m() * self.ldc,
            groups: self.plan.limbs(),
            accumulate: c > 0,
            padded: self.is_padded(),
        }
    }

    /// The final copy out of the padded accumulator, if any.
    pub const fn unpad(&self) -> Option<UnpadStep> {
        if self.is_padded() {
            Some(UnpadStep { rows: self.plan.m(), src_ld: self.ldc, width: self.plan.n() })
        } else {
            None
        }
    }
}

/// A backend that runs [`DevicePlan`] steps: the CUDA device, and the host replay of its kernels.
/// [`execute`] calls, per chunk, `begin_chunk`, `split` (A then B), `gemm` for `s = 0..L` and
/// `combine`, then `unpad` once when the plan is padded.
pub trait LimbExecutor {
    /// Provides the chunk's buffers (the B padding `[b_written, b_len)` zeroed).
    fn begin_chunk(&mut self, scheme: LimbScheme, buffers: &ChunkBuffers) -> Result<()>;
    /// Runs the scheme's split kernel into the digit buffer of `step.side`.
    fn split(&mut self, scheme: LimbScheme, step: &SplitStep) -> Result<()>;
    /// Runs one limb GEMM (for `i8`, after [`check_imma_conditions`] on its real pointers).
    fn gemm(&mut self, g: &GemmGeometry) -> Result<()>;
    /// Runs the scheme's combine kernel into the output or the padded accumulator.
    fn combine(&mut self, scheme: LimbScheme, step: &CombineStep) -> Result<()>;
    /// Copies the padded accumulator into the output.
    fn unpad(&mut self, step: &UnpadStep) -> Result<()>;
}

/// Runs `plan` on `exec`: the single driver of every limb GEMM execution. Each `i8` GEMM's
/// geometry is checked with [`check_imma_conditions`] at buffer offsets (bases 0) before the
/// executor sees it.
pub fn execute<E: LimbExecutor + ?Sized>(plan: &DevicePlan, exec: &mut E) -> Result<()> {
    let scheme = plan.scheme();
    for c in 0..plan.num_chunks() {
        exec.begin_chunk(scheme, &plan.buffers(c))?;
        exec.split(scheme, &plan.split(c, Side::A))?;
        exec.split(scheme, &plan.split(c, Side::B))?;
        for s in 0..plan.plan().limbs() {
            let g = plan.gemm(c, s);
            if scheme == LimbScheme::I8x8 {
                check_imma_conditions(&g, g.x_offset as u64, g.y_offset as u64, 4 * g.d_offset as u64)
                    .map_err(|e| invalid("limb_gemm", e))?;
            }
            exec.gemm(&g)?;
        }
        exec.combine(scheme, &plan.combine(c))?;
    }
    if let Some(u) = plan.unpad() {
        exec.unpad(&u)?;
    }
    Ok(())
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
        assert_eq!((p.scheme(), p.chunk_k(), p.num_chunks()), (LimbScheme::I8x8, 16_368, 7));
        assert_eq!(p.chunk(6), (6 * 16_368, 100_000 - 6 * 16_368));
        assert_eq!(LimbPlan::select(5, 1000, 7, None).unwrap().chunk_k(), 1000);
        assert_eq!(LimbScheme::F64x16.default_chunk_k(F64_MAX_CHUNK_K + 1), F64_MAX_CHUNK_K);
        assert_eq!(LimbScheme::F64x16.default_chunk_k(F64_MAX_CHUNK_K), F64_MAX_CHUNK_K);
        let p = LimbPlan::select(5, 0, 7, Some(LimbScheme::F64x16)).unwrap();
        assert_eq!(p.num_chunks(), 0);
    }

    /// A naive executor of device plans (f64 and wrapping i32 GEMMs, as the hardware), digit by
    /// digit from the ring functions: with [`execute`] it must equal the naive ring product.
    struct Naive<'a> {
        a: &'a [u64],
        b: &'a [u64],
        out: Vec<u64>,
        acc: Vec<u64>,
        bufs: (Vec<i64>, Vec<i64>, Vec<i64>),
    }

    impl LimbExecutor for Naive<'_> {
        fn begin_chunk(&mut self, _: LimbScheme, c: &ChunkBuffers) -> Result<()> {
            self.bufs = (vec![1 << 40; c.a_len], vec![1 << 40; c.b_len], vec![1 << 40; c.groups_len]);
            self.bufs.1[c.b_written..].fill(0);
            Ok(())
        }
        fn split(&mut self, scheme: LimbScheme, st: &SplitStep) -> Result<()> {
            let (src, dst) = match st.side {
                Side::A => (self.a, &mut self.bufs.0),
                Side::B => (self.b, &mut self.bufs.1),
            };
            let l = scheme.limbs();
            for o in 0..st.outer {
                for t in 0..st.inner_pad {
                    let x = if t < st.inner { src[st.src_offset + o * st.so + t * st.st] } else { 0 };
                    for i in 0..l {
                        let v = match scheme {
                            LimbScheme::F64x16 => u16_limb(x, i) as i64,
                            LimbScheme::I8x8 => i8_digit(x, i) as i64,
                        };
                        let idx = match (scheme, st.side_code) {
                            (LimbScheme::F64x16, 0) => (o * l + i) * st.inner + t,
                            (LimbScheme::F64x16, _) => ((l - 1 - i) * st.outer + o) * st.inner + t,
                            (LimbScheme::I8x8, 0) => (o * l + i) * st.inner_pad + t,
                            (LimbScheme::I8x8, _) => (o * l + l - 1 - i) * st.inner_pad + t,
                        };
                        dst[idx] = v;
                    }
                }
            }
            Ok(())
        }
        fn gemm(&mut self, g: &GemmGeometry) -> Result<()> {
            let (y, x, d) = (&self.bufs.0, &self.bufs.1, &mut self.bufs.2);
            for j in 0..g.cols {
                for i in 0..g.rows {
                    let xi = |p: usize| {
                        if g.transpose_x() {
                            x[g.x_offset + p + i * g.ldx]
                        } else {
                            x[g.x_offset + i + p * g.ldx]
                        }
                    };
                    let sum: i64 = (0..g.inner).map(|p| xi(p) * y[g.y_offset + p + j * g.ldy]).sum();
                    // The plan keeps every sum exact: within 2^53 (f64) and i32 (i8).
                    match g.scheme {
                        LimbScheme::F64x16 => assert!(sum <= 1 << 53),
                        LimbScheme::I8x8 => assert!(i32::try_from(sum).is_ok()),
                    }
                    d[g.d_offset + i + j * g.ldd] = sum;
                }
            }
            Ok(())
        }
        fn combine(&mut self, scheme: LimbScheme, st: &CombineStep) -> Result<()> {
            let g = &self.bufs.2;
            let dst = if st.padded { &mut self.acc } else { &mut self.out };
            dst.resize(st.plane, 0);
            for (e, v) in dst.iter_mut().enumerate() {
                let t = match scheme {
                    LimbScheme::F64x16 => recombine_f64(&std::array::from_fn(|s| g[s * st.plane + e] as f64)),
                    LimbScheme::I8x8 => recombine_i32(&std::array::from_fn(|s| g[s * st.plane + e] as i32)),
                };
                *v = if st.accumulate { v.wrapping_add(t) } else { t };
            }
            Ok(())
        }
        fn unpad(&mut self, u: &UnpadStep) -> Result<()> {
            self.out = (0..u.rows * u.width).map(|e| self.acc[e / u.width * u.src_ld + e % u.width]).collect();
            Ok(())
        }
    }

    #[test]
    fn device_plans_with_naive_limb_gemms_equal_the_ring_product() {
        let mut st = 99;
        for (m, k, n) in [(3, 10, 4), (2, 9, 5), (1, 40, 3)] {
            for round in 0..3 {
                let mut val = |i: usize| if round == 0 { EDGES[i % 10] } else { splitmix(&mut st) };
                let a: Vec<u64> = (0..m * k).map(&mut val).collect();
                let b: Vec<u64> = (0..k * n).map(&mut val).collect();
                // Row-major, and both operands transposed (column-major views of the same data).
                for ((ars, acs), (brs, bcs)) in [((k, 1), (n, 1)), ((1, m), (1, k))] {
                    let want: Vec<u64> = (0..m * n)
                        .map(|e| {
                            let (r, c) = (e / n, e % n);
                            (0..k).fold(0u64, |s, p| {
                                s.wrapping_add(a[r * ars + p * acs].wrapping_mul(b[p * brs + c * bcs]))
                            })
                        })
                        .collect();
                    let (ast, bst) = ((ars, acs), (brs, bcs));
                    for scheme in [LimbScheme::F64x16, LimbScheme::I8x8] {
                        for chunk in [1, 3, k] {
                            let plan = LimbPlan::new(scheme, m, k, n, Some(chunk)).unwrap();
                            let strides = |(rs, cs)| Strides { rs, cs };
                            let p = DevicePlan::new(plan, strides(ast), strides(bst)).unwrap();
                            let mut ex = Naive { a: &a, b: &b, out: vec![], acc: vec![], bufs: Default::default() };
                            execute(&p, &mut ex).unwrap();
                            assert_eq!(ex.out, want, "{scheme:?} {m}x{k}x{n} round {round} chunk {chunk}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn device_plans_stay_inside_their_buffers_and_meet_the_imma_conditions() {
        let st = |rs, cs| Strides { rs, cs };
        for scheme in [LimbScheme::F64x16, LimbScheme::I8x8] {
            for (m, k, n) in [(1, 1, 1), (3, 37, 5), (7, 100, 13), (16, 64, 16), (2, 33, 363)] {
                for chunk in [None, Some(7), Some(16)] {
                    let p =
                        DevicePlan::new(LimbPlan::new(scheme, m, k, n, chunk).unwrap(), st(k, 1), st(1, k)).unwrap();
                    assert_eq!(p.is_padded(), scheme == LimbScheme::I8x8 && n % 4 != 0);
                    for c in 0..p.num_chunks() {
                        let (buf, (_, kc)) = (p.buffers(c), p.plan().chunk(c));
                        let sa = p.split(c, Side::A);
                        assert_eq!(sa.outer * p.plan().limbs() * sa.inner_pad, buf.a_len);
                        let sb = p.split(c, Side::B);
                        assert_eq!(sb.outer * p.plan().limbs() * sb.inner_pad, buf.b_written);
                        assert!(sa.inner == kc || sb.inner == kc);
                        for s in 0..p.plan().limbs() {
                            let g = p.gemm(c, s);
                            let x_rows = if g.transpose_x() { g.inner } else { g.rows };
                            let x_cols = if g.transpose_x() { g.rows } else { g.inner };
                            assert!(g.x_offset + (x_cols - 1) * g.ldx + x_rows <= buf.b_len);
                            assert!(g.ldx >= x_rows && g.ldy >= g.inner && g.ldd >= g.rows);
                            assert!(g.y_offset + (g.cols - 1) * g.ldy + g.inner <= buf.a_len);
                            assert!(g.d_offset + (g.cols - 1) * g.ldd + g.rows <= buf.groups_len);
                            assert!(g.inner <= scheme.limbs() * p.plan().chunk_k().next_multiple_of(16));
                            if scheme == LimbScheme::I8x8 {
                                let d = 4 * g.d_offset as u64;
                                check_imma_conditions(&g, g.x_offset as u64, g.y_offset as u64, d).unwrap();
                            }
                        }
                        assert_eq!(p.combine(c).accumulate, c > 0);
                    }
                }
            }
        }
        assert!(DevicePlan::new(LimbPlan::new(LimbScheme::I8x8, 0, 3, 4, None).unwrap(), st(3, 1), st(4, 1)).is_err());
    }

    #[test]
    fn imma_check_names_each_broken_condition() {
        let p = DevicePlan::new(
            LimbPlan::new(LimbScheme::I8x8, 5, 40, 9, None).unwrap(),
            Strides { rs: 40, cs: 1 },
            Strides { rs: 9, cs: 1 },
        )
        .unwrap();
        let g = p.gemm(0, 1);
        assert_eq!((g.rows, g.cols, g.inner, g.ldx, g.ldd), (12, 5, 96, 384, 12));
        assert!(check_imma_conditions(&g, 0, 0, 0).is_ok());
        let err = |h: GemmGeometry, x: u64| check_imma_conditions(&h, x, 0, 0).unwrap_err();
        assert!(err(GemmGeometry { rows: 9, ..g }, 0).contains("m = 9"));
        assert!(err(GemmGeometry { inner: 90, ..g }, 0).contains("k = 90"));
        assert!(err(GemmGeometry { ldx: 390, ..g }, 0).contains("leading dimensions"));
        assert!(err(GemmGeometry { ldd: 13, rows: 12, ..g }, 0).contains("leading dimensions"));
        assert!(err(GemmGeometry { ldy: 92, ..g }, 0).contains("shorter"));
        assert!(err(g, 4).contains("16-byte aligned"));
        assert!(err(GemmGeometry { scheme: LimbScheme::F64x16, ..g }, 0).contains("TN"));
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
