// Kernel launches with programmatic dependent launch (PDL, sm_90+).
//
// A decode step is a chain of ~350 small kernels in one CUDA graph; each normally starts only after
// its predecessor has drained, and its launch and block scheduling (~1-3 us) sit on the critical path.
// Launched through zk_launch with PDL on, a kernel's blocks are scheduled as soon as every block of
// its predecessor has called zk_pdl_trigger, and wait in zk_pdl_wait until the predecessor's writes
// are visible: the launch overlaps the predecessor's tail instead of following it.
//
// Contract of a kernel launched through zk_launch: every block calls zk_pdl_wait() before it reads
// anything an earlier kernel writes or writes anything (only constants such as weights may be read
// before), then lets its own dependent launch: zk_pdl_prologue() does both, in that order (triggering only
// after the wait keeps at most one kernel scheduled ahead instead of letting the whole chain pile up).
// Without PDL (older chips, the switch off, a plain launch) the prologue costs nothing.
#pragma once

#include <cuda_runtime.h>

#include <utility>

// Process-wide switch, set by the engine (ZAMBA2_PDL, compute capability >= 9.0). Off: plain launches.
inline bool & zk_pdl_enabled() {
    static bool on = false;
    return on;
}

// Preferred shared-memory carveout (percent of the unified L1 / shared memory) of the kernels launched through
// zk_launch / zk_launch_pdl from this thread, as a launch attribute (captured into graphs with the launch); -1: none.
// The engine sets it per step (zamba2-forward.cc: ZAMBA2_SMEM_CARVEOUT for every step, or 50 for the decode steps
// that run the persistent decode). Why it matters: an SM changes its carveout only when it has drained, and without
// a preference a kernel runs in whatever configuration the SM already has. After the persistent decode (~227 KB of
// shared memory) the SMs stay at the largest carveout while the PDL-overlapped GEMVs that follow never let them
// drain, and a streaming GEMV with little L1 left runs ~20-40% slower (kernels/notes/runs-36-42.md run 38,
// runs-72-.md). Per launch rather than per function, so that prefill keeps no preference: with the function
// attribute, ZAMBA2_PERSIST=1 cost prefill 2048 +1.9 ms (run 90); per launch, 29.20 against the defaults' 29.41 ms
// (run 97).
inline int & zk_smem_carveout() {
    thread_local int percent = -1;
    return percent;
}

// Programmatic dependent launch (sm_90+; no-ops when compiled for older chips, and at run time when the
// kernel was launched without cudaLaunchAttributeProgrammaticStreamSerialization / has no such dependent).
// zk_pdl_trigger: the next kernel in the stream, if launched with that attribute, may start its CTAs now
// (they run up to their zk_pdl_wait while this kernel finishes). Call it early; it does not publish memory.
// zk_pdl_wait: blocks until the previous kernel in the stream has completed and its writes are visible.
// A kernel launched with the attribute must call zk_pdl_wait in every CTA before it touches any memory
// that an earlier kernel writes or a later one reads (only constant data, e.g. weights, may be read
// before), and before it exits, so that completion stays ordered along the stream.
static __device__ __forceinline__ void zk_pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
static __device__ __forceinline__ void zk_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

static __device__ __forceinline__ void zk_pdl_prologue() {
    zk_pdl_wait();
    zk_pdl_trigger();
}

// The current device's SM count and compute capability major, queried once per device (host-side attribute
// reads only: safe while a stream is being captured).
struct zk_device_facts {
    int n_sm = 0, major = 0;
};
inline const zk_device_facts & zk_device() {
    constexpr int kMaxDevices = 64;
    static zk_device_facts facts[kMaxDevices];
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) dev = 0;
    zk_device_facts & f = facts[dev];
    if (f.n_sm == 0) {
        int n_sm = 0, major = 0;
        cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev);
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
        f.major = major;
        f.n_sm = n_sm > 0 ? n_sm : 132;
    }
    return f;
}
inline int zk_sm_count() { return zk_device().n_sm; }

// A launch with PDL when `pdl` is set and the device has it (compute capability 9.0+), cooperative when asked, and
// this thread's carveout preference (zk_smem_carveout) if any.
template <typename... KArgs, typename... Args>
static inline cudaError_t zk_launch_attrs(bool pdl, bool cooperative, void (*kernel)(KArgs...), dim3 grid, dim3 block,
                                          size_t smem_bytes, cudaStream_t stream, Args &&... args) {
    cudaLaunchAttribute attr[3];
    unsigned n_attr = 0;
    if (cooperative) {
        attr[n_attr].id = cudaLaunchAttributeCooperative;
        attr[n_attr++].val.cooperative = 1;
    }
    if (pdl && zk_device().major >= 9) {
        attr[n_attr].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[n_attr++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (zk_smem_carveout() >= 0) {
        attr[n_attr].id = cudaLaunchAttributePreferredSharedMemoryCarveout;
        attr[n_attr++].val.sharedMemCarveout = (unsigned) zk_smem_carveout();
    }
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem_bytes;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = n_attr;
    return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}
// For kernels whose PDL use is their own choice (skinny_gemm's args.pdl, the SSD's prep -> chunk edge).
template <typename... KArgs, typename... Args>
static inline cudaError_t zk_launch_pdl(bool pdl, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem_bytes,
                                        cudaStream_t stream, Args &&... args) {
    return zk_launch_attrs(pdl, false, kernel, grid, block, smem_bytes, stream, std::forward<Args>(args)...);
}
// A launch whose blocks all have to be resident at once (grid barriers in the kernel): cooperative, so that it is
// refused where they cannot be (an SM limit under MPS, a green context) instead of hanging; else as zk_launch.
template <typename... KArgs, typename... Args>
static inline cudaError_t zk_launch_coresident(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem_bytes,
                                               cudaStream_t stream, Args &&... args) {
    return zk_launch_attrs(zk_pdl_enabled(), true, kernel, grid, block, smem_bytes, stream, std::forward<Args>(args)...);
}

template <typename... KArgs, typename... Args>
static inline cudaError_t zk_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem_bytes, cudaStream_t stream,
                                    Args &&... args) {
    return zk_launch_pdl(zk_pdl_enabled(), kernel, grid, block, smem_bytes, stream, std::forward<Args>(args)...);
}
