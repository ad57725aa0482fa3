//! Exact ring GEMM on the GPU: C = A·B mod 2^64.
//!
//! Three paths, all exact and bit-identical to the CPU oracle:
//! * [`GemmPath::F64Limbs`]: 16-bit limbs as float64 on cuBLAS DGEMM, as the CryptGPU paper does.
//! * [`GemmPath::I8Limbs`]: signed 8-bit digits on cuBLASLt IMMA tensor cores (int32 sums).
//! * [`GemmPath::Simt`]: a tiled kernel on the 64-bit integer units (no limbs).
//!
//! Both limb paths execute a [`cryptgpu_ring::limbs::DevicePlan`] through
//! [`cryptgpu_ring::limbs::execute`]: chunking, digit layout, cuBLASLt padding and recombination
//! live in the ring crate, and the host replay of the kernels (`tests/tests/host_kernels.rs`) runs
//! the very same plans through the same driver. The exactness argument is on `DevicePlan`.
//!
//! `Auto` picks per shape; when the int8 path fails on a shape (cuBLASLt answers "not supported",
//! say) `Auto` reruns it on f64 limbs and remembers the shape ([`Int8Fallback`]).

use std::collections::HashMap;
use std::sync::Mutex;

use cryptgpu_ring::error::{invalid, Result};
use cryptgpu_ring::limbs::{
    self, ChunkBuffers, CombineStep, DevicePlan, GemmGeometry, LimbExecutor, LimbPlan, LimbScheme, SplitStep, Strides,
    UnpadStep,
};
use cudarc::cublas::{Gemm, GemmConfig};
use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, DevicePtr, DevicePtrMut};

use crate::backend::{grid, launch, CudaBackend};
use crate::error::{dev, CudaError};

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

    /// The path used for an `m x k` by `k x n` product (before any [`Int8Fallback`]).
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

/// The int8-to-f64 fallback of [`GemmPath::Auto`], per shape: after the int8 path fails on
/// `m x k x n`, `Auto` runs that shape on f64 limbs from then on (one retry, then remembered). A
/// forced path never falls back. Only errors reported synchronously (plan building, the cuBLASLt
/// heuristic, launches) are seen here.
#[derive(Debug, Default)]
pub struct Int8Fallback {
    failed: Mutex<HashMap<(usize, usize, usize), String>>,
}

impl Int8Fallback {
    fn failed(&self) -> std::sync::MutexGuard<'_, HashMap<(usize, usize, usize), String>> {
        // A poisoned map is still a valid map (entries are inserted whole).
        self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The path to run for `requested` on `m x k x n`.
    pub fn choose(&self, requested: GemmPath, m: usize, k: usize, n: usize) -> GemmPath {
        match requested.resolve(m, k, n) {
            GemmPath::I8Limbs if requested == GemmPath::Auto && self.failed().contains_key(&(m, k, n)) => {
                GemmPath::F64Limbs
            }
            p => p,
        }
    }

    /// Called when `ran` (as chosen for `requested`) failed with `error` on `m x k x n`: the path to
    /// retry on (`F64Limbs`, the shape remembered with a note) or `None` to report the error.
    pub fn on_failure(
        &self,
        requested: GemmPath,
        ran: GemmPath,
        (m, k, n): (usize, usize, usize),
        error: &str,
    ) -> Option<GemmPath> {
        if requested != GemmPath::Auto || ran != GemmPath::I8Limbs {
            return None;
        }
        self.failed().insert((m, k, n), format!("{m}x{k}x{n}: int8 path failed ({error}); ran on f64 limbs"));
        Some(GemmPath::F64Limbs)
    }

    /// One note per shape that fell back, sorted.
    pub fn notes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.failed().values().cloned().collect();
        v.sort();
        v
    }
}

/// A strided matrix operand: element (i, j) is `view[i * rs + j * cs]`.
pub(crate) struct Operand<'a> {
    pub view: &'a CudaView<'a, u64>,
    pub rs: usize,
    pub cs: usize,
}

