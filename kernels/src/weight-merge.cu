// Weight products made once at load time (the engine's decode weights, engine/zamba2-decode-weights.cc):
//
//   out[n, k] = bf16( base[n, k] + sum_j P[n, j] Q[j, k] )        (base optional; fp32 accumulation)
//
// A LoRA adapter merged into its weight is base = W [N, K], P = w1 [N, r], Q = w0 [r, K]; a projection folded
// into the one before it is base = none, P = W_linear [N, J], Q = W_down [J, K]. A plain smem-tiled SIMT GEMM:
// it runs once per checkpoint load (the 1.2B's six invocations: ~0.2 TFLOP in all), so clarity beats speed.
#include "zamba2-common.cuh"

namespace {

constexpr int kTile = 64;   // outputs per block side
constexpr int kStepJ = 16;  // j per shared-memory stage
constexpr int kPer = 4;     // outputs per thread side: 16 x 16 threads x 4 x 4

__global__ void __launch_bounds__(256) weight_merge_kernel(bf16 * __restrict__ out, const bf16 * __restrict__ base,
                                                           const bf16 * __restrict__ P, const bf16 * __restrict__ Q,
                                                           int N, int J, int K) {
    __shared__ float ps[kStepJ][kTile + 1];  // P tile transposed: ps[j][n]
    __shared__ float qs[kStepJ][kTile];      // Q tile: qs[j][k]
    const int n0 = blockIdx.y * kTile, k0 = blockIdx.x * kTile;
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    float acc[kPer][kPer] = {};
    for (int j0 = 0; j0 < J; j0 += kStepJ) {
        for (int i = threadIdx.x; i < kTile * kStepJ; i += blockDim.x) {
            const int r = i / kStepJ, jj = i % kStepJ;  // P: [N, J]
            const int n = n0 + r, j = j0 + jj;
            ps[jj][r] = n < N && j < J ? zk_to_f32(P[(int64_t) n * J + j]) : 0.0f;
            const int jq = i / kTile, cq = i % kTile;  // Q: [J, K]
            const int jg = j0 + jq, kg = k0 + cq;
            qs[jq][cq] = jg < J && kg < K ? zk_to_f32(Q[(int64_t) jg * K + kg]) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int jj = 0; jj < kStepJ; ++jj) {
            float a[kPer], b[kPer];
#pragma unroll
            for (int u = 0; u < kPer; ++u) {
                a[u] = ps[jj][ty + 16 * u];
                b[u] = qs[jj][tx + 16 * u];
            }
#pragma unroll
            for (int u = 0; u < kPer; ++u) {
#pragma unroll
                for (int w = 0; w < kPer; ++w) acc[u][w] += a[u] * b[w];
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
        const int n = n0 + ty + 16 * u;
        if (n >= N) continue;
#pragma unroll
        for (int w = 0; w < kPer; ++w) {
            const int k = k0 + tx + 16 * w;
            if (k >= K) continue;
            const int64_t o = (int64_t) n * K + k;
            out[o] = zk_to_bf16((base ? zk_to_f32(base[o]) : 0.0f) + acc[u][w]);
        }
    }
}

}  // namespace

bool weight_merge_bf16(bf16 * out, const bf16 * base, const bf16 * P, const bf16 * Q, int N, int J, int K, cudaStream_t stream) {
    if (!out || !P || !Q || N < 1 || J < 1 || K < 1) return false;
    const dim3 grid((unsigned) ((K + kTile - 1) / kTile), (unsigned) ((N + kTile - 1) / kTile));
    weight_merge_kernel<<<grid, 256, 0, stream>>>(out, base, P, Q, N, J, K);
    return true;
}
