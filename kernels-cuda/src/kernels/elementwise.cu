// Elementwise ring and bitwise operations, scalar operations and shifts.

__device__ __forceinline__ u64 apply_binary(int op, u64 x, u64 y) {
    switch (op) {
        case OP_ADD: return x + y;
        case OP_SUB: return x - y;
        case OP_MUL: return x * y;
        case OP_XOR: return x ^ y;
        case OP_AND: return x & y;
        case OP_OR: return x | y;
        default: return y - x;  // OP_SUB_FROM (scalar only)
    }
}

extern "C" __global__ void ew_binary(int op, const u64* __restrict__ a, const u64* __restrict__ b,
                                     u64* __restrict__ out, u64 n) {
    GRID_STRIDE_LOOP(i, n) { out[i] = apply_binary(op, a[i], b[i]); }
}

extern "C" __global__ void ew_unary(int op, const u64* __restrict__ a, u64* __restrict__ out, u64 n) {
    GRID_STRIDE_LOOP(i, n) { out[i] = op == OP_NEG ? (u64)0 - a[i] : ~a[i]; }
}

extern "C" __global__ void ew_scalar(int op, const u64* __restrict__ a, u64 s, u64* __restrict__ out, u64 n) {
    GRID_STRIDE_LOOP(i, n) { out[i] = apply_binary(op, a[i], s); }
}

extern "C" __global__ void ew_shift(int op, const u64* __restrict__ a, u32 bits, u64* __restrict__ out, u64 n) {
    GRID_STRIDE_LOOP(i, n) {
        u64 x = a[i];
        out[i] = op == SHIFT_LEFT ? x << bits : op == SHIFT_RIGHT_LOGICAL ? x >> bits : (u64)((i64)x >> bits);
    }
}

extern "C" __global__ void ew_fill(u64 value, u64* __restrict__ out, u64 n) {
    GRID_STRIDE_LOOP(i, n) { out[i] = value; }
}
