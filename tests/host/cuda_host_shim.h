// Runs CUDA C kernels on the host for tests. A launch runs its blocks one after another; the threads
// of a block are fibers (ucontext) on the calling OS thread, each run until it finishes or waits at
// a barrier (__syncthreads, or its warp's __ballot_sync), in reverse thread order in blocks whose
// coordinates sum to an even number (block 0 among them) and in thread order in the others.
// Launches are deterministic, and a missing barrier shows up as a wrong result. __shared__ variables
// are thread_local statics: one copy per OS thread, shared by the fibers of the block running on it
// (their contents are not reset between blocks).
#pragma once
#include <functional>

struct HostDim3 {
    unsigned x, y, z;
};
// Set by the scheduler for the fiber it runs.
extern thread_local HostDim3 threadIdx, blockIdx, blockDim, gridDim;

// Grid and block dimensions of a launch, as cryptgpu_kernels_cuda::geometry::Geometry.
struct HostGeometry {
    HostDim3 grid, block;
};

#define __global__
#define __device__
#define __forceinline__ inline
#define __constant__
#define __restrict__
#define __shared__ static thread_local
#define __syncthreads() host_syncthreads()
#define __ballot_sync(mask, pred) host_ballot_sync(mask, pred)

// Waits until every thread of the block has arrived.
void host_syncthreads();
// Waits until every lane of `mask` in the caller's warp has arrived (with the same mask); returns
// the mask of those lanes whose predicate is non-zero.
unsigned host_ballot_sync(unsigned mask, int pred);
// Runs `body` once per thread of the launch. Returns null, or why the launch could not complete
// (a block of 0 or more than 1024 threads, or threads waiting at a barrier others never reach).
const char* host_run(HostGeometry g, const std::function<void()>& body);

template <typename F, typename... A>
const char* host_launch(HostGeometry g, F f, A... args) {
    return host_run(g, [&] { f(args...); });
}
