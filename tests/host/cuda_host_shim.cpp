// The block scheduler of the host shim (see cuda_host_shim.h).
#include "cuda_host_shim.h"

#include <ucontext.h>

#include <cstddef>
#include <memory>
#include <vector>

thread_local HostDim3 threadIdx, blockIdx, blockDim, gridDim;

namespace {

constexpr std::size_t STACK_BYTES = 128 << 10;
constexpr unsigned WARP = 32;

enum class State { Ready, AtBarrier, AtBallot, Done };

struct Fiber {
    ucontext_t ctx;
    HostDim3 idx;
    State state;
    unsigned mask;  // of the ballot it waits at
    bool pred;
    unsigned ballot;  // result, once released
};

struct Block {
    std::vector<Fiber> fibers;
    ucontext_t scheduler;
    std::size_t current;
    const std::function<void()>* body;
};

thread_local Block* running = nullptr;

void fiber_main() {
    (*running->body)();
    running->fibers[running->current].state = State::Done;
}  // returns to the scheduler (uc_link)

// Suspends the running fiber in state `s`; returns once the scheduler resumes it.
Fiber& suspend(State s) {
    Fiber& f = running->fibers[running->current];
    f.state = s;
    swapcontext(&f.ctx, &running->scheduler);
    return f;
}

// Releases every ballot whose lanes have all arrived with the same mask; returns whether any was.
bool release_ballots(Block& b) {
    bool any = false;
    const std::size_t n = b.fibers.size();
    for (std::size_t w = 0; w < n; w += WARP) {
        for (std::size_t t = w; t < n && t < w + WARP; ++t) {
            if (b.fibers[t].state != State::AtBallot) continue;
            const unsigned mask = b.fibers[t].mask;
            unsigned ballot = 0;
            bool complete = true;
            for (unsigned lane = 0; lane < WARP && complete; ++lane) {
                if (!((mask >> lane) & 1u)) continue;
                const Fiber* f = w + lane < n ? &b.fibers[w + lane] : nullptr;
                complete = f && f->state == State::AtBallot && f->mask == mask;
                if (complete && f->pred) ballot |= 1u << lane;
            }
            if (!complete) continue;
            for (unsigned lane = 0; lane < WARP; ++lane) {
                if (!((mask >> lane) & 1u)) continue;
                b.fibers[w + lane].state = State::Ready;
                b.fibers[w + lane].ballot = ballot;
            }
            any = true;
        }
    }
    return any;
}

// Releases __syncthreads once every thread of the block waits there; returns whether it did.
bool release_barrier(Block& b) {
    for (const Fiber& f : b.fibers)
        if (f.state != State::AtBarrier) return false;
    for (Fiber& f : b.fibers) f.state = State::Ready;
    return true;
}

// Runs the block's fibers, in thread order or in reverse, until all are done; returns null or why
// they cannot finish.
const char* run_block(Block& b, bool reverse) {
    const std::size_t n = b.fibers.size();
    for (;;) {
        bool done = true;
        for (std::size_t i = 0; i < n; ++i) {
            const std::size_t t = reverse ? n - 1 - i : i;
            Fiber& f = b.fibers[t];
            if (f.state == State::Ready) {
                b.current = t;
                threadIdx = f.idx;
                swapcontext(&b.scheduler, &f.ctx);
            }
            done = done && f.state == State::Done;
        }
        if (done) return nullptr;
        if (!release_ballots(b) && !release_barrier(b))
            return "deadlock: threads wait at a __syncthreads or __ballot_sync that others never reach";
    }
}

}  // namespace

void host_syncthreads() { suspend(State::AtBarrier); }

unsigned host_ballot_sync(unsigned mask, int pred) {
    Fiber& me = running->fibers[running->current];
    me.mask = mask;
    me.pred = pred != 0;
    return suspend(State::AtBallot).ballot;
}

const char* host_run(HostGeometry g, const std::function<void()>& body) {
    const std::size_t threads = std::size_t(g.block.x) * g.block.y * g.block.z;
    if (threads == 0 || threads > 1024) return "a block must have 1 to 1024 threads";
    gridDim = g.grid;
    blockDim = g.block;
    std::unique_ptr<char[]> stacks(new char[threads * STACK_BYTES]);
    Block b;
    b.fibers.resize(threads);
    b.body = &body;
    running = &b;
    const char* err = nullptr;
    for (unsigned bz = 0; bz < g.grid.z && !err; ++bz)
        for (unsigned by = 0; by < g.grid.y && !err; ++by)
            for (unsigned bx = 0; bx < g.grid.x && !err; ++bx) {
                blockIdx = {bx, by, bz};
                for (std::size_t t = 0; t < threads; ++t) {
                    Fiber& f = b.fibers[t];
                    const unsigned x = g.block.x, xy = g.block.x * g.block.y;
                    f.idx = {unsigned(t % x), unsigned(t % xy / x), unsigned(t / xy)};
                    f.state = State::Ready;
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = stacks.get() + t * STACK_BYTES;
                    f.ctx.uc_stack.ss_size = STACK_BYTES;
                    f.ctx.uc_link = &b.scheduler;
                    makecontext(&f.ctx, fiber_main, 0);
                }
                err = run_block(b, (bx + by + bz) % 2 == 0);
            }
    running = nullptr;
    return err;
}
