//! Exact ring GEMM on the GPU: C = A·B mod 2^64.
//!
//! Three paths, all exact and bit-identical to the CPU oracle:
//! * [`GemmPath::F64Limbs`]: 16-bit limbs as float64 on cuBLAS DGEMM, as the CryptGPU paper does.
//!   Limb pairs with the same shift `s = i + j` (i + j <= 3) are concatenated along K, so the 10 limb
//!   products run as 4 DGEMMs of inner dimension `(s+1)·K`; each entry is an integer below
//!   `(s+1)·K·(2^16-1)^2`, exact while that is at most 2^53, so K is cut into chunks of at most
//!   [`F64_MAX_KC`].
//! * [`GemmPath::I8Limbs`]: signed 8-bit digits (d in [-128, 127], x = Σ d_l 2^(8l) mod 2^64) on
//!   cuBLASLt IMMA tensor cores with int32 accumulation: the 36 digit products with i + j <= 7 run
//!   as 8 GEMMs (one per shift s, inner dimension `(s+1)·K`). Chunks of at most [`I8_MAX_KC`] keep
//!   every int32 sum from overflowing (|d·e| <= 2^14, and 8·K_c·2^14 < 2^31), so no assumption about
//!   the hardware's overflow behaviour is needed.
//! * [`GemmPath::Simt`]: a tiled kernel on the 64-bit integer units (no limbs).
//!
//! `Auto` picks per shape. The CPU crate implements the same limb math for testing without a GPU.

use cryptgpu_ring::error::{invalid, Result};
use cryptgpu_ring::limbs;
use cudarc::cublas::{Gemm, GemmConfig};
use cudarc::driver::{CudaView, CudaViewMut, DevicePtr, DevicePtrMut, LaunchConfig};

use crate::backend::{grid, launch, CudaBackend};
use crate::error::{dev, CudaError};

/// Largest K chunk of the float64 path: `4·K·(2^16-1)^2 <= 2^53` for the widest group (s = 3).
pub const F64_MAX_KC: usize = limbs::F64_MAX_CHUNK_K;
/// Largest K chunk of the int8 path, a multiple of 16 with `8·K·2^14 <= 2^31 - 1`: no group's int32
/// sum can overflow, so exactness does not depend on the hardware wrapping (which would allow
/// `limbs::I8_MAX_CHUNK_K`, twice as long, once verified on a GPU).
pub const I8_MAX_KC: usize = limbs::I32_MAX_INNER / 8 / limbs::CHUNK_ALIGN * limbs::CHUNK_ALIGN;

/// Which ring GEMM implementation runs matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GemmPath {
    /// Choose per shape.
    Auto,
    /// 16-bit limbs on cuBLAS DGEMM.
    F64Limbs,
    /// Signed 8-bit digits on cuBLASLt int8 tensor cores.
    I8Limbs,
    /// The tiled 64-bit integer kernel.
    Simt,
}

impl GemmPath {
    /// Reads `CRYPTGPU_GEMM` (`auto`, `f64`, `i8` or `simt`; unset means `auto`).
    pub fn from_env() -> Result<Self, CudaError> {
        match std::env::var("CRYPTGPU_GEMM") {
            Err(_) => Ok(GemmPath::Auto),
            Ok(v) => v.parse().map_err(|e: String| CudaError::Driver(e)),
        }
    }

    /// The path used for an `m x k` by `k x n` product.
    pub fn resolve(self, m: usize, k: usize, n: usize) -> GemmPath {
        match self {
            // Limb splitting costs a few passes over the operands: small products stay on SIMT.
            GemmPath::Auto if (m as u128) * (k as u128) * (n as u128) < (1 << 21) || m < 16 || n < 16 => GemmPath::Simt,
            GemmPath::Auto => GemmPath::I8Limbs,
            p => p,
        }
    }
}

impl std::str::FromStr for GemmPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(GemmPath::Auto),
            "f64" => Ok(GemmPath::F64Limbs),
            "i8" => Ok(GemmPath::I8Limbs),
            "simt" => Ok(GemmPath::Simt),
            other => Err(format!("unknown GEMM path {other:?} (expected auto, f64, i8 or simt)")),
        }
    }
}

/// A strided matrix operand: element (i, j) is `view[i * rs + j * cs]`.
pub(crate) struct Operand<'a> {
    pub view: &'a CudaView<'a, u64>,
    pub rs: usize,
    pub cs: usize,
}

fn as_int(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| invalid("matmul", format!("{what} = {v} exceeds the GEMM library's 32-bit sizes")))
}

/// `out[m x n] = a · b` over Z_2^64 on the backend's GEMM path.
pub(crate) fn ring_gemm(
    be: &CudaBackend,
    m: usize,
    k: usize,
    n: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    out: &mut CudaViewMut<'_, u64>,
) -> Result<()> {
    let mn = m * n;
    if mn == 0 {
        return Ok(());
    }
    if k == 0 {
        let mn64 = mn as u64;
        return launch!(be, "ew_fill", grid(mn), &0u64, out, &mn64);
    }
    match be.gemm_path.resolve(m, k, n) {
        GemmPath::F64Limbs => f64_limbs(be, m, k, n, a, b, out),
        GemmPath::I8Limbs => i8_limbs(be, m, k, n, a, b, out),
        _ => simt(be, m, k, n, a, b, out),
    }
}

