// Skinny GEMM for decode (M <= 8 token rows): y[m, n] = sum_k x[m, k] * w[n, k] + beta * y[m, n].
// Memory-bound on W (read once): one warp per output column n streams W's row with 16-byte loads,
// several in flight, and reuses each load for all M rows of x (x is tiny and stays in L1/L2).
// cuBLASLt's M = 1 kernels reached ~1.5 TB/s on the 1.2B decode (kernels/NOTES.md); this targets 3.5+.
#include "zamba2-common.cuh"

#define ZK_GEMV_WARPS 8

// ---- kernels -----------------------------------------------------------------------------------

template <int M, bool OUT_F32>
static __global__ void gemv_small_m_kernel(void * __restrict__ y, int ld_y, const bf16 * __restrict__ x, int ld_x,
                                           const bf16 * __restrict__ w, int N, int K, float beta) {
    const int lane = threadIdx.x % ZK_WARP_SIZE;
    const int64_t n = (int64_t) blockIdx.x * ZK_GEMV_WARPS + threadIdx.x / ZK_WARP_SIZE;
    if (n >= N) return;
    const bf16 * wrow = w + n * K;                            // w: [N, K]
    float acc[M];
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] = 0.0f;
#pragma unroll 4
    for (int k = lane * 8; k < K; k += ZK_WARP_SIZE * 8) {
        const uint4 wr = __ldg(reinterpret_cast<const uint4 *>(wrow + k));
        const __nv_bfloat162 * w2 = reinterpret_cast<const __nv_bfloat162 *>(&wr);
#pragma unroll
        for (int m = 0; m < M; ++m) {
            const uint4 xr = *reinterpret_cast<const uint4 *>(x + (int64_t) m * ld_x + k);  // x: [M, K]
            const __nv_bfloat162 * x2 = reinterpret_cast<const __nv_bfloat162 *>(&xr);
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const float2 wf = __bfloat1622float2(w2[u]);
                const float2 xf = __bfloat1622float2(x2[u]);
                acc[m] += wf.x * xf.x + wf.y * xf.y;
            }
        }
    }
#pragma unroll
    for (int m = 0; m < M; ++m) {
        const float v = zk_warp_sum(acc[m]);
        if (lane == 0) {
            if (OUT_F32) {
                float * yo = static_cast<float *>(y) + (int64_t) m * ld_y + n;         // y: [M, N] f32
                *yo = v + (beta != 0.0f ? beta * *yo : 0.0f);
            } else {
                bf16 * yo = static_cast<bf16 *>(y) + (int64_t) m * ld_y + n;           // y: [M, N] bf16
                *yo = zk_to_bf16(v + (beta != 0.0f ? beta * zk_to_f32(*yo) : 0.0f));
            }
        }
    }
}

// ---- launchers ---------------------------------------------------------------------------------

template <int M>
static void gemv_launch(void * y, bool y_f32, int ld_y, const bf16 * x, int ld_x, const bf16 * w, int N, int K,
                        float beta, cudaStream_t stream) {
    const unsigned blocks = (unsigned) ((N + ZK_GEMV_WARPS - 1) / ZK_GEMV_WARPS);
    if (y_f32) gemv_small_m_kernel<M, true><<<blocks, ZK_GEMV_WARPS * ZK_WARP_SIZE, 0, stream>>>(y, ld_y, x, ld_x, w, N, K, beta);
    else gemv_small_m_kernel<M, false><<<blocks, ZK_GEMV_WARPS * ZK_WARP_SIZE, 0, stream>>>(y, ld_y, x, ld_x, w, N, K, beta);
}

bool gemv_bf16_small_m(void * y, bool y_f32, int ld_y, const bf16 * x, int ld_x, const bf16 * w, int M, int N, int K,
                       float beta, cudaStream_t stream) {
    const bool aligned = K % 8 == 0 && ld_x % 8 == 0 && ((uintptr_t) x % 16) == 0 && ((uintptr_t) w % 16) == 0;
    if (M < 1 || M > 8 || !aligned || N <= 0) return false;
    switch (M) {  // exact row counts: a template for M = 4 must never read or write a 4th row of a 3-row call
        case 1: gemv_launch<1>(y, y_f32, ld_y, x, ld_x, w, N, K, beta, stream); break;
        case 2: gemv_launch<2>(y, y_f32, ld_y, x, ld_x, w, N, K, beta, stream); break;
        case 3: gemv_launch<3>(y, y_f32, ld_y, x, ld_x, w, N, K, beta, stream); break;
        case 4: gemv_launch<4>(y, y_f32, ld_y, x, ld_x, w, N, K, beta, stream); break;
        case 5: gemv_launch<5>(y, y_f32, ld_y, x, ld_x, w, N, K, beta, stream); break;
        case 6: gemv_launch<6>(y, y_f32, ld_y, x, ld_x, w, N, K, beta, stream); break;
        case 7: gemv_launch<7>(y, y_f32, ld_y, x, ld_x, w, N, K, beta, stream); break;
        default: gemv_launch<8>(y, y_f32, ld_y, x, ld_x, w, N, K, beta, stream); break;
    }
    return true;
}
