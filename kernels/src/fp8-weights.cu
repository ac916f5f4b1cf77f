// FP8 e4m3 copies of weights (once, at upload) and the bf16 lo rows rebuilt from a split input's FP8 lo
// (the norms write lo8 themselves); the math and error budget are in include/zamba2-fp8.h.
#include <cuda_fp8.h>

#include "zamba2-common.cuh"
#include "zamba2-fp8.h"

// ---- kernels -----------------------------------------------------------------------------------

// Non-negative floats order like their bit patterns, so an unsigned atomicMax on the bits is a float max.
static __global__ void fp8_absmax_kernel(float * __restrict__ absmax, const bf16 * __restrict__ w, size_t n) {
    __shared__ float scratch[32];
    float m = 0.0f;
    for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x) {
        const float a = fabsf(zk_to_f32(w[i]));  // w: [n]
        if (a > m) m = a;                         // NaN compares false: ignored
    }
    m = zk_block_max(m, scratch);
    if (threadIdx.x == 0) atomicMax(reinterpret_cast<unsigned int *>(absmax), __float_as_uint(m));
}

static __global__ void fp8_quantize_kernel(uint8_t * __restrict__ q, const bf16 * __restrict__ w, size_t n, float inv_scale) {
    for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x) {
        q[i] = __nv_cvt_float_to_fp8(zk_to_f32(w[i]) * inv_scale, __NV_SATFINITE, __NV_E4M3);  // q, w: [n]
    }
}

static __global__ void fp8_lo_to_bf16_kernel(bf16 * __restrict__ lo, const uint8_t * __restrict__ lo8, size_t n) {
    for (size_t i = blockIdx.x * (size_t) blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x) {
        const __half_raw h = __nv_cvt_fp8_to_halfraw(lo8[i], __NV_E4M3);                 // exact in fp16
        lo[i] = zk_to_bf16(__half2float(__half(h)) * (1.0f / ZK_LO_FP8_SCALE));         // lo, lo8: [n]
    }
}

// ---- launchers ---------------------------------------------------------------------------------

static unsigned grid_for(size_t n, int threads) {
    const size_t blocks = (n + threads - 1) / threads;
    return (unsigned) (blocks < 4096 ? (blocks > 0 ? blocks : 1) : 4096);
}

void fp8_absmax_bf16(float * absmax, const bf16 * w, size_t n, cudaStream_t stream) {
    if (n == 0) return;
    fp8_absmax_kernel<<<grid_for(n, 256), 256, 0, stream>>>(absmax, w, n);
}

void fp8_quantize_bf16(uint8_t * q, const bf16 * w, size_t n, float inv_scale, cudaStream_t stream) {
    if (n == 0) return;
    fp8_quantize_kernel<<<grid_for(n, 256), 256, 0, stream>>>(q, w, n, inv_scale);
}

void fp8_lo_to_bf16(bf16 * lo, const uint8_t * lo8, int n_rows, int n_cols, cudaStream_t stream) {
    const size_t n = (size_t) n_rows * n_cols;
    if (n == 0) return;
    fp8_lo_to_bf16_kernel<<<grid_for(n, 256), 256, 0, stream>>>(lo, lo8, n);
}
