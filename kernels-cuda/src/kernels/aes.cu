// AES-128 in counter mode, in the stream layout of cryptgpu_ring::prg: the counter block of block b
// is the 128-bit big-endian integer (stream * 2^64 + counter + b), and element j of the output is
// the little-endian u64 of keystream bytes 8j..8j+8. One thread encrypts one block (two elements).
// The round keys, the T-table and the S-box live in shared memory, set up by the block's threads.

struct AesKey {
    u32 w[4];  // the key as four big-endian words
};

__constant__ unsigned char AES_SBOX[256] = {
    0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b, 0xfe, 0xd7, 0xab, 0x76,
    0xca, 0x82, 0xc9, 0x7d, 0xfa, 0x59, 0x47, 0xf0, 0xad, 0xd4, 0xa2, 0xaf, 0x9c, 0xa4, 0x72, 0xc0,
    0xb7, 0xfd, 0x93, 0x26, 0x36, 0x3f, 0xf7, 0xcc, 0x34, 0xa5, 0xe5, 0xf1, 0x71, 0xd8, 0x31, 0x15,
    0x04, 0xc7, 0x23, 0xc3, 0x18, 0x96, 0x05, 0x9a, 0x07, 0x12, 0x80, 0xe2, 0xeb, 0x27, 0xb2, 0x75,
    0x09, 0x83, 0x2c, 0x1a, 0x1b, 0x6e, 0x5a, 0xa0, 0x52, 0x3b, 0xd6, 0xb3, 0x29, 0xe3, 0x2f, 0x84,
    0x53, 0xd1, 0x00, 0xed, 0x20, 0xfc, 0xb1, 0x5b, 0x6a, 0xcb, 0xbe, 0x39, 0x4a, 0x4c, 0x58, 0xcf,
    0xd0, 0xef, 0xaa, 0xfb, 0x43, 0x4d, 0x33, 0x85, 0x45, 0xf9, 0x02, 0x7f, 0x50, 0x3c, 0x9f, 0xa8,
    0x51, 0xa3, 0x40, 0x8f, 0x92, 0x9d, 0x38, 0xf5, 0xbc, 0xb6, 0xda, 0x21, 0x10, 0xff, 0xf3, 0xd2,
    0xcd, 0x0c, 0x13, 0xec, 0x5f, 0x97, 0x44, 0x17, 0xc4, 0xa7, 0x7e, 0x3d, 0x64, 0x5d, 0x19, 0x73,
    0x60, 0x81, 0x4f, 0xdc, 0x22, 0x2a, 0x90, 0x88, 0x46, 0xee, 0xb8, 0x14, 0xde, 0x5e, 0x0b, 0xdb,
    0xe0, 0x32, 0x3a, 0x0a, 0x49, 0x06, 0x24, 0x5c, 0xc2, 0xd3, 0xac, 0x62, 0x91, 0x95, 0xe4, 0x79,
    0xe7, 0xc8, 0x37, 0x6d, 0x8d, 0xd5, 0x4e, 0xa9, 0x6c, 0x56, 0xf4, 0xea, 0x65, 0x7a, 0xae, 0x08,
    0xba, 0x78, 0x25, 0x2e, 0x1c, 0xa6, 0xb4, 0xc6, 0xe8, 0xdd, 0x74, 0x1f, 0x4b, 0xbd, 0x8b, 0x8a,
    0x70, 0x3e, 0xb5, 0x66, 0x48, 0x03, 0xf6, 0x0e, 0x61, 0x35, 0x57, 0xb9, 0x86, 0xc1, 0x1d, 0x9e,
    0xe1, 0xf8, 0x98, 0x11, 0x69, 0xd9, 0x8e, 0x94, 0x9b, 0x1e, 0x87, 0xe9, 0xce, 0x55, 0x28, 0xdf,
    0x8c, 0xa1, 0x89, 0x0d, 0xbf, 0xe6, 0x42, 0x68, 0x41, 0x99, 0x2d, 0x0f, 0xb0, 0x54, 0xbb, 0x16,};

__device__ __forceinline__ u32 aes_xtime(u32 b) { return ((b << 1) ^ ((b & 0x80) ? 0x1b : 0)) & 0xff; }

// T-table entry [2s, s, s, 3s] (big-endian bytes) for s = SBOX[x].
__device__ __forceinline__ u32 aes_te0(u32 x) {
    u32 s = AES_SBOX[x];
    u32 s2 = aes_xtime(s);
    return (s2 << 24) | (s << 16) | (s << 8) | (s2 ^ s);
}

__device__ __forceinline__ u32 ror32(u32 x, u32 r) { return (x >> r) | (x << (32 - r)); }

__device__ __forceinline__ u32 bswap32(u32 x) {
    return ((x >> 24) & 0xffu) | ((x >> 8) & 0xff00u) | ((x << 8) & 0xff0000u) | (x << 24);
}

