//! Safe wrappers around the CUDA kernels compiled for the host (see `build.rs` and `host/`).
//!
//! Each wrapper allocates the output, launches the kernel as loops over a deliberately small and
//! odd grid (so grid-stride loops take several turns) and returns the result.

use cryptgpu_kernels_cuda::abi::{AesKey, Dims, WindowArgs};

/// Blocks and threads per block of host launches.
pub const GRID: (u32, u32) = (3, 37);

mod ffi {
    use cryptgpu_kernels_cuda::abi::{AesKey, Dims, WindowArgs};
    extern "C" {
        pub fn host_ew_binary(g: u32, b: u32, op: i32, x: *const u64, y: *const u64, out: *mut u64, n: u64);
        pub fn host_ew_unary(g: u32, b: u32, op: i32, x: *const u64, out: *mut u64, n: u64);
        pub fn host_ew_scalar(g: u32, b: u32, op: i32, x: *const u64, s: u64, out: *mut u64, n: u64);
        pub fn host_ew_shift(g: u32, b: u32, op: i32, x: *const u64, bits: u32, out: *mut u64, n: u64);
        pub fn host_ew_fill(g: u32, b: u32, v: u64, out: *mut u64, n: u64);
        pub fn host_bit_extract(g: u32, b: u32, x: *const u64, bit: u32, out: *mut u64, n: u64);
        pub fn host_pack_bits(g: u32, b: u32, x: *const u64, out: *mut u64, n: u64);
        pub fn host_unpack_bits(g: u32, b: u32, p: *const u64, out: *mut u64, n: u64);
        pub fn host_gather_strided(g: u32, b: u32, src: *const u64, out: *mut u64, n: u64, d: Dims);
        pub fn host_copy_rows(
            g: u32,
            b: u32,
            src: *const u64,
            sr: u64,
            so: u64,
            dst: *mut u64,
            dr: u64,
            dof: u64,
            rows: u64,
            w: u64,
        );
        pub fn host_sum_middle(g: u32, b: u32, src: *const u64, out: *mut u64, outer: u64, len: u64, inner: u64);
        pub fn host_im2col(g: u32, b: u32, x: *const u64, cols: *mut u64, w: WindowArgs);
        pub fn host_col2im(g: u32, b: u32, cols: *const u64, x: *mut u64, w: WindowArgs);
        pub fn host_aes_ctr_fill(g: u32, b: u32, k: AesKey, stream: u64, counter: u64, out: *mut u64, n: u64);
        pub fn host_split_u16_f64(
            g: u32,
            b: u32,
            src: *const u64,
            so: u64,
            st: u64,
            outer: u64,
            inner: u64,
            side: i32,
            out: *mut f64,
        );
        pub fn host_combine_f64(g: u32, b: u32, c: *const f64, mn: u64, groups: i32, acc: i32, out: *mut u64);
        pub fn host_split_s8(
            g: u32,
            b: u32,
            src: *const u64,
            so: u64,
            st: u64,
            outer: u64,
            kc: u64,
            kp: u64,
            side: i32,
            out: *mut i8,
        );
        pub fn host_combine_i32(g: u32, b: u32, c: *const i32, mn: u64, groups: i32, acc: i32, out: *mut u64);
    }
}

const G: u32 = GRID.0;
const B: u32 = GRID.1;

// SAFETY (every wrapper below): the pointers come from live slices whose lengths cover every index
// the kernel touches for the given sizes (the kernels' index arithmetic is the thing under test,
// and the sizes passed are derived from the same slices).

/// `ew_binary`.
pub fn ew_binary(op: i32, x: &[u64], y: &[u64]) -> Vec<u64> {
    assert_eq!(x.len(), y.len());
    let mut out = vec![0; x.len()];
    unsafe { ffi::host_ew_binary(G, B, op, x.as_ptr(), y.as_ptr(), out.as_mut_ptr(), x.len() as u64) };
    out
}

/// `ew_unary`.
pub fn ew_unary(op: i32, x: &[u64]) -> Vec<u64> {
    let mut out = vec![0; x.len()];
    unsafe { ffi::host_ew_unary(G, B, op, x.as_ptr(), out.as_mut_ptr(), x.len() as u64) };
    out
}

/// `ew_scalar`.
pub fn ew_scalar(op: i32, x: &[u64], s: u64) -> Vec<u64> {
    let mut out = vec![0; x.len()];
    unsafe { ffi::host_ew_scalar(G, B, op, x.as_ptr(), s, out.as_mut_ptr(), x.len() as u64) };
    out
}

/// `ew_shift`.
pub fn ew_shift(op: i32, x: &[u64], bits: u32) -> Vec<u64> {
    let mut out = vec![0; x.len()];
    unsafe { ffi::host_ew_shift(G, B, op, x.as_ptr(), bits, out.as_mut_ptr(), x.len() as u64) };
    out
}

/// `ew_fill`.
pub fn ew_fill(v: u64, n: usize) -> Vec<u64> {
    let mut out = vec![0; n];
    unsafe { ffi::host_ew_fill(G, B, v, out.as_mut_ptr(), n as u64) };
    out
}

/// `bit_extract`.
pub fn bit_extract(x: &[u64], bit: u32) -> Vec<u64> {
    let mut out = vec![0; x.len()];
    unsafe { ffi::host_bit_extract(G, B, x.as_ptr(), bit, out.as_mut_ptr(), x.len() as u64) };
    out
}

