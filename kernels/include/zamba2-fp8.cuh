// Device helpers for split GEMM inputs whose low part is stored as FP8 e4m3 (ZK_LO_FP8_SCALE and the error
// budget: zamba2-fp8.h): hi = bf16(v), lo8 = e4m3_satfinite((v - hi) * ZK_LO_FP8_SCALE).
// Included by the producers of split rows (rms-norm.cu, gated-rms-norm.cu, elementwise.cu).
#pragma once

#include <cuda_fp8.h>

#include "zamba2-common.cuh"

// Two remainders as an e4m3x2 (first value in the low byte). satfinite: |lo * scale| > 448 clamps to 448,
// so an element past the range keeps at least bf16 accuracy (no inf/NaN).
static __device__ __forceinline__ uint16_t zk_lo8x2(float r0, float r1) {
    return (uint16_t) __nv_cvt_float2_to_fp8x2(make_float2(r0 * ZK_LO_FP8_SCALE, r1 * ZK_LO_FP8_SCALE), __NV_SATFINITE,
                                               __NV_E4M3);
}

// Two fp32 values as a bf16x2 (hi) and the e4m3x2 of their scaled remainders (lo8).
static __device__ __forceinline__ void zk_split2_lo8(uint32_t & hi, uint16_t & lo8, float x0, float x1) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
    hi = *reinterpret_cast<const uint32_t *>(&h);
    lo8 = zk_lo8x2(x0 - __low2float(h), x1 - __high2float(h));
}

// One value (the unvectorized fallbacks).
static __device__ __forceinline__ void zk_store_split_lo8(bf16 * hi, uint8_t * lo8, float v) {
    const bf16 h = zk_to_bf16(v);
    *hi = h;
    *lo8 = (uint8_t) __nv_cvt_float_to_fp8((v - zk_to_f32(h)) * ZK_LO_FP8_SCALE, __NV_SATFINITE, __NV_E4M3);
}

// PACK (4 or 8) consecutive values: hi as PACK bf16 (8 or 16 bytes), then either lo as PACK bf16 or lo8 as
// PACK bytes (4 or 8 bytes), or neither (both null). Pointers aligned to their store width.
template <int PACK>
static __device__ __forceinline__ void zk_store_split_pack(bf16 * hi, bf16 * lo, uint8_t * lo8, const float * v) {
    static_assert(PACK == 4 || PACK == 8, "PACK is 4 or 8");
    uint32_t h[PACK / 2], l[PACK / 2];
    if (lo8) {
        uint16_t q[PACK / 2];
#pragma unroll
        for (int i = 0; i < PACK / 2; ++i) zk_split2_lo8(h[i], q[i], v[2 * i], v[2 * i + 1]);
        if constexpr (PACK == 8) {
            *reinterpret_cast<uint2 *>(lo8) = make_uint2(q[0] | ((uint32_t) q[1] << 16), q[2] | ((uint32_t) q[3] << 16));
        } else {
            *reinterpret_cast<uint32_t *>(lo8) = q[0] | ((uint32_t) q[1] << 16);
        }
    } else {
#pragma unroll
        for (int i = 0; i < PACK / 2; ++i) zk_split2(h[i], l[i], v[2 * i], v[2 * i + 1]);
        if (lo) {
            if constexpr (PACK == 8) *reinterpret_cast<uint4 *>(lo) = make_uint4(l[0], l[1], l[2], l[3]);
            else *reinterpret_cast<uint2 *>(lo) = make_uint2(l[0], l[1]);
        }
    }
    if constexpr (PACK == 8) *reinterpret_cast<uint4 *>(hi) = make_uint4(h[0], h[1], h[2], h[3]);
    else *reinterpret_cast<uint2 *>(hi) = make_uint2(h[0], h[1]);
}

// PACK consecutive fp32 or bf16 values as floats (16-byte fp32 loads; 8- or 16-byte bf16 loads).
template <int PACK> static __device__ __forceinline__ void zk_load_pack(float * v, const float * p) {
#pragma unroll
    for (int i = 0; i < PACK / 4; ++i) {
        const float4 q = reinterpret_cast<const float4 *>(p)[i];
        v[4 * i] = q.x; v[4 * i + 1] = q.y; v[4 * i + 2] = q.z; v[4 * i + 3] = q.w;
    }
}
template <int PACK> static __device__ __forceinline__ void zk_load_pack(float * v, const bf16 * p) {
    uint32_t q[PACK / 2];
    if constexpr (PACK == 8) {
        const uint4 t = *reinterpret_cast<const uint4 *>(p);
        q[0] = t.x; q[1] = t.y; q[2] = t.z; q[3] = t.w;
    } else {
        const uint2 t = *reinterpret_cast<const uint2 *>(p);
        q[0] = t.x; q[1] = t.y;
    }
#pragma unroll
    for (int i = 0; i < PACK / 2; ++i) {
        const __nv_bfloat162 h = *reinterpret_cast<const __nv_bfloat162 *>(&q[i]);
        v[2 * i] = __low2float(h);
        v[2 * i + 1] = __high2float(h);
    }
}
