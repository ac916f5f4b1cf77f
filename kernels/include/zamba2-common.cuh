// Device-side helpers shared by every kernel file: bf16 conversions and warp/block reductions.
// Included by .cu files only (it needs the CUDA compiler).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "zamba2-kernels.h"
#include "zamba2-launch.cuh"  // zk_pdl_wait / zk_pdl_trigger

#define ZK_WARP_SIZE 32

static __device__ __forceinline__ float zk_to_f32(bf16 x) { return __bfloat162float(x); }
static __device__ __forceinline__ float zk_to_f32(float x) { return x; }
static __device__ __forceinline__ bf16 zk_to_bf16(float x) { return __float2bfloat16_rn(x); }

// Stores of fp32 results into a bf16 or an fp32 activation buffer (kernels templated on the type).
static __device__ __forceinline__ void zk_store(bf16 * p, float v) { *p = zk_to_bf16(v); }
static __device__ __forceinline__ void zk_store(float * p, float v) { *p = v; }
// A bf16 GEMM input written as hi = bf16(v) and, when lo is given, lo = bf16(v - hi): the GEMM over
// the stacked [hi; lo] rows sums to v to ~2^-17 relative instead of bf16's 2^-9 (kernels/NOTES.md).
static __device__ __forceinline__ void zk_store_split(bf16 * hi, bf16 * lo, float v) {
    const bf16 h = zk_to_bf16(v);
    *hi = h;
    if (lo) *lo = zk_to_bf16(v - zk_to_f32(h));
}

// Two fp32 values as a bf16x2 register (first value in the low half) and the bf16x2 of their remainders.
static __device__ __forceinline__ void zk_split2(uint32_t & hi, uint32_t & lo, float x0, float x1) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
    const __nv_bfloat162 l = __floats2bfloat162_rn(x0 - __low2float(h), x1 - __high2float(h));
    hi = *reinterpret_cast<const uint32_t *>(&h);
    lo = *reinterpret_cast<const uint32_t *>(&l);
}
// zk_store_split of 2 (4-byte aligned) or 4 (8-byte aligned) consecutive values; lo may be null for 4.
static __device__ __forceinline__ void zk_store_split2(bf16 * hi, bf16 * lo, float a, float b) {
    uint32_t h, l;
    zk_split2(h, l, a, b);
    *reinterpret_cast<uint32_t *>(hi) = h;
    *reinterpret_cast<uint32_t *>(lo) = l;
}
static __device__ __forceinline__ void zk_store_split4(bf16 * hi, bf16 * lo, float4 v) {
    uint32_t h0, l0, h1, l1;
    zk_split2(h0, l0, v.x, v.y);
    zk_split2(h1, l1, v.z, v.w);
    *reinterpret_cast<uint2 *>(hi) = make_uint2(h0, h1);
    if (lo) *reinterpret_cast<uint2 *>(lo) = make_uint2(l0, l1);
}

// Asynchronous L2 prefetch of `bytes` (a multiple of 16) at p (16-byte aligned) by the copy engine: no
// registers held while the bytes are in flight. sm_90+; a no-op below.
static __device__ __forceinline__ void zk_prefetch_l2_bulk(const void * p, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#endif
}

static __device__ __forceinline__ float zk_warp_sum(float v) {
#pragma unroll
    for (int off = ZK_WARP_SIZE / 2; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

static __device__ __forceinline__ float zk_warp_max(float v) {
#pragma unroll
    for (int off = ZK_WARP_SIZE / 2; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

// Sum over the whole block; `scratch` holds >= 32 floats. Every thread gets the result.
static __device__ __forceinline__ float zk_block_sum(float v, float * scratch) {
    const int lane = threadIdx.x % ZK_WARP_SIZE;
    const int warp = threadIdx.x / ZK_WARP_SIZE;
    v = zk_warp_sum(v);
    __syncthreads();  // NOTE: scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    const int n_warps = (blockDim.x + ZK_WARP_SIZE - 1) / ZK_WARP_SIZE;
    float t = lane < n_warps ? scratch[lane] : 0.0f;
    return zk_warp_sum(t);
}

static __device__ __forceinline__ float zk_block_max(float v, float * scratch) {
    const int lane = threadIdx.x % ZK_WARP_SIZE;
    const int warp = threadIdx.x / ZK_WARP_SIZE;
    v = zk_warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    const int n_warps = (blockDim.x + ZK_WARP_SIZE - 1) / ZK_WARP_SIZE;
    float t = lane < n_warps ? scratch[lane] : -INFINITY;
    return zk_warp_max(t);
}

static __device__ __forceinline__ float zk_silu(float x) { return x / (1.0f + expf(-x)); }

// softplus as the Mamba2 kernels compute it: identity above 20.
static __device__ __forceinline__ float zk_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

// The GPU's global nanosecond timer (for in-kernel phase profiles; it ticks coarser than 1 ns).
static __device__ __forceinline__ unsigned long long zk_globaltimer_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
