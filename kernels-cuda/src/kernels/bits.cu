// Bit extraction and packing.

extern "C" __global__ void bit_extract(const u64* __restrict__ a, u32 bit, u64* __restrict__ out, u64 n) {
    GRID_STRIDE_LOOP(i, n) { out[i] = (a[i] >> bit) & 1ull; }
}

// Word w collects the least significant bits of elements 64w .. 64w+63 (bit i%64 of word i/64).
// One warp per word: lane l reads elements 64w+l and 64w+32+l, so each warp's loads are coalesced,
// and two ballots give the word's halves. blockDim.x must be a multiple of 32 (whole warps), so the
// warp-stride loop is uniform across a warp.
extern "C" __global__ void pack_bits(const u64* __restrict__ a, u64* __restrict__ out, u64 n) {
    u64 words = (n + 63) / 64;
    u32 lane = threadIdx.x % 32;
    for (u64 w = GLOBAL_INDEX / 32; w < words; w += GLOBAL_STRIDE / 32) {
        u64 i = w * 64 + lane;
        u32 lo = __ballot_sync(0xffffffffu, i < n && (a[i] & 1ull));
        u32 hi = __ballot_sync(0xffffffffu, i + 32 < n && (a[i + 32] & 1ull));
        if (lane == 0) out[w] = (u64)lo | ((u64)hi << 32);
    }
}

extern "C" __global__ void unpack_bits(const u64* __restrict__ packed, u64* __restrict__ out, u64 n) {
    GRID_STRIDE_LOOP(i, n) { out[i] = (packed[i / 64] >> (i % 64)) & 1ull; }
}