/// `out[m x n] = a · b` over Z_2^64 on the backend's GEMM path (with the int8 fallback of `Auto`).
pub(crate) fn ring_gemm(
    be: &CudaBackend,
    (m, k, n): (usize, usize, usize),
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
    let path = be.fallback.choose(be.gemm_path, m, k, n);
    let mut run = |path| match path {
        GemmPath::F64Limbs => limb_gemm(be, LimbScheme::F64x16, (m, k, n), &a, &b, out),
        GemmPath::I8Limbs => limb_gemm(be, LimbScheme::I8x8, (m, k, n), &a, &b, out),
        _ => simt(be, (m, k, n), &a, &b, out),
    };
    match run(path) {
        Err(e) => match be.fallback.on_failure(be.gemm_path, path, (m, k, n), &e.to_string()) {
            Some(retry) => run(retry),
            None => Err(e),
        },
        ok => ok,
    }
}

fn simt(
    be: &CudaBackend,
    (m, k, n): (usize, usize, usize),
    a: &Operand<'_>,
    b: &Operand<'_>,
    out: &mut CudaViewMut<'_, u64>,
) -> Result<()> {
    let gy = m.div_ceil(64);
    if gy > 65_535 {
        return Err(invalid("matmul", format!("{m} rows exceed the SIMT kernel's grid")));
    }
    let cfg = crate::geometry::ring_gemm_simt(m, n).into();
    let s = [a.rs, a.cs, b.rs, b.cs, m, n, k].map(|v| v as u64);
    launch!(be, "ring_gemm_simt", cfg, a.view, &s[0], &s[1], b.view, &s[2], &s[3], out, &s[4], &s[5], &s[6])
}

fn limb_gemm(
    be: &CudaBackend,
    scheme: LimbScheme,
    (m, k, n): (usize, usize, usize),
    a: &Operand<'_>,
    b: &Operand<'_>,
    out: &mut CudaViewMut<'_, u64>,
) -> Result<()> {
    let plan = DevicePlan::new(
        LimbPlan::new(scheme, m, k, n, None)?,
        Strides { rs: a.rs, cs: a.cs },
        Strides { rs: b.rs, cs: b.cs },
    )?;
    let mut exec = CudaLimbs { be, a: a.view, b: b.view, out, bufs: None, acc: None };
    limbs::execute(&plan, &mut exec)
}

/// One chunk's device buffers.
enum Bufs {
    F64 { a: CudaSlice<f64>, b: CudaSlice<f64>, g: CudaSlice<f64> },
    I8 { a: CudaSlice<i8>, b: CudaSlice<i8>, g: CudaSlice<i32> },
}

/// The CUDA [`LimbExecutor`]: kernels on the backend's stream, cuBLAS DGEMM, cuBLASLt IMMA.
struct CudaLimbs<'a, 'o, 'v> {
    be: &'a CudaBackend,
    a: &'a CudaView<'a, u64>,
    b: &'a CudaView<'a, u64>,
    out: &'o mut CudaViewMut<'v, u64>,
    bufs: Option<Bufs>,
    /// The padded accumulator (`m x ldc`), allocated by the first combine, which writes it in full.
    acc: Option<CudaSlice<u64>>,
}

fn no_chunk() -> cryptgpu_ring::error::RingError {
    invalid("limb_gemm", "a limb step ran before begin_chunk")
}

