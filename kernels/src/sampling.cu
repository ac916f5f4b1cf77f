// Greedy sampling and log-normalizer on the GPU, per row of fp32 logits [n, V]:
//   token = argmax_v logits[v] (lowest id on ties),  lse = max + log(sum_v exp(logits[v] - max))
// The sampled token's logprob is logits[token] - lse. Non-greedy sampling runs on the host over
// the rows it needs (see src/engine/cuda/host-sampler.ts).
#include "zamba2-common.cuh"

// ---- kernels -----------------------------------------------------------------------------------

static __global__ void logits_argmax_lse_kernel(int32_t * __restrict__ token, float * __restrict__ max_logit,
                                                float * __restrict__ lse, const float * __restrict__ logits,
                                                int vocab) {
    __shared__ float s_val[32];
    __shared__ int s_idx[32];
    __shared__ float scratch[32];
    const int64_t r = blockIdx.x;
    const float * row = logits + r * vocab;                   // logits: [n, V]
    float best = -INFINITY;
    int best_i = 0x7fffffff;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        const float v = row[i];
        if (v > best) { best = v; best_i = i; }
    }
    // warp argmax (ties -> lower index)
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, best, off);
        const int oi = __shfl_xor_sync(0xffffffffu, best_i, off);
        if (ov > best || (ov == best && oi < best_i)) { best = ov; best_i = oi; }
    }
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    if (lane == 0) { s_val[warp] = best; s_idx[warp] = best_i; }
    __syncthreads();
    if (warp == 0) {
        best = lane < n_warps ? s_val[lane] : -INFINITY;
        best_i = lane < n_warps ? s_idx[lane] : 0x7fffffff;
        for (int off = 16; off > 0; off >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, best, off);
            const int oi = __shfl_xor_sync(0xffffffffu, best_i, off);
            if (ov > best || (ov == best && oi < best_i)) { best = ov; best_i = oi; }
        }
        if (lane == 0) { s_val[0] = best; s_idx[0] = best_i; }
    }
    __syncthreads();
    const float m = s_val[0];
    float sum = 0.0f;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) sum += expf(row[i] - m);
    sum = zk_block_sum(sum, scratch);
    if (threadIdx.x == 0) {
        token[r] = s_idx[0] == 0x7fffffff ? 0 : s_idx[0];  // NOTE: all-NaN row -> 0
        max_logit[r] = m;
        lse[r] = m + logf(sum);
    }
}

// ---- launchers ---------------------------------------------------------------------------------

void logits_argmax_lse(int32_t * token, float * max_logit, float * lse, const float * logits,
                       int n_rows, int vocab, cudaStream_t stream) {
    if (n_rows <= 0) return;
    logits_argmax_lse_kernel<<<n_rows, 512, 0, stream>>>(token, max_logit, lse, logits, vocab);
}
