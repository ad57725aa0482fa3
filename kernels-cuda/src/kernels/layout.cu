// Layout operations: strided gathers (permute, broadcast), row-block copies (slice, concat),
// and sums over the middle axis of an [outer, len, inner] view.

// out[idx] = src[sum_d idx_d * stride_d] for every multi-index idx of dims.shape.
extern "C" __global__ void gather_strided(const u64* __restrict__ src, u64* __restrict__ out, u64 n, Dims dims) {
    GRID_STRIDE_LOOP(i, n) {
        u64 rem = i, off = 0;
        for (int d = (int)dims.rank - 1; d >= 0; --d) {
            u64 q = rem / dims.shape[d];
            off += (rem - q * dims.shape[d]) * dims.stride[d];
            rem = q;
        }
        out[i] = src[off];
    }
}

// Copies `rows` rows of `width` elements: dst[r*dst_row + dst_off + t] = src[r*src_row + src_off + t].
extern "C" __global__ void copy_rows(const u64* __restrict__ src, u64 src_row, u64 src_off, u64* __restrict__ dst,
                                     u64 dst_row, u64 dst_off, u64 rows, u64 width) {
    u64 n = rows * width;
    GRID_STRIDE_LOOP(i, n) {
        u64 r = i / width, t = i - r * width;
        dst[r * dst_row + dst_off + t] = src[r * src_row + src_off + t];
    }
}

// out[o, t] = sum_l src[o, l, t] for an [outer, len, inner] source.
extern "C" __global__ void sum_middle(const u64* __restrict__ src, u64* __restrict__ out, u64 outer, u64 len,
                                      u64 inner) {
    u64 n = outer * inner;
    GRID_STRIDE_LOOP(i, n) {
        u64 o = i / inner, t = i - o * inner;
        const u64* p = src + o * len * inner + t;
        u64 acc = 0;
        for (u64 l = 0; l < len; ++l) acc += p[l * inner];
        out[i] = acc;
    }
}
