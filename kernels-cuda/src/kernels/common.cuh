// Shared prelude of every cryptgpu kernel source (prepended before compilation).
// Ring elements are 64-bit unsigned integers; all arithmetic wraps modulo 2^64.
typedef unsigned long long u64;
typedef long long i64;
typedef unsigned int u32;
typedef int i32;
typedef signed char i8;

// Index of the calling thread in a 1-D grid and the grid's total thread count.
#define GLOBAL_INDEX ((u64)blockIdx.x * (u64)blockDim.x + (u64)threadIdx.x)
#define GLOBAL_STRIDE ((u64)blockDim.x * (u64)gridDim.x)
#define GRID_STRIDE_LOOP(i, n) for (u64 i = GLOBAL_INDEX; i < (n); i += GLOBAL_STRIDE)

// Operation codes: they must match the Rust enums (see kernels-cuda/src/ops.rs).
#define OP_ADD 0
#define OP_SUB 1
#define OP_MUL 2
#define OP_XOR 3
#define OP_AND 4
#define OP_OR 5
#define OP_SUB_FROM 6
#define OP_NEG 0
#define OP_NOT 1
#define SHIFT_LEFT 0
#define SHIFT_RIGHT_LOGICAL 1
#define SHIFT_RIGHT_ARITH 2

// Up to 8 dimensions for strided gathers (permute, broadcast).
#define MAX_DIMS 8
struct Dims {
    u64 shape[MAX_DIMS];
    u64 stride[MAX_DIMS];
    u32 rank;
};
