// NeoX rotary embedding over the full head dim (Zamba2 `use_mem_rope`), in place on q or k.
//   inv_freq_i = theta^(-2i/D),  ang = pos * inv_freq_i (fp32),  i in [0, D/2)
//   x'[i]       = x[i] * cos(ang) - x[i + D/2] * sin(ang)
//   x'[i + D/2] = x[i + D/2] * cos(ang) + x[i] * sin(ang)
#include "zamba2-common.cuh"
#include "zamba2-launch.cuh"

// ---- kernels -----------------------------------------------------------------------------------

// One thread per (token, head, i < D/2).
template <typename TX>
static __global__ void rope_neox_kernel(TX * __restrict__ x, const int32_t * __restrict__ positions,
                                        int n_heads, int head_dim, float theta) {
    zk_pdl_prologue();
    const int half = head_dim / 2;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t t = blockIdx.y;
    const int h = blockIdx.z;
    if (i >= half) return;
    // NOTE: same expression order as HF (1 / theta^(2i/D), then pos * inv_freq in fp32)
    const float inv_freq = 1.0f / powf(theta, (float) (2 * i) / (float) head_dim);
    const float ang = (float) positions[t] * inv_freq;
    float sn, cs;
    sincosf(ang, &sn, &cs);
    TX * row = x + (t * n_heads + h) * head_dim;             // x: [T, n_heads, D]
    const float x1 = zk_to_f32(row[i]);
    const float x2 = zk_to_f32(row[i + half]);
    zk_store(row + i, x1 * cs - x2 * sn);
    zk_store(row + i + half, x2 * cs + x1 * sn);
}

// q and k together, one thread per (token, i < D/2, group of heads_per_thread heads): the angle's powf and
// sincosf (the costly part at prefill sizes) are computed once per (token, i, group) instead of once per head
// and tensor. Large steps walk every head in one thread; decode steps spread the heads over blocks (grid.z)
// so a one-token step is not one block walking 32 heads in series.
static __global__ void rope_neox_qk_kernel(float * __restrict__ q, float * __restrict__ k, const int32_t * __restrict__ positions,
                                           int n_heads, int head_dim, float theta, int heads_per_thread) {
    zk_pdl_prologue();
    const int half = head_dim / 2;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t t = blockIdx.y;
    const int h0 = blockIdx.z * heads_per_thread, h1 = min(n_heads, h0 + heads_per_thread);
    if (i >= half) return;
    // NOTE: same expressions as rope_neox_kernel (HF's order), so both paths give identical values
    const float inv_freq = 1.0f / powf(theta, (float) (2 * i) / (float) head_dim);
    const float ang = (float) positions[t] * inv_freq;
    float sn, cs;
    sincosf(ang, &sn, &cs);
    for (int h = h0; h < h1; ++h) {
        float * rq = q + (t * n_heads + h) * head_dim;      // q: [T, n_heads, D]
        float * rk = k + (t * n_heads + h) * head_dim;      // k: [T, n_heads, D]
        const float q1 = rq[i], q2 = rq[i + half], k1 = rk[i], k2 = rk[i + half];
        rq[i] = q1 * cs - q2 * sn;
        rq[i + half] = q2 * cs + q1 * sn;
        rk[i] = k1 * cs - k2 * sn;
        rk[i + half] = k2 * cs + k1 * sn;
    }
}

// ---- launchers ---------------------------------------------------------------------------------

void rope_neox_qk_inplace(float * q, float * k, const int32_t * positions, int n_tokens, int n_heads, int head_dim,
                          float theta, cudaStream_t stream) {
    if (n_tokens <= 0) return;
    const int half = head_dim / 2;
    const int threads = half < 128 ? ((half + 31) / 32) * 32 : 128;
    // enough blocks to cover the GPU without splitting heads; one head per thread for small steps
    const int col_blocks = (half + threads - 1) / threads;
    const int heads_per_thread = (int64_t) col_blocks * n_tokens >= 512 ? n_heads : 1;
    const dim3 grid(col_blocks, n_tokens, (n_heads + heads_per_thread - 1) / heads_per_thread);
    zk_launch(rope_neox_qk_kernel, grid, threads, 0, stream, q, k, positions, n_heads, head_dim, theta, heads_per_thread);
}

void rope_neox_inplace(bf16 * x, const int32_t * positions, int n_tokens, int n_heads, int head_dim,
                       float theta, cudaStream_t stream) {
    if (n_tokens <= 0) return;
    const int half = head_dim / 2;
    const int threads = half < 128 ? ((half + 31) / 32) * 32 : 128;
    dim3 grid((half + threads - 1) / threads, n_tokens, n_heads);
    zk_launch(rope_neox_kernel<bf16>, grid, threads, 0, stream, x, positions, n_heads, head_dim, theta);
}

void rope_neox_inplace(float * x, const int32_t * positions, int n_tokens, int n_heads, int head_dim,
                       float theta, cudaStream_t stream) {
    if (n_tokens <= 0) return;
    const int half = head_dim / 2;
    const int threads = half < 128 ? ((half + 31) / 32) * 32 : 128;
    dim3 grid((half + threads - 1) / threads, n_tokens, n_heads);
    zk_launch(rope_neox_kernel<float>, grid, threads, 0, stream, x, positions, n_heads, head_dim, theta);
}