// FIPS-197 key expansion: 44 round-key words.
__device__ void aes_expand_key(const AesKey& key, u32* rk) {
    const u32 rcon[10] = {0x01000000u, 0x02000000u, 0x04000000u, 0x08000000u, 0x10000000u,
                          0x20000000u, 0x40000000u, 0x80000000u, 0x1b000000u, 0x36000000u};
    for (int i = 0; i < 4; ++i) rk[i] = key.w[i];
    for (int i = 4; i < 44; ++i) {
        u32 t = rk[i - 1];
        if (i % 4 == 0) {
            t = (t << 8) | (t >> 24);
            t = ((u32)AES_SBOX[t >> 24] << 24) | ((u32)AES_SBOX[(t >> 16) & 0xff] << 16) |
                ((u32)AES_SBOX[(t >> 8) & 0xff] << 8) | (u32)AES_SBOX[t & 0xff];
            t ^= rcon[i / 4 - 1];
        }
        rk[i] = rk[i - 4] ^ t;
    }
}

#define AES_TE(x) s_te[x]
#define AES_S(x) s_sbox[x]
#define AES_SETUP()                                       \
    __shared__ u32 s_te[256];                             \
    __shared__ u32 s_sbox[256];                           \
    __shared__ u32 rk[44];                                \
    for (u32 t = threadIdx.x; t < 256; t += blockDim.x) { \
        s_te[t] = aes_te0(t);                             \
        s_sbox[t] = AES_SBOX[t];                          \
    }                                                     \
    if (threadIdx.x == 0) aes_expand_key(key, rk);        \
    __syncthreads();

#define AES_ROUND(o0, o1, o2, o3, i0, i1, i2, i3, k)                                                         \
    o0 = AES_TE(i0 >> 24) ^ ror32(AES_TE((i1 >> 16) & 0xff), 8) ^ ror32(AES_TE((i2 >> 8) & 0xff), 16) ^       \
         ror32(AES_TE(i3 & 0xff), 24) ^ rk[k];                                                             \
    o1 = AES_TE(i1 >> 24) ^ ror32(AES_TE((i2 >> 16) & 0xff), 8) ^ ror32(AES_TE((i3 >> 8) & 0xff), 16) ^       \
         ror32(AES_TE(i0 & 0xff), 24) ^ rk[k + 1];                                                         \
    o2 = AES_TE(i2 >> 24) ^ ror32(AES_TE((i3 >> 16) & 0xff), 8) ^ ror32(AES_TE((i0 >> 8) & 0xff), 16) ^       \
         ror32(AES_TE(i1 & 0xff), 24) ^ rk[k + 2];                                                         \
    o3 = AES_TE(i3 >> 24) ^ ror32(AES_TE((i0 >> 16) & 0xff), 8) ^ ror32(AES_TE((i1 >> 8) & 0xff), 16) ^       \
         ror32(AES_TE(i2 & 0xff), 24) ^ rk[k + 3];

#define AES_LAST(i0, i1, i2, i3, k)                                                                          \
    ((AES_S(i0 >> 24) << 24) ^ (AES_S((i1 >> 16) & 0xff) << 16) ^ (AES_S((i2 >> 8) & 0xff) << 8) ^           \
     AES_S(i3 & 0xff) ^ rk[k])

extern "C" __global__ void aes_ctr_fill(AesKey key, u64 stream, u64 counter, u64* __restrict__ out, u64 n) {
    AES_SETUP()
    u64 blocks = (n + 1) / 2;
    GRID_STRIDE_LOOP(b, blocks) {
        u64 lo = counter + b;
        u64 hi = stream + (lo < counter ? 1ull : 0ull);
        u32 s0 = (u32)(hi >> 32) ^ rk[0], s1 = (u32)hi ^ rk[1], s2 = (u32)(lo >> 32) ^ rk[2], s3 = (u32)lo ^ rk[3];
        u32 t0, t1, t2, t3;
        for (int r = 1; r < 10; r += 2) {
            AES_ROUND(t0, t1, t2, t3, s0, s1, s2, s3, 4 * r)
            if (r == 9) break;
            AES_ROUND(s0, s1, s2, s3, t0, t1, t2, t3, 4 * (r + 1))
        }
        u32 o0 = AES_LAST(t0, t1, t2, t3, 40);
        u32 o1 = AES_LAST(t1, t2, t3, t0, 41);
        u32 o2 = AES_LAST(t2, t3, t0, t1, 42);
        u32 o3 = AES_LAST(t3, t0, t1, t2, 43);
        out[2 * b] = (u64)bswap32(o0) | ((u64)bswap32(o1) << 32);
        if (2 * b + 1 < n) out[2 * b + 1] = (u64)bswap32(o2) | ((u64)bswap32(o3) << 32);
    }
}
