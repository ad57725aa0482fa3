//! Safe wrappers around the CUDA kernels compiled for the host (see `build.rs` and `host/`).
//!
//! Each wrapper allocates the output and launches the kernel at the geometry `kernels-cuda`
//! launches it with ([`geometry`]), or, inside [`with_small_grid`], grid-stride kernels over a
//! deliberately small and odd grid so that their loops take several turns. A launch the shim cannot
//! complete (threads waiting at a barrier others never reach) panics.

use std::cell::Cell;
use std::ffi::{c_char, CStr};

use cryptgpu_kernels_cuda::abi::{AesKey, Dims, WindowArgs};
use cryptgpu_kernels_cuda::geometry::{self, Geometry};

/// Blocks and threads per block of grid-stride launches inside [`with_small_grid`] (`pack_bits`,
/// which needs whole warps, rounds the block up to a multiple of the warp).
pub const SMALL_GRID: (u32, u32) = (3, 37);

thread_local! {
    static SMALL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the grid-stride kernels launched over [`SMALL_GRID`] on this thread.
pub fn with_small_grid<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            SMALL.set(self.0);
        }
    }
    let _reset = Reset(SMALL.replace(true));
    f()
}

/// The geometry of a grid-stride launch over `n` items: the backend's, or [`SMALL_GRID`].
fn stride(n: usize) -> Geometry {
    small_or(SMALL_GRID.1, geometry::grid_stride(n))
}

/// Inside [`with_small_grid`], [`SMALL_GRID`] blocks of `threads` threads; else `backend`.
fn small_or(threads: u32, backend: Geometry) -> Geometry {
    if SMALL.get() {
        Geometry { grid: [SMALL_GRID.0, 1, 1], block: [threads, 1, 1] }
    } else {
        backend
    }
}

/// Panics with the shim's message if a launch failed.
fn check(status: *const c_char) {
    if !status.is_null() {
        // SAFETY: the shim returns null or a NUL-terminated static string.
        panic!("host launch failed: {}", unsafe { CStr::from_ptr(status) }.to_string_lossy());
    }
}

mod ffi {
    use cryptgpu_kernels_cuda::abi::{AesKey, Dims, WindowArgs};
    use cryptgpu_kernels_cuda::geometry::Geometry;
    use std::ffi::c_char;
    type Status = *const c_char;
    extern "C" {
        pub fn host_ew_binary(g: Geometry, op: i32, x: *const u64, y: *const u64, out: *mut u64, n: u64) -> Status;
        pub fn host_ew_unary(g: Geometry, op: i32, x: *const u64, out: *mut u64, n: u64) -> Status;
        pub fn host_ew_scalar(g: Geometry, op: i32, x: *const u64, s: u64, out: *mut u64, n: u64) -> Status;
        pub fn host_ew_shift(g: Geometry, op: i32, x: *const u64, bits: u32, out: *mut u64, n: u64) -> Status;
        pub fn host_ew_fill(g: Geometry, v: u64, out: *mut u64, n: u64) -> Status;
        pub fn host_bit_extract(g: Geometry, x: *const u64, bit: u32, out: *mut u64, n: u64) -> Status;
        pub fn host_pack_bits(g: Geometry, x: *const u64, out: *mut u64, n: u64) -> Status;
        pub fn host_unpack_bits(g: Geometry, p: *const u64, out: *mut u64, n: u64) -> Status;
        pub fn host_gather_strided(g: Geometry, src: *const u64, out: *mut u64, n: u64, d: Dims) -> Status;
        pub fn host_copy_rows(
            g: Geometry,
            src: *const u64,
            sr: u64,
            so: u64,
            dst: *mut u64,
            dr: u64,
            dof: u64,
            rows: u64,
            w: u64,
        ) -> Status;
        pub fn host_sum_middle(g: Geometry, src: *const u64, out: *mut u64, outer: u64, len: u64, inner: u64)
            -> Status;
        pub fn host_im2col(g: Geometry, x: *const u64, cols: *mut u64, w: WindowArgs) -> Status;
        pub fn host_col2im(g: Geometry, cols: *const u64, x: *mut u64, w: WindowArgs) -> Status;
        pub fn host_aes_ctr_fill(g: Geometry, k: AesKey, stream: u64, counter: u64, out: *mut u64, n: u64) -> Status;
        pub fn host_ring_gemm_simt(
            g: Geometry,
            a: *const u64,
            ars: u64,
            acs: u64,
            b: *const u64,
            brs: u64,
            bcs: u64,
            c: *mut u64,
            m: u64,
            n: u64,
            k: u64,
        ) -> Status;
        pub fn host_split_u16_f64(
            g: Geometry,
            src: *const u64,
            so: u64,
            st: u64,
            outer: u64,
            inner: u64,
            side: i32,
            out: *mut f64,
        ) -> Status;
        pub fn host_combine_f64(g: Geometry, c: *const f64, mn: u64, groups: i32, acc: i32, out: *mut u64) -> Status;
        pub fn host_split_s8(
            g: Geometry,
            src: *const u64,
            so: u64,
            st: u64,
            outer: u64,
            kc: u64,
            kp: u64,
            side: i32,
            out: *mut i8,
        ) -> Status;
        pub fn host_combine_i32(g: Geometry, c: *const i32, mn: u64, groups: i32, acc: i32, out: *mut u64) -> Status;
    }
}

