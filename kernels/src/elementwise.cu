// Small elementwise kernels: embedding gather, GELU(erf)-gated MLP activation, row gather and the
// random fills used by benchmarks.
//   gelu_mul: out[f] = 0.5 * g * (1 + erf(g / sqrt(2))) * u,  g = gu[f], u = gu[F + f]
#include "zamba2-common.cuh"

// ---- kernels -----------------------------------------------------------------------------------

static __global__ void gather_rows_kernel(bf16 * __restrict__ out, const bf16 * __restrict__ in,
                                          const int32_t * __restrict__ rows, int n_cols) {
    const int64_t r = blockIdx.y;
    const int64_t src = rows[r];
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n_cols; i += gridDim.x * blockDim.x) {
        out[r * n_cols + i] = in[src * n_cols + i];           // in: [*, n_cols] -> out: [n, n_cols]
    }
}

static __global__ void gelu_mul_kernel(bf16 * __restrict__ out, const bf16 * __restrict__ gu, int ffn) {
    const int64_t r = blockIdx.y;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < ffn; i += gridDim.x * blockDim.x) {
        const float g = zk_to_f32(gu[r * 2 * ffn + i]);       // gu: [T, 2F]
        const float u = zk_to_f32(gu[r * 2 * ffn + ffn + i]);
        // NOTE: HF rounds gelu(g) to bf16 before the product
        const float act = zk_to_f32(zk_to_bf16(0.5f * g * (1.0f + erff(g * 0.70710678118654752f))));
        out[r * ffn + i] = zk_to_bf16(act * u);                // out: [T, F]
    }
}

static __device__ __forceinline__ float zk_hash_uniform(uint64_t seed, uint64_t i) {
    uint64_t z = seed + i * 0x9E3779B97F4A7C15ull;  // splitmix64
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float) (z >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;  // [-1, 1)
}

static __global__ void fill_random_bf16_kernel(bf16 * x, int64_t n, uint64_t seed, float scale, float offset) {
    for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n; i += (int64_t) gridDim.x * blockDim.x) {
        x[i] = zk_to_bf16(offset + scale * zk_hash_uniform(seed, (uint64_t) i));
    }
}

static __global__ void fill_random_f32_kernel(float * x, int64_t n, uint64_t seed, float scale, float offset) {
    for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n; i += (int64_t) gridDim.x * blockDim.x) {
        x[i] = offset + scale * zk_hash_uniform(seed, (uint64_t) i);
    }
}

// ---- launchers ---------------------------------------------------------------------------------

void embedding_gather(bf16 * out, const bf16 * table, const int32_t * ids, int n_tokens, int hidden,
                      cudaStream_t stream) {
    gather_rows(out, table, ids, n_tokens, hidden, stream);
}

void gather_rows(bf16 * out, const bf16 * in, const int32_t * rows, int n, int n_cols,
                 cudaStream_t stream) {
    if (n <= 0) return;
    dim3 grid((n_cols + 255) / 256 < 8 ? (n_cols + 255) / 256 : 8, n);
    gather_rows_kernel<<<grid, 256, 0, stream>>>(out, in, rows, n_cols);
}

void gelu_mul(bf16 * out, const bf16 * gu, int n_rows, int ffn, cudaStream_t stream) {
    if (n_rows <= 0) return;
    dim3 grid((ffn + 255) / 256 < 16 ? (ffn + 255) / 256 : 16, n_rows);
    gelu_mul_kernel<<<grid, 256, 0, stream>>>(out, gu, ffn);
}

void fill_random_bf16(bf16 * x, int64_t n, uint64_t seed, float scale, float offset, cudaStream_t stream) {
    fill_random_bf16_kernel<<<1024, 256, 0, stream>>>(x, n, seed, scale, offset);
}

void fill_random_f32(float * x, int64_t n, uint64_t seed, float scale, float offset, cudaStream_t stream) {
    fill_random_f32_kernel<<<1024, 256, 0, stream>>>(x, n, seed, scale, offset);
}
