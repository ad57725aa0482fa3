// Ring GEMM over Z_2^64 as a tiled kernel on the 64-bit integer units (no limbs).
// Matrices are addressed through (row stride, column stride) so transposed operands need no copy.

#define SIMT_BM 64
#define SIMT_BN 64
#define SIMT_BK 16

// C[m x n] (row-major, dense) = A[m x k] * B[k x n] mod 2^64. Block 16x16 threads, each computing a
// 4x4 sub-tile of a 64x64 output tile.
extern "C" __global__ void ring_gemm_simt(const u64* __restrict__ a, u64 ars, u64 acs, const u64* __restrict__ b,
                                          u64 brs, u64 bcs, u64* __restrict__ c, u64 m, u64 n, u64 k) {
    __shared__ u64 as[SIMT_BK][SIMT_BM];
    __shared__ u64 bs[SIMT_BK][SIMT_BN];
    const u32 tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
    const u64 row0 = (u64)blockIdx.y * SIMT_BM, col0 = (u64)blockIdx.x * SIMT_BN;
    u64 acc[4][4];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = 0;
    for (u64 k0 = 0; k0 < k; k0 += SIMT_BK) {
        // 256 threads load 16x64 elements of each tile: 4 per thread.
        for (u32 e = tid; e < SIMT_BK * SIMT_BM; e += 256) {
            u32 kk = e / SIMT_BM, mm = e % SIMT_BM;
            u64 r = row0 + mm, p = k0 + kk;
            as[kk][mm] = (r < m && p < k) ? a[r * ars + p * acs] : 0;
            u64 col = col0 + mm;
            bs[kk][mm] = (col < n && p < k) ? b[p * brs + col * bcs] : 0;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < SIMT_BK; ++kk) {
            u64 av[4], bv[4];
            for (int i = 0; i < 4; ++i) av[i] = as[kk][ty + 16 * i];
            for (int j = 0; j < 4; ++j) bv[j] = bs[kk][tx + 16 * j];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i) {
        u64 r = row0 + ty + 16 * i;
        if (r >= m) continue;
        for (int j = 0; j < 4; ++j) {
            u64 col = col0 + tx + 16 * j;
            if (col < n) c[r * n + col] = acc[i][j];
        }
    }
}
