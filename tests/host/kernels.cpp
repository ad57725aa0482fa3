// The CUDA kernels of cryptgpu-kernels-cuda compiled for the host through the shim, with one
// C entry point per kernel: host_<kernel>(grid, block, kernel arguments...).
#include "cuda_host_shim.h"

thread_local HostDim3 threadIdx, blockIdx, blockDim, gridDim;

#include "common.cuh"
#include "elementwise.cu"
#include "bits.cu"
#include "layout.cu"
#include "conv.cu"
#include "aes.cu"

#include "limbs.cu"
// gemm.cu (tiled, shared memory) only runs on a GPU.

#define LAUNCH(grid, block, kernel, ...) host_launch(HostDim3{grid, 1, 1}, HostDim3{block, 1, 1}, kernel, __VA_ARGS__)

extern "C" {
void host_ew_binary(unsigned g, unsigned b, int op, const u64* x, const u64* y, u64* out, u64 n) { LAUNCH(g, b, ew_binary, op, x, y, out, n); }
void host_ew_unary(unsigned g, unsigned b, int op, const u64* x, u64* out, u64 n) { LAUNCH(g, b, ew_unary, op, x, out, n); }
void host_ew_scalar(unsigned g, unsigned b, int op, const u64* x, u64 s, u64* out, u64 n) { LAUNCH(g, b, ew_scalar, op, x, s, out, n); }
void host_ew_shift(unsigned g, unsigned b, int op, const u64* x, u32 bits, u64* out, u64 n) { LAUNCH(g, b, ew_shift, op, x, bits, out, n); }
void host_ew_fill(unsigned g, unsigned b, u64 v, u64* out, u64 n) { LAUNCH(g, b, ew_fill, v, out, n); }
void host_bit_extract(unsigned g, unsigned b, const u64* x, u32 bit, u64* out, u64 n) { LAUNCH(g, b, bit_extract, x, bit, out, n); }
void host_pack_bits(unsigned g, unsigned b, const u64* x, u64* out, u64 n) { LAUNCH(g, b, pack_bits, x, out, n); }
void host_unpack_bits(unsigned g, unsigned b, const u64* p, u64* out, u64 n) { LAUNCH(g, b, unpack_bits, p, out, n); }
void host_gather_strided(unsigned g, unsigned b, const u64* src, u64* out, u64 n, Dims d) { LAUNCH(g, b, gather_strided, src, out, n, d); }
void host_copy_rows(unsigned g, unsigned b, const u64* src, u64 sr, u64 so, u64* dst, u64 dr, u64 dof, u64 rows, u64 w) {
    LAUNCH(g, b, copy_rows, src, sr, so, dst, dr, dof, rows, w);
}
void host_sum_middle(unsigned g, unsigned b, const u64* src, u64* out, u64 outer, u64 len, u64 inner) { LAUNCH(g, b, sum_middle, src, out, outer, len, inner); }
void host_im2col(unsigned g, unsigned b, const u64* x, u64* cols, Window w) { LAUNCH(g, b, im2col, x, cols, w); }
void host_col2im(unsigned g, unsigned b, const u64* cols, u64* x, Window w) { LAUNCH(g, b, col2im, cols, x, w); }
void host_aes_ctr_fill(unsigned g, unsigned b, AesKey k, u64 stream, u64 counter, u64* out, u64 n) { LAUNCH(g, b, aes_ctr_fill, k, stream, counter, out, n); }
void host_split_u16_f64(unsigned g, unsigned b, const u64* src, u64 so, u64 st, u64 outer, u64 inner, int side, double* out) {
    LAUNCH(g, b, split_u16_f64, src, so, st, outer, inner, side, out);
}
void host_combine_f64(unsigned g, unsigned b, const double* c, u64 mn, int groups, int acc, u64* out) { LAUNCH(g, b, combine_f64, c, mn, groups, acc, out); }
void host_split_s8(unsigned g, unsigned b, const u64* src, u64 so, u64 st, u64 outer, u64 kc, u64 kp, int side, i8* out) {
    LAUNCH(g, b, split_s8, src, so, st, outer, kc, kp, side, out);
}
void host_combine_i32(unsigned g, unsigned b, const i32* c, u64 mn, int groups, int acc, u64* out) { LAUNCH(g, b, combine_i32, c, mn, groups, acc, out); }
}
