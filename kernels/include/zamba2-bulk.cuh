// Bulk copies into shared memory and the mbarriers that count them (sm_90+; device code only).
//
// A copy (cp.async.bulk, the TMA unit's 1-D form) moves `bytes` (a multiple of 16, both addresses 16-byte
// aligned) from global to shared memory without registers or per-thread issue, and signals its completion by
// the bytes it delivers to an mbarrier. A "full" barrier of count 1 completes a phase when the thread that
// announced the phase's bytes (zk_mbar_arrive_expect_tx) has arrived and all those bytes have landed; an
// "empty" barrier counts the consumers that released a buffer. Phase parity: a barrier starts in phase 0;
// zk_mbar_wait(bar, r & 1) returns once its r-th phase (0-based) has completed.
// Below sm_90 these compile to nothing: callers must not take the bulk path there (skinny_gemm checks the
// compute capability before it launches the ring kernel).
#pragma once

#include <cstdint>

static __device__ __forceinline__ uint32_t zk_smem_addr(const void * p) {
    return (uint32_t) __cvta_generic_to_shared(p);
}

static __device__ __forceinline__ void zk_mbar_init(uint64_t * bar, uint32_t count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(zk_smem_addr(bar)), "r"(count) : "memory");
#endif
}

// After the inits and before any copy signals them: makes the initialized barriers visible to the copy unit.
static __device__ __forceinline__ void zk_mbar_init_fence() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}

// Arrive once and announce `bytes` more to land in this phase (the copies' complete_tx counts them down).
static __device__ __forceinline__ void zk_mbar_arrive_expect_tx(uint64_t * bar, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(zk_smem_addr(bar)), "r"(bytes) : "memory");
#endif
}

static __device__ __forceinline__ void zk_mbar_arrive(uint64_t * bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(zk_smem_addr(bar)) : "memory");
#endif
}

// Blocks until the phase of the given parity has completed (acquire: the copies' data is then visible).
static __device__ __forceinline__ void zk_mbar_wait(uint64_t * bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile(
        "{\n"
        ".reg .pred done;\n"
        "wait_%=:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra wait_%=;\n"
        "}\n" ::"r"(zk_smem_addr(bar)),
        "r"(parity)
        : "memory");
#endif
}

// global -> shared, `bytes` counted on `bar` when they land. The CTA is its own cluster of one, so its
// shared::cta address is a valid shared::cluster address.
static __device__ __forceinline__ void zk_bulk_copy_g2s(void * dst, const void * src, uint32_t bytes, uint64_t * bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                     zk_smem_addr(dst)),
                 "l"(src), "r"(bytes), "r"(zk_smem_addr(bar))
                 : "memory");
#endif
}