// SAFETY (every wrapper below): the pointers come from live slices whose lengths cover every index
// the kernel touches for the given sizes (the kernels' index arithmetic is the thing under test,
// and the sizes passed are derived from the same slices).

/// `ew_binary`.
pub fn ew_binary(op: i32, x: &[u64], y: &[u64]) -> Vec<u64> {
    assert_eq!(x.len(), y.len());
    let mut out = vec![0; x.len()];
    check(unsafe {
        ffi::host_ew_binary(stride(x.len()), op, x.as_ptr(), y.as_ptr(), out.as_mut_ptr(), x.len() as u64)
    });
    out
}

/// `ew_unary`.
pub fn ew_unary(op: i32, x: &[u64]) -> Vec<u64> {
    let mut out = vec![0; x.len()];
    check(unsafe { ffi::host_ew_unary(stride(x.len()), op, x.as_ptr(), out.as_mut_ptr(), x.len() as u64) });
    out
}

/// `ew_scalar`.
pub fn ew_scalar(op: i32, x: &[u64], s: u64) -> Vec<u64> {
    let mut out = vec![0; x.len()];
    check(unsafe { ffi::host_ew_scalar(stride(x.len()), op, x.as_ptr(), s, out.as_mut_ptr(), x.len() as u64) });
    out
}

/// `ew_shift`.
pub fn ew_shift(op: i32, x: &[u64], bits: u32) -> Vec<u64> {
    let mut out = vec![0; x.len()];
    check(unsafe { ffi::host_ew_shift(stride(x.len()), op, x.as_ptr(), bits, out.as_mut_ptr(), x.len() as u64) });
    out
}

/// `ew_fill`.
pub fn ew_fill(v: u64, n: usize) -> Vec<u64> {
    let mut out = vec![0; n];
    check(unsafe { ffi::host_ew_fill(stride(n), v, out.as_mut_ptr(), n as u64) });
    out
}

/// `bit_extract`.
pub fn bit_extract(x: &[u64], bit: u32) -> Vec<u64> {
    let mut out = vec![0; x.len()];
    check(unsafe { ffi::host_bit_extract(stride(x.len()), x.as_ptr(), bit, out.as_mut_ptr(), x.len() as u64) });
    out
}

/// `pack_bits`.
pub fn pack_bits(x: &[u64]) -> Vec<u64> {
    pack_bits_at(small_or(SMALL_GRID.1.next_multiple_of(geometry::WARP), geometry::pack_bits(x.len())), x)
}

/// `pack_bits` launched at `g`.
pub fn pack_bits_at(g: Geometry, x: &[u64]) -> Vec<u64> {
    let mut out = vec![0; x.len().div_ceil(64)];
    check(unsafe { ffi::host_pack_bits(g, x.as_ptr(), out.as_mut_ptr(), x.len() as u64) });
    out
}

/// `unpack_bits` into `n` elements.
pub fn unpack_bits(p: &[u64], n: usize) -> Vec<u64> {
    assert_eq!(p.len(), n.div_ceil(64));
    let mut out = vec![0; n];
    check(unsafe { ffi::host_unpack_bits(stride(n), p.as_ptr(), out.as_mut_ptr(), n as u64) });
    out
}

/// `gather_strided` over the output shape in `d` (the source must cover every index it reads).
pub fn gather_strided(src: &[u64], d: Dims) -> Vec<u64> {
    let n: u64 = d.shape[..d.rank as usize].iter().product();
    let max_index: u64 = (0..d.rank as usize).map(|i| (d.shape[i] - 1) * d.stride[i]).sum();
    assert!(n == 0 || (max_index as usize) < src.len());
    let mut out = vec![0; n as usize];
    check(unsafe { ffi::host_gather_strided(stride(n as usize), src.as_ptr(), out.as_mut_ptr(), n, d) });
    out
}

/// `copy_rows` into `dst`.
#[allow(clippy::too_many_arguments)]
pub fn copy_rows(
    src: &[u64],
    src_row: usize,
    src_off: usize,
    dst: &mut [u64],
    dst_row: usize,
    dst_off: usize,
    rows: usize,
    width: usize,
) {
    if rows * width > 0 {
        assert!((rows - 1) * src_row + src_off + width <= src.len());
        assert!((rows - 1) * dst_row + dst_off + width <= dst.len());
    }
    let a = [src_row, src_off, dst_row, dst_off, rows, width].map(|v| v as u64);
    check(unsafe {
        ffi::host_copy_rows(stride(rows * width), src.as_ptr(), a[0], a[1], dst.as_mut_ptr(), a[2], a[3], a[4], a[5])
    });
}

/// `sum_middle` of an `[outer, len, inner]` buffer.
pub fn sum_middle(src: &[u64], outer: usize, len: usize, inner: usize) -> Vec<u64> {
    assert_eq!(src.len(), outer * len * inner);
    let mut out = vec![0; outer * inner];
    check(unsafe {
        ffi::host_sum_middle(stride(out.len()), src.as_ptr(), out.as_mut_ptr(), outer as u64, len as u64, inner as u64)
    });
    out
}

