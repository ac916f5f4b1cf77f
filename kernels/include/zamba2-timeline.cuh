// Kernel timeline of decode steps, for development only: compiled in with -DZK_TIMELINE
// (`bash kernels/build.sh --timeline` builds kernels/build-tl/bench-engine), absent from every other build.
//
// Under PDL a step's kernels overlap, so per-kernel durations (ncu serializes them) do not say where a step's time
// goes. Each instrumented CTA records three %globaltimer readings: when it started, when its PDL wait returned
// (the predecessor had completed) and when it ended. Per launch: release = the first CTA past its wait, end = the
// last CTA's end; a step's time is then the sum over its launches of (end - previous end), split into the
// dependency latency (release - previous end) and the work after release (end - release).
//
// Records are claimed with one atomic per CTA before the CTA lets its dependents launch, so the CTAs of one launch
// hold consecutive record indices (PDL starts the next launch only after every CTA of this one has triggered);
// kernels/dev/timeline_summary.py groups them by launch and checks that each group is one launch.
//
// Without -rdc each translation unit has its own copy of the buffer pointer: the header registers a setter per
// unit, and zk_timeline_start() sets them all.
#pragma once

#include <cstdint>

struct zk_tl_record {
    uint32_t tag, grid, block, pad;
    uint64_t t_start, t_waited, t_end;  // %globaltimer, ns
    uint64_t t_mark[2];                 // kernel-specific points (0: none); skinny_gemm: input staged, first item done
    uint64_t t_waited_last;             // the CTA's last warp past its PDL wait (each waits for its own prior loads)
};
struct zk_tl_buffer {
    unsigned long long count, cap;
    zk_tl_record rec[1];  // [cap]
};
enum zk_tl_tag : uint32_t { ZK_TL_SKINNY = 1, ZK_TL_STATE_STEP = 2, ZK_TL_ATTN_DECODE = 3, ZK_TL_ARGMAX = 4, ZK_TL_PERSIST = 5 };

#ifdef ZK_TIMELINE
#include <cuda_runtime.h>

#include <vector>

// one list of setters for the whole program (an inline function's static is shared by every unit)
inline std::vector<void (*)(zk_tl_buffer *)> & zk_tl_setters() {
    static std::vector<void (*)(zk_tl_buffer *)> setters;
    return setters;
}

#ifdef __CUDACC__  // the kernels' side (host-compiled .cc files only start and take timelines)
#include "zamba2-common.cuh"

namespace {
__device__ zk_tl_buffer * zk_tl_buf = nullptr;  // this translation unit's copy

struct zk_tl_cta {
    unsigned long long index = ~0ull;
    uint64_t t_start = 0, t_waited = 0, t_mark[2] = {0, 0};
};

// the latest wait return of the CTA's warps (zk_tl_waited)
__device__ __forceinline__ unsigned long long & zk_tl_last_wait() {
    __shared__ unsigned long long last;
    return last;
}

// every thread of each CTA, at the kernel's first instruction (before its PDL trigger); the barrier orders the
// reset of the last wait before any warp's update (instrumented builds only)
__device__ __forceinline__ zk_tl_cta zk_tl_begin() {
    zk_tl_cta c;
    if (threadIdx.x == 0 && zk_tl_buf) {
        c.t_start = zk_globaltimer_ns();
        c.index = atomicAdd(&zk_tl_buf->count, 1ull);
        zk_tl_last_wait() = 0;
    }
    __syncthreads();
    return c;
}
// every thread, right after its PDL wait
__device__ __forceinline__ void zk_tl_waited(zk_tl_cta & c) {
    const uint64_t now = zk_globaltimer_ns();
    if (threadIdx.x == 0) c.t_waited = now;
    if (threadIdx.x % 32 == 0) atomicMax(&zk_tl_last_wait(), (unsigned long long) now);
}
__device__ __forceinline__ void zk_tl_mark(zk_tl_cta & c, int i) {
    if (threadIdx.x == 0) c.t_mark[i] = zk_globaltimer_ns();
}
// thread 0, once every thread of the CTA that still runs has synchronized (a kernel whose warps leave early)
__device__ __forceinline__ void zk_tl_end_synced(const zk_tl_cta & c, uint32_t tag) {
    if (threadIdx.x == 0 && zk_tl_buf && c.index < zk_tl_buf->cap) {
        zk_tl_record & r = zk_tl_buf->rec[c.index];
        r.tag = tag;
        r.grid = gridDim.x * gridDim.y * gridDim.z;
        r.block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
        r.t_start = c.t_start;
        r.t_waited = c.t_waited;
        r.t_end = zk_globaltimer_ns();
        r.t_mark[0] = c.t_mark[0];
        r.t_mark[1] = c.t_mark[1];
        r.t_waited_last = zk_tl_last_wait();
    }
}
// every thread of the CTA: the end is when the last of them arrives
__device__ __forceinline__ void zk_tl_end(const zk_tl_cta & c, uint32_t tag) {
    __syncthreads();
    zk_tl_end_synced(c, tag);
}

void zk_tl_set_this_unit(zk_tl_buffer * p) { cudaMemcpyToSymbol(zk_tl_buf, &p, sizeof p); }
const bool zk_tl_registered = (zk_tl_setters().push_back(&zk_tl_set_this_unit), true);
}  // namespace

#define ZK_TL_BEGIN() zk_tl_cta zk_tl_c = zk_tl_begin()
#define ZK_TL_WAITED() zk_tl_waited(zk_tl_c)
#define ZK_TL_END(tag) zk_tl_end(zk_tl_c, tag)
#define ZK_TL_END_SYNCED(tag) zk_tl_end_synced(zk_tl_c, tag)
#define ZK_TL_MARK(i) zk_tl_mark(zk_tl_c, i)
#endif  // __CUDACC__

// Start recording (at most cap CTAs); returns the device buffer, or null on an allocation failure.
inline zk_tl_buffer * zk_timeline_start(unsigned long long cap) {
    zk_tl_buffer * buf = nullptr;
    if (cudaMalloc(&buf, sizeof(zk_tl_buffer) + cap * sizeof(zk_tl_record)) != cudaSuccess) return nullptr;
    const unsigned long long head[2] = {0, cap};
    cudaMemcpy(buf, head, sizeof head, cudaMemcpyHostToDevice);
    for (auto set : zk_tl_setters()) set(buf);
    return buf;
}
// Stop recording (after the device is idle) and return the records in claim order.
inline std::vector<zk_tl_record> zk_timeline_take(zk_tl_buffer * buf) {
    std::vector<zk_tl_record> out;
    if (!buf) return out;
    cudaDeviceSynchronize();
    for (auto set : zk_tl_setters()) set(nullptr);
    unsigned long long head[2] = {0, 0};
    cudaMemcpy(head, buf, sizeof head, cudaMemcpyDeviceToHost);
    out.resize((size_t) (head[0] < head[1] ? head[0] : head[1]));
    if (!out.empty()) cudaMemcpy(out.data(), buf->rec, out.size() * sizeof(zk_tl_record), cudaMemcpyDeviceToHost);
    cudaFree(buf);
    return out;
}
#endif  // ZK_TIMELINE

#ifndef ZK_TL_BEGIN
#define ZK_TL_BEGIN() ((void) 0)
#define ZK_TL_WAITED() ((void) 0)
#define ZK_TL_END(tag) ((void) 0)
#define ZK_TL_END_SYNCED(tag) ((void) 0)
#define ZK_TL_MARK(i) ((void) 0)
#endif
