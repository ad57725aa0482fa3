// Limb split and recombination kernels of the exact limb-embedding ring GEMMs (see
// cryptgpu_ring::limbs for the math): 16-bit limbs as float64 for cuBLAS DGEMM, and signed 8-bit
// digits for cuBLASLt IMMA (int8 x int8 -> int32). Sources are addressed through strides so
// transposed operands need no copy.

// 16-bit limbs as float64. Reads src(o, t) = src[o * so + t * st] for o < outer, t < inner.
// side 0 (left operand, rows = outer = m, inner = K): out[(o * 4 + l) * inner + t]   ([m][4][K]).
// side 1 (right operand, outer = K rows, inner = n): out[((3 - l) * outer + o) * inner + t]
//        ([4 limbs, highest first][K][n]), so limbs s..0 are contiguous rows.
extern "C" __global__ void split_u16_f64(const u64* __restrict__ src, u64 so, u64 st, u64 outer, u64 inner, int side,
                                         double* __restrict__ out) {
    u64 n = outer * inner;
    GRID_STRIDE_LOOP(i, n) {
        u64 o = i / inner, t = i - o * inner;
        u64 v = src[o * so + t * st];
        for (int l = 0; l < 4; ++l) {
            double limb = (double)((v >> (16 * l)) & 0xffffull);
            u64 idx = side == 0 ? (o * 4 + l) * inner + t : ((u64)(3 - l) * outer + o) * inner + t;
            out[idx] = limb;
        }
    }
}

// out[i] (+)= sum_{s < groups} (u64)c[s * mn + i] << 16 s. Every c value is an exact integer < 2^53.
extern "C" __global__ void combine_f64(const double* __restrict__ c, u64 mn, int groups, int accumulate,
                                       u64* __restrict__ out) {
    GRID_STRIDE_LOOP(i, mn) {
        u64 acc = accumulate ? out[i] : 0;
        for (int s = 0; s < groups; ++s) acc += ((u64)c[(u64)s * mn + i]) << (16 * s);
        out[i] = acc;
    }
}

// Signed 8-bit digits: v = sum_l d_l 2^(8 l) mod 2^64 with d_l in [-128, 127] (a byte >= 128 becomes
// byte - 256 and carries 1 into the next byte). Reads src(o, t) = src[o * so + t * st] for t < kc and
// writes zeros for kc <= t < kp (kp a multiple of 16).
// side 0: out[(o * 8 + l) * kp + t]; side 1: out[(o * 8 + 7 - l) * kp + t] (digits highest first).
extern "C" __global__ void split_s8(const u64* __restrict__ src, u64 so, u64 st, u64 outer, u64 kc, u64 kp, int side,
                                    i8* __restrict__ out) {
    u64 n = outer * kp;
    GRID_STRIDE_LOOP(i, n) {
        u64 o = i / kp, t = i - o * kp;
        u64 v = t < kc ? src[o * so + t * st] : 0;
        u32 carry = 0;
        for (int l = 0; l < 8; ++l) {
            u32 byte = (u32)((v >> (8 * l)) & 0xffull) + carry;
            int d = (int)byte;
            carry = 0;
            if (d >= 128) {
                d -= 256;
                carry = 1;
            }
            u64 plane = side == 0 ? (u64)l : (u64)(7 - l);
            out[(o * 8 + plane) * kp + t] = (i8)d;
        }
    }
}

// out[i] (+)= sum_{s < groups} (u64)(i64)c[s * mn + i] << 8 s.
extern "C" __global__ void combine_i32(const i32* __restrict__ c, u64 mn, int groups, int accumulate,
                                       u64* __restrict__ out) {
    GRID_STRIDE_LOOP(i, mn) {
        u64 acc = accumulate ? out[i] : 0;
        for (int s = 0; s < groups; ++s) acc += ((u64)(i64)c[(u64)s * mn + i]) << (8 * s);
        out[i] = acc;
    }
}