/// `im2col` for a window.
pub fn im2col(x: &[u64], w: &cryptgpu_ring::shape::Window) -> Vec<u64> {
    assert_eq!(x.len(), w.n * w.c * w.h * w.w);
    let mut out = vec![0; w.col_rows() * w.col_cols()];
    check(unsafe { ffi::host_im2col(stride(out.len()), x.as_ptr(), out.as_mut_ptr(), WindowArgs::from(w)) });
    out
}

/// `col2im` for a window.
pub fn col2im(cols: &[u64], w: &cryptgpu_ring::shape::Window) -> Vec<u64> {
    assert_eq!(cols.len(), w.col_rows() * w.col_cols());
    let mut out = vec![0; w.n * w.c * w.h * w.w];
    check(unsafe { ffi::host_col2im(stride(out.len()), cols.as_ptr(), out.as_mut_ptr(), WindowArgs::from(w)) });
    out
}

/// `aes_ctr_fill` of `n` elements.
pub fn aes_ctr_fill(key: &cryptgpu_ring::prg::Key, stream: u64, counter: u64, n: usize) -> Vec<u64> {
    let mut out = vec![0; n];
    let g = small_or(SMALL_GRID.1, geometry::aes_ctr_fill(n));
    check(unsafe { ffi::host_aes_ctr_fill(g, AesKey::from(key), stream, counter, out.as_mut_ptr(), n as u64) });
    out
}

/// `ring_gemm_simt`: the row-major `m x n` product of `a` (element (i, p) at `a[i*ars + p*acs]`)
/// and `b` (element (p, j) at `b[p*brs + j*bcs]`), always at the backend's geometry.
pub fn ring_gemm_simt(
    m: usize,
    k: usize,
    n: usize,
    a: &[u64],
    (ars, acs): (usize, usize),
    b: &[u64],
    (brs, bcs): (usize, usize),
) -> Vec<u64> {
    if m * k * n > 0 {
        assert!((m - 1) * ars + (k - 1) * acs < a.len());
        assert!((k - 1) * brs + (n - 1) * bcs < b.len());
    }
    let mut c = vec![0; m * n];
    let s = [ars, acs, brs, bcs, m, n, k].map(|v| v as u64);
    let g = geometry::ring_gemm_simt(m, n);
    check(unsafe {
        ffi::host_ring_gemm_simt(g, a.as_ptr(), s[0], s[1], b.as_ptr(), s[2], s[3], c.as_mut_ptr(), s[4], s[5], s[6])
    });
    c
}

/// `split_u16_f64`: `side` 0 gives `[outer][4][inner]`, side 1 `[4 (highest first)][outer][inner]`.
pub fn split_u16_f64(src: &[u64], so: usize, st: usize, outer: usize, inner: usize, side: i32) -> Vec<f64> {
    if outer * inner > 0 {
        assert!((outer - 1) * so + (inner - 1) * st < src.len());
    }
    let mut out = vec![0.0; 4 * outer * inner];
    check(unsafe {
        ffi::host_split_u16_f64(
            stride(outer * inner),
            src.as_ptr(),
            so as u64,
            st as u64,
            outer as u64,
            inner as u64,
            side,
            out.as_mut_ptr(),
        )
    });
    out
}

/// `combine_f64` of `groups` planes of `mn` values into `out`.
pub fn combine_f64(c: &[f64], groups: usize, accumulate: bool, out: &mut [u64]) {
    assert_eq!(c.len(), groups * out.len());
    let g = stride(out.len());
    check(unsafe {
        ffi::host_combine_f64(g, c.as_ptr(), out.len() as u64, groups as i32, accumulate as i32, out.as_mut_ptr())
    });
}

/// `split_s8`: `side` 0 gives `[outer][8][kp]`, side 1 `[outer][8 (highest first)][kp]`.
#[allow(clippy::too_many_arguments)]
pub fn split_s8(src: &[u64], so: usize, st: usize, outer: usize, kc: usize, kp: usize, side: i32) -> Vec<i8> {
    if outer * kc > 0 {
        assert!((outer - 1) * so + (kc - 1) * st < src.len());
    }
    let mut out = vec![0i8; outer * 8 * kp];
    check(unsafe {
        ffi::host_split_s8(
            stride(outer * kp),
            src.as_ptr(),
            so as u64,
            st as u64,
            outer as u64,
            kc as u64,
            kp as u64,
            side,
            out.as_mut_ptr(),
        )
    });
    out
}

/// `combine_i32` of `groups` planes of `mn` values into `out`.
pub fn combine_i32(c: &[i32], groups: usize, accumulate: bool, out: &mut [u64]) {
    assert_eq!(c.len(), groups * out.len());
    let g = stride(out.len());
    check(unsafe {
        ffi::host_combine_i32(g, c.as_ptr(), out.len() as u64, groups as i32, accumulate as i32, out.as_mut_ptr())
    });
}
