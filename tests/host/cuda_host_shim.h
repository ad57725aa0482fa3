// Runs CUDA C kernels on the host for tests: a launch becomes loops over blocks and threads.
// Only kernels without shared memory or barriers can run this way (they are compile errors here).
#pragma once
#include <cstdint>

struct HostDim3 {
    unsigned x, y, z;
};
extern thread_local HostDim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __constant__
#define __restrict__
#define __shared__ static_assert(false, "__shared__ is not supported by the host shim");
#define __syncthreads() static_assert(false, "__syncthreads is not supported by the host shim")
#define CRYPTGPU_HOST 1

// Runs f(args...) once per thread of a (grid x block) 1-D launch, or (gx, gy) x (bx, by) 2-D.
template <typename F, typename... A>
void host_launch(HostDim3 grid, HostDim3 block, F f, A... args) {
    gridDim = grid;
    blockDim = block;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx)
                for (unsigned tz = 0; tz < block.z; ++tz)
                    for (unsigned ty = 0; ty < block.y; ++ty)
                        for (unsigned tx = 0; tx < block.x; ++tx) {
                            blockIdx = {bx, by, bz};
                            threadIdx = {tx, ty, tz};
                            f(args...);
                        }
}