impl LimbExecutor for CudaLimbs<'_, '_, '_> {
    fn begin_chunk(&mut self, scheme: LimbScheme, c: &ChunkBuffers) -> Result<()> {
        let be = self.be;
        // SAFETY (each alloc_uninit below): the splits write every element of the digit buffers
        // but B's row padding `[b_written, b_len)`, which is zeroed right here; each GEMM writes
        // its whole group plane (beta = 0) before the combine reads it. Nothing reads these
        // buffers before those writes, all on the backend's one stream.
        self.bufs = Some(match scheme {
            LimbScheme::F64x16 => Bufs::F64 {
                a: unsafe { be.alloc_uninit(c.a_len)? },
                b: unsafe { be.alloc_uninit(c.b_len)? },
                g: unsafe { be.alloc_uninit(c.groups_len)? },
            },
            LimbScheme::I8x8 => {
                let mut b = unsafe { be.alloc_uninit::<i8>(c.b_len)? };
                if c.b_written < c.b_len {
                    be.dev.stream.memset_zeros(&mut b.slice_mut(c.b_written..)).map_err(dev)?;
                }
                Bufs::I8 { a: unsafe { be.alloc_uninit(c.a_len)? }, b, g: unsafe { be.alloc_uninit(c.groups_len)? } }
            }
        });
        Ok(())
    }

    fn split(&mut self, _scheme: LimbScheme, st: &SplitStep) -> Result<()> {
        let src = match st.side {
            limbs::Side::A => self.a.slice(st.src_offset..),
            limbs::Side::B => self.b.slice(st.src_offset..),
        };
        let be = self.be;
        let g = [st.so, st.st, st.outer, st.inner, st.inner_pad].map(|v| v as u64);
        let side = st.side_code;
        match (self.bufs.as_mut().ok_or_else(no_chunk)?, st.side) {
            (Bufs::F64 { a: dst, .. }, limbs::Side::A) | (Bufs::F64 { b: dst, .. }, limbs::Side::B) => {
                launch!(be, "split_u16_f64", grid(st.outer * st.inner), &src, &g[0], &g[1], &g[2], &g[3], &side, dst)
            }
            (Bufs::I8 { a: dst, .. }, limbs::Side::A) | (Bufs::I8 { b: dst, .. }, limbs::Side::B) => {
                let n = st.outer * st.inner_pad;
                launch!(be, "split_s8", grid(n), &src, &g[0], &g[1], &g[2], &g[3], &g[4], &side, dst)
            }
        }
    }

    fn gemm(&mut self, geo: &GemmGeometry) -> Result<()> {
        let be = self.be;
        let as_int = |v: usize| {
            i32::try_from(v).map_err(|_| invalid("matmul", format!("{v} exceeds the GEMM library's 32-bit sizes")))
        };
        let d_range = geo.d_offset..geo.d_offset + geo.ldd * geo.cols;
        match self.bufs.as_mut().ok_or_else(no_chunk)? {
            Bufs::F64 { a, b, g } => {
                let op = cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_N;
                let cfg = GemmConfig {
                    transa: op,
                    transb: op,
                    m: as_int(geo.rows)?,
                    n: as_int(geo.cols)?,
                    k: as_int(geo.inner)?,
                    alpha: 1.0,
                    lda: as_int(geo.ldx)?,
                    ldb: as_int(geo.ldy)?,
                    beta: 0.0,
                    ldc: as_int(geo.ldd)?,
                };
                let blas = be.dev.blas.lock().map_err(|_| CudaError::Blas("cuBLAS handle poisoned".into()))?;
                let (x, y) = (b.slice(geo.x_offset..), a.slice(geo.y_offset..));
                let mut d = g.try_slice_mut(d_range).ok_or_else(|| invalid("matmul", "group plane out of range"))?;
                // SAFETY: the plan's geometry (DevicePlan::gemm, DevicePlan::buffers): X is rows x
                // inner with ld n inside the B limb buffer from x_offset, Y inner x cols with ld
                // 4·kc inside the A limb buffer, D exactly one rows x cols plane of the group
                // buffer; beta = 0 makes D write-only.
                unsafe { blas.gemm(cfg, &x, &y, &mut d) }.map_err(CudaError::from)?;
                Ok(())
            }
            Bufs::I8 { a, b, g } => {
                let stream = &be.dev.stream;
                let (xp, _gx) = b.device_ptr(stream);
                let (yp, _gy) = a.device_ptr(stream);
                let (dp, _gd) = g.device_ptr_mut(stream);
                let (x, y, d) = (xp + geo.x_offset as u64, yp + geo.y_offset as u64, dp + 4 * geo.d_offset as u64);
                limbs::check_imma_conditions(geo, x, y, d).map_err(|e| invalid("matmul", e))?;
                // The plan's buffers cover every element the GEMM touches (DevicePlan::buffers).
                be.dev.lt.imma(stream, geo, x, y, d)?;
                Ok(())
            }
        }
    }

    fn combine(&mut self, scheme: LimbScheme, step: &CombineStep) -> Result<()> {
        let be = self.be;
        if step.padded && self.acc.is_none() {
            // SAFETY (alloc_uninit): the first combine (accumulate = 0) writes all `plane` elements.
            self.acc = Some(unsafe { be.alloc_uninit::<u64>(step.plane)? });
        }
        let (plane, groups, acc) = (step.plane as u64, step.groups as i32, step.accumulate as i32);
        let dst: &mut CudaViewMut<'_, u64> = &mut match (&mut self.acc, step.padded) {
            (Some(buf), true) => buf.slice_mut(..),
            _ => self.out.slice_mut(..),
        };
        match (self.bufs.as_ref().ok_or_else(no_chunk)?, scheme) {
            (Bufs::F64 { g, .. }, LimbScheme::F64x16) => {
                launch!(be, "combine_f64", grid(step.plane), g, &plane, &groups, &acc, dst)
            }
            (Bufs::I8 { g, .. }, LimbScheme::I8x8) => {
                launch!(be, "combine_i32", grid(step.plane), g, &plane, &groups, &acc, dst)
            }
            _ => Err(invalid("limb_gemm", "combine of the wrong scheme")),
        }
    }

    fn unpad(&mut self, u: &UnpadStep) -> Result<()> {
        let acc = self.acc.as_ref().ok_or_else(|| invalid("limb_gemm", "unpad without a padded accumulator"))?;
        let a = [u.src_ld, 0, u.width, 0, u.rows, u.width].map(|v| v as u64);
        let out = &mut *self.out;
        launch!(self.be, "copy_rows", grid(u.rows * u.width), acc, &a[0], &a[1], out, &a[2], &a[3], &a[4], &a[5])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_falls_back_to_f64_once_per_shape_and_forced_paths_never_do() {
        let fb = Int8Fallback::default();
        let big = (512, 512, 363);
        assert_eq!(fb.choose(GemmPath::Auto, big.0, big.1, big.2), GemmPath::I8Limbs);
        assert_eq!(fb.choose(GemmPath::Auto, 8, 8, 8), GemmPath::Simt);
        // A forced int8 path, or a failure of another path, reports the error.
        assert_eq!(fb.on_failure(GemmPath::I8Limbs, GemmPath::I8Limbs, big, "not supported"), None);
        assert_eq!(fb.on_failure(GemmPath::Auto, GemmPath::Simt, big, "launch failed"), None);
        assert!(fb.notes().is_empty());
        // Auto's int8 failure: one retry on f64, and the shape remembered.
        assert_eq!(fb.on_failure(GemmPath::Auto, GemmPath::I8Limbs, big, "not supported"), Some(GemmPath::F64Limbs));
        assert_eq!(fb.choose(GemmPath::Auto, big.0, big.1, big.2), GemmPath::F64Limbs);
        assert_eq!(fb.choose(GemmPath::I8Limbs, big.0, big.1, big.2), GemmPath::I8Limbs);
        assert_eq!(fb.choose(GemmPath::Auto, 512, 512, 364), GemmPath::I8Limbs);
        // The f64 rerun failing too is reported, not retried.
        assert_eq!(fb.on_failure(GemmPath::Auto, GemmPath::F64Limbs, big, "oom"), None);
        assert_eq!(fb.notes(), ["512x512x363: int8 path failed (not supported); ran on f64 limbs"]);
    }

    #[test]
    fn paths_parse_and_resolve() {
        assert_eq!("i8".parse::<GemmPath>(), Ok(GemmPath::I8Limbs));
        assert!("int8".parse::<GemmPath>().is_err());
        assert_eq!(GemmPath::Auto.resolve(15, 4096, 4096), GemmPath::Simt);
        assert_eq!(GemmPath::Auto.resolve(128, 128, 128), GemmPath::I8Limbs);
        assert_eq!(GemmPath::F64Limbs.resolve(1, 1, 1), GemmPath::F64Limbs);
    }
}
