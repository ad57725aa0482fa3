// The CUDA kernels of cryptgpu-kernels-cuda compiled for the host through the shim, with one
// C entry point per kernel: host_<kernel>(geometry, kernel arguments...), returning null or why the
// launch failed.
#include "cuda_host_shim.h"

#include "common.cuh"
#include "elementwise.cu"
#include "bits.cu"
#include "layout.cu"
#include "conv.cu"
#include "aes.cu"
#include "gemm.cu"
#include "limbs.cu"

typedef const char* Status;
#define LAUNCH(kernel, ...) return host_launch(g, kernel, __VA_ARGS__)

extern "C" {
Status host_ew_binary(HostGeometry g, int op, const u64* x, const u64* y, u64* out, u64 n) { LAUNCH(ew_binary, op, x, y, out, n); }
Status host_ew_unary(HostGeometry g, int op, const u64* x, u64* out, u64 n) { LAUNCH(ew_unary, op, x, out, n); }
Status host_ew_scalar(HostGeometry g, int op, const u64* x, u64 s, u64* out, u64 n) { LAUNCH(ew_scalar, op, x, s, out, n); }
Status host_ew_shift(HostGeometry g, int op, const u64* x, u32 bits, u64* out, u64 n) { LAUNCH(ew_shift, op, x, bits, out, n); }
Status host_ew_fill(HostGeometry g, u64 v, u64* out, u64 n) { LAUNCH(ew_fill, v, out, n); }
Status host_bit_extract(HostGeometry g, const u64* x, u32 bit, u64* out, u64 n) { LAUNCH(bit_extract, x, bit, out, n); }
Status host_pack_bits(HostGeometry g, const u64* x, u64* out, u64 n) { LAUNCH(pack_bits, x, out, n); }
Status host_unpack_bits(HostGeometry g, const u64* p, u64* out, u64 n) { LAUNCH(unpack_bits, p, out, n); }
Status host_gather_strided(HostGeometry g, const u64* src, u64* out, u64 n, Dims d) { LAUNCH(gather_strided, src, out, n, d); }
Status host_copy_rows(HostGeometry g, const u64* src, u64 sr, u64 so, u64* dst, u64 dr, u64 dof, u64 rows, u64 w) {
    LAUNCH(copy_rows, src, sr, so, dst, dr, dof, rows, w);
}
Status host_sum_middle(HostGeometry g, const u64* src, u64* out, u64 outer, u64 len, u64 inner) { LAUNCH(sum_middle, src, out, outer, len, inner); }
Status host_im2col(HostGeometry g, const u64* x, u64* cols, Window w) { LAUNCH(im2col, x, cols, w); }
Status host_col2im(HostGeometry g, const u64* cols, u64* x, Window w) { LAUNCH(col2im, cols, x, w); }
Status host_aes_ctr_fill(HostGeometry g, AesKey k, u64 stream, u64 counter, u64* out, u64 n) { LAUNCH(aes_ctr_fill, k, stream, counter, out, n); }
Status host_ring_gemm_simt(HostGeometry g, const u64* a, u64 ars, u64 acs, const u64* b, u64 brs, u64 bcs, u64* c, u64 m, u64 n, u64 k) {
    LAUNCH(ring_gemm_simt, a, ars, acs, b, brs, bcs, c, m, n, k);
}
Status host_split_u16_f64(HostGeometry g, const u64* src, u64 so, u64 st, u64 outer, u64 inner, int side, double* out) {
    LAUNCH(split_u16_f64, src, so, st, outer, inner, side, out);
}
Status host_combine_f64(HostGeometry g, const double* c, u64 mn, int groups, int acc, u64* out) { LAUNCH(combine_f64, c, mn, groups, acc, out); }
Status host_split_s8(HostGeometry g, const u64* src, u64 so, u64 st, u64 outer, u64 kc, u64 kp, int side, i8* out) {
    LAUNCH(split_s8, src, so, st, outer, kc, kp, side, out);
}
Status host_combine_i32(HostGeometry g, const i32* c, u64 mn, int groups, int acc, u64* out) { LAUNCH(combine_i32, c, mn, groups, acc, out); }
}