fn simt(
    be: &CudaBackend,
    m: usize,
    k: usize,
    n: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    out: &mut CudaViewMut<'_, u64>,
) -> Result<()> {
    let gy = m.div_ceil(64);
    if gy > 65_535 {
        return Err(invalid("matmul", format!("{m} rows exceed the SIMT kernel's grid")));
    }
    let cfg =
        LaunchConfig { grid_dim: (n.div_ceil(64) as u32, gy as u32, 1), block_dim: (16, 16, 1), shared_mem_bytes: 0 };
    let s = [a.rs, a.cs, b.rs, b.cs, m, n, k].map(|v| v as u64);
    launch!(be, "ring_gemm_simt", cfg, a.view, &s[0], &s[1], b.view, &s[2], &s[3], out, &s[4], &s[5], &s[6])
}

fn f64_limbs(
    be: &CudaBackend,
    m: usize,
    k: usize,
    n: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    out: &mut CudaViewMut<'_, u64>,
) -> Result<()> {
    let (mi, ni) = (as_int("m", m)?, as_int("n", n)?);
    let mn = m * n;
    let blas = be.dev.blas.lock().map_err(|_| CudaError::Blas("cuBLAS handle poisoned".into()))?;
    for (chunk, k0) in (0..k).step_by(F64_MAX_KC).enumerate() {
        let kc = F64_MAX_KC.min(k - k0);
        let a_sub = a.view.slice(k0 * a.cs..);
        let b_sub = b.view.slice(k0 * b.rs..);
        let mut al = be.alloc::<f64>(m * 4 * kc)?;
        let mut bl = be.alloc::<f64>(4 * kc * n)?;
        let g = [a.rs, a.cs, m, kc, b.rs, b.cs, kc, n].map(|v| v as u64);
        launch!(be, "split_u16_f64", grid(m * kc), &a_sub, &g[0], &g[1], &g[2], &g[3], &0i32, &mut al)?;
        launch!(be, "split_u16_f64", grid(kc * n), &b_sub, &g[4], &g[5], &g[6], &g[7], &1i32, &mut bl)?;
        let mut c = be.alloc::<f64>(4 * mn)?;
        for s in 0..4 {
            let cfg = GemmConfig {
                transa: cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_N,
                transb: cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_N,
                m: ni,
                n: mi,
                k: as_int("k", (s + 1) * kc)?,
                alpha: 1.0,
                lda: ni,
                ldb: as_int("k", 4 * kc)?,
                beta: 0.0,
                ldc: ni,
            };
            let bview = bl.slice((3 - s) * kc * n..);
            let mut cview = c.slice_mut(s * mn..(s + 1) * mn);
            // SAFETY: row-major C_s[m x n] = A_s[m x (s+1)kc] · B_s[(s+1)kc x n] computed as the
            // column-major C_s^T = B_s^T · A_s^T; A_s is the first (s+1)kc columns of the [m][4kc]
            // limb buffer (ld 4kc), B_s the last (s+1)kc rows of the [4kc][n] buffer (ld n).
            unsafe { blas.gemm(cfg, &bview, &al, &mut cview) }.map_err(CudaError::from)?;
        }
        let (mn64, acc) = (mn as u64, (chunk > 0) as i32);
        launch!(be, "combine_f64", grid(mn), &c, &mn64, &4i32, &acc, &mut *out)?;
    }
    Ok(())
}

fn i8_limbs(
    be: &CudaBackend,
    m: usize,
    k: usize,
    n: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    out: &mut CudaViewMut<'_, u64>,
) -> Result<()> {
    let mn = m * n;
    for (chunk, k0) in (0..k).step_by(I8_MAX_KC).enumerate() {
        let kc = I8_MAX_KC.min(k - k0);
        let kp = kc.next_multiple_of(16);
        let a_sub = a.view.slice(k0 * a.cs..);
        let b_sub = b.view.slice(k0 * b.rs..);
        let mut a8 = be.alloc::<i8>(m * 8 * kp)?;
        let mut b8 = be.alloc::<i8>(n * 8 * kp)?;
        let g = [a.rs, a.cs, m, b.cs, b.rs, n, kc, kp].map(|v| v as u64);
        launch!(be, "split_s8", grid(m * kp), &a_sub, &g[0], &g[1], &g[2], &g[6], &g[7], &0i32, &mut a8)?;
        launch!(be, "split_s8", grid(n * kp), &b_sub, &g[3], &g[4], &g[5], &g[6], &g[7], &1i32, &mut b8)?;
        let mut c = be.alloc::<i32>(8 * mn)?;
        for s in 0..8 {
            let stream = &be.dev.stream;
            let (xp, _gx) = b8.device_ptr(stream);
            let (yp, _gy) = a8.device_ptr(stream);
            let mut cview = c.slice_mut(s * mn..(s + 1) * mn);
            let (dp, _gd) = cview.device_ptr_mut(stream);
            be.dev.lt.imma(
                stream,
                crate::device::Imma { rows: n, cols: m, inner: (s + 1) * kp, ld: 8 * kp },
                xp + ((7 - s) * kp) as u64,
                yp,
                dp,
            )?;
        }
        let (mn64, acc) = (mn as u64, (chunk > 0) as i32);
        launch!(be, "combine_i32", grid(mn), &c, &mn64, &8i32, &acc, &mut *out)?;
    }
    Ok(())
}
