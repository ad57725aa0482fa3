// Bit extraction and packing.

extern "C" __global__ void bit_extract(const u64* __restrict__ a, u32 bit, u64* __restrict__ out, u64 n) {
    GRID_STRIDE_LOOP(i, n) { out[i] = (a[i] >> bit) & 1ull; }
}

// Word w collects the least significant bits of elements 64w .. 64w+63 (bit i%64 of word i/64).
extern "C" __global__ void pack_bits(const u64* __restrict__ a, u64* __restrict__ out, u64 n) {
    u64 words = (n + 63) / 64;
    GRID_STRIDE_LOOP(w, words) {
        u64 base = w * 64;
        u64 end = base + 64 < n ? base + 64 : n;
        u64 acc = 0;
        for (u64 i = base; i < end; ++i) acc |= (a[i] & 1ull) << (i - base);
        out[w] = acc;
    }
}

extern "C" __global__ void unpack_bits(const u64* __restrict__ packed, u64* __restrict__ out, u64 n) {
    GRID_STRIDE_LOOP(i, n) { out[i] = (packed[i / 64] >> (i % 64)) & 1ull; }
}