/// `pack_bits`.
pub fn pack_bits(x: &[u64]) -> Vec<u64> {
    let mut out = vec![0; x.len().div_ceil(64)];
    unsafe { ffi::host_pack_bits(G, B, x.as_ptr(), out.as_mut_ptr(), x.len() as u64) };
    out
}

/// `unpack_bits` into `n` elements.
pub fn unpack_bits(p: &[u64], n: usize) -> Vec<u64> {
    assert_eq!(p.len(), n.div_ceil(64));
    let mut out = vec![0; n];
    unsafe { ffi::host_unpack_bits(G, B, p.as_ptr(), out.as_mut_ptr(), n as u64) };
    out
}

/// `gather_strided` over the output shape in `d` (the source must cover every index it reads).
pub fn gather_strided(src: &[u64], d: Dims) -> Vec<u64> {
    let n: u64 = d.shape[..d.rank as usize].iter().product();
    let max_index: u64 = (0..d.rank as usize).map(|i| (d.shape[i] - 1) * d.stride[i]).sum();
    assert!(n == 0 || (max_index as usize) < src.len());
    let mut out = vec![0; n as usize];
    unsafe { ffi::host_gather_strided(G, B, src.as_ptr(), out.as_mut_ptr(), n, d) };
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
    unsafe { ffi::host_copy_rows(G, B, src.as_ptr(), a[0], a[1], dst.as_mut_ptr(), a[2], a[3], a[4], a[5]) };
}

/// `sum_middle` of an `[outer, len, inner]` buffer.
pub fn sum_middle(src: &[u64], outer: usize, len: usize, inner: usize) -> Vec<u64> {
    assert_eq!(src.len(), outer * len * inner);
    let mut out = vec![0; outer * inner];
    unsafe { ffi::host_sum_middle(G, B, src.as_ptr(), out.as_mut_ptr(), outer as u64, len as u64, inner as u64) };
    out
}

/// `im2col` for a window.
pub fn im2col(x: &[u64], w: &cryptgpu_ring::shape::Window) -> Vec<u64> {
    assert_eq!(x.len(), w.n * w.c * w.h * w.w);
    let mut out = vec![0; w.col_rows() * w.col_cols()];
    unsafe { ffi::host_im2col(G, B, x.as_ptr(), out.as_mut_ptr(), WindowArgs::from(w)) };
    out
}

/// `col2im` for a window.
pub fn col2im(cols: &[u64], w: &cryptgpu_ring::shape::Window) -> Vec<u64> {
    assert_eq!(cols.len(), w.col_rows() * w.col_cols());
    let mut out = vec![0; w.n * w.c * w.h * w.w];
    unsafe { ffi::host_col2im(G, B, cols.as_ptr(), out.as_mut_ptr(), WindowArgs::from(w)) };
    out
}

/// `aes_ctr_fill` of `n` elements (launched over `ceil(n/2)` blocks, as the backend does).
pub fn aes_ctr_fill(key: &cryptgpu_ring::prg::Key, stream: u64, counter: u64, n: usize) -> Vec<u64> {
    let mut out = vec![0; n];
    unsafe { ffi::host_aes_ctr_fill(G, B, AesKey::from(key), stream, counter, out.as_mut_ptr(), n as u64) };
    out
}

/// `split_u16_f64`: `side` 0 gives `[outer][4][inner]`, side 1 `[4 (highest first)][outer][inner]`.
pub fn split_u16_f64(src: &[u64], so: usize, st: usize, outer: usize, inner: usize, side: i32) -> Vec<f64> {
    if outer * inner > 0 {
        assert!((outer - 1) * so + (inner - 1) * st < src.len());
    }
    let mut out = vec![0.0; 4 * outer * inner];
    unsafe {
        ffi::host_split_u16_f64(
            G,
            B,
            src.as_ptr(),
            so as u64,
            st as u64,
            outer as u64,
            inner as u64,
            side,
            out.as_mut_ptr(),
        )
    };
    out
}

/// `combine_f64` of `groups` planes of `mn` values into `out`.
pub fn combine_f64(c: &[f64], groups: usize, accumulate: bool, out: &mut [u64]) {
    assert_eq!(c.len(), groups * out.len());
    unsafe {
        ffi::host_combine_f64(G, B, c.as_ptr(), out.len() as u64, groups as i32, accumulate as i32, out.as_mut_ptr())
    };
}

/// `split_s8`: `side` 0 gives `[outer][8][kp]`, side 1 `[outer][8 (highest first)][kp]`.
#[allow(clippy::too_many_arguments)]
pub fn split_s8(src: &[u64], so: usize, st: usize, outer: usize, kc: usize, kp: usize, side: i32) -> Vec<i8> {
    if outer * kc > 0 {
        assert!((outer - 1) * so + (kc - 1) * st < src.len());
    }
    let mut out = vec![0i8; outer * 8 * kp];
    unsafe {
        ffi::host_split_s8(
            G,
            B,
            src.as_ptr(),
            so as u64,
            st as u64,
            outer as u64,
            kc as u64,
            kp as u64,
            side,
            out.as_mut_ptr(),
        )
    };
    out
}

/// `combine_i32` of `groups` planes of `mn` values into `out`.
pub fn combine_i32(c: &[i32], groups: usize, accumulate: bool, out: &mut [u64]) {
    assert_eq!(c.len(), groups * out.len());
    unsafe {
        ffi::host_combine_i32(G, B, c.as_ptr(), out.len() as u64, groups as i32, accumulate as i32, out.as_mut_ptr())
    };
}
