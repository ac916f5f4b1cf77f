// Small elementwise kernels: embedding gather, GELU(erf)-gated MLP activation, row gather and the
// random fills used by benchmarks.
//   gelu_mul: out[f] = 0.5 * g * (1 + erf(g / sqrt(2))) * u,  g = gu[f], u = gu[F + f]
#include "zamba2-fp8.cuh"
#include "zamba2-launch.cuh"

// ---- kernels -----------------------------------------------------------------------------------

template <typename TO, typename TI>
static __global__ void gather_rows_kernel(TO * __restrict__ out, const TI * __restrict__ in,
                                          const int32_t * __restrict__ rows, int n_cols) {
    zk_pdl_prologue();
    const int64_t r = blockIdx.y;
    const int64_t src = rows[r];
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n_cols; i += gridDim.x * blockDim.x) {
        zk_store(out + r * n_cols + i, zk_to_f32(in[src * n_cols + i]));  // in: [*, n_cols] -> out: [n, n_cols]
    }
}

template <typename TG>
static __global__ void gelu_mul_kernel(bf16 * __restrict__ out, const TG * __restrict__ gu, int ffn) {
    zk_pdl_prologue();
    const int64_t r = blockIdx.y;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < ffn; i += gridDim.x * blockDim.x) {
        const float g = zk_to_f32(gu[r * 2 * ffn + i]);       // gu: [T, 2F]
        const float u = zk_to_f32(gu[r * 2 * ffn + ffn + i]);
        float act = 0.5f * g * (1.0f + erff(g * 0.70710678118654752f));
        // NOTE: HF rounds gelu(g) to bf16 before the product; the fp32 path keeps it
        if (sizeof(TG) == 2) act = zk_to_f32(zk_to_bf16(act));
        out[r * ffn + i] = zk_to_bf16(act * u);                // out: [T, F]
    }
}

// out[0..n) = bf16(in), out[n..2n) = bf16(in - bf16(in)) (or lo8[0..n) = e4m3 of the scaled remainders): the
// split GEMM input of an fp32 activation.
static __global__ void split_rows_kernel(bf16 * __restrict__ out, uint8_t * __restrict__ lo8, const float * __restrict__ in,
                                         int64_t n_elems) {
    zk_pdl_prologue();
    for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n_elems; i += (int64_t) gridDim.x * blockDim.x) {
        // in: [n, cols] -> out: [2n, cols] (or out [n, cols] + lo8 [n, cols])
        if (lo8) zk_store_split_lo8(out + i, lo8 + i, in[i]);
        else zk_store_split(out + i, out + n_elems + i, in[i]);
    }
}

// PACK consecutive elements per thread and step: PACK / 4 16-byte loads, PACK-wide stores (zk_store_split_pack).
template <int PACK>
static __global__ void split_rows_vec_kernel(bf16 * __restrict__ out, uint8_t * __restrict__ lo8, const float * __restrict__ in,
                                             int64_t n_packs) {
    zk_pdl_prologue();
    const int64_t n_elems = n_packs * PACK;
    for (int64_t p = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; p < n_packs; p += (int64_t) gridDim.x * blockDim.x) {
        float v[PACK];
        zk_load_pack<PACK>(v, in + p * PACK);
        // in: [n, cols] -> out: [2n, cols] (or out [n, cols] + lo8 [n, cols])
        zk_store_split_pack<PACK>(out + p * PACK, lo8 ? nullptr : out + n_elems + p * PACK, lo8 ? lo8 + p * PACK : nullptr, v);
    }
}

// y[r, c] (+)= Y[r, c] + Y[n + r, c]: sums the hi and lo halves of a split GEMM's output.
static __global__ void combine_halves_kernel(float * __restrict__ y, int ld_y, const float * __restrict__ Y, int n_rows,
                                             int n_cols, bool accumulate) {
    const int64_t r = blockIdx.y;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < n_cols; c += gridDim.x * blockDim.x) {
        const float v = Y[r * n_cols + c] + Y[(r + n_rows) * n_cols + c];  // Y: [2n, cols]
        float * dst = y + r * ld_y + c;                                    // y: [n, cols] stride ld_y
        *dst = accumulate ? *dst + v : v;
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

void embedding_gather(float * out, const bf16 * table, const int32_t * ids, int n_tokens, int hidden,
                      cudaStream_t stream) {
    if (n_tokens <= 0) return;
    dim3 grid((hidden + 255) / 256 < 8 ? (hidden + 255) / 256 : 8, n_tokens);
    zk_launch(gather_rows_kernel<float, bf16>, grid, 256, 0, stream, out, table, ids, hidden);
}

void gather_rows(bf16 * out, const bf16 * in, const int32_t * rows, int n, int n_cols,
                 cudaStream_t stream) {
    if (n <= 0) return;
    dim3 grid((n_cols + 255) / 256 < 8 ? (n_cols + 255) / 256 : 8, n);
    zk_launch(gather_rows_kernel<bf16, bf16>, grid, 256, 0, stream, out, in, rows, n_cols);
}

void gather_rows(float * out, const float * in, const int32_t * rows, int n, int n_cols,
                 cudaStream_t stream) {
    if (n <= 0) return;
    dim3 grid((n_cols + 255) / 256 < 8 ? (n_cols + 255) / 256 : 8, n);
    zk_launch(gather_rows_kernel<float, float>, grid, 256, 0, stream, out, in, rows, n_cols);
}

void gelu_mul(bf16 * out, const bf16 * gu, int n_rows, int ffn, cudaStream_t stream) {
    if (n_rows <= 0) return;
    dim3 grid((ffn + 255) / 256 < 16 ? (ffn + 255) / 256 : 16, n_rows);
    zk_launch(gelu_mul_kernel<bf16>, grid, 256, 0, stream, out, gu, ffn);
}

void gelu_mul(bf16 * out, const float * gu, int n_rows, int ffn, cudaStream_t stream) {
    if (n_rows <= 0) return;
    dim3 grid((ffn + 255) / 256 < 16 ? (ffn + 255) / 256 : 16, n_rows);
    zk_launch(gelu_mul_kernel<float>, grid, 256, 0, stream, out, gu, ffn);
}

void split_rows_bf16(bf16 * out, const float * in, int n_rows, int n_cols, cudaStream_t stream, uint8_t * out_lo8) {
    const int64_t n = (int64_t) n_rows * n_cols;
    if (n <= 0) return;
    // the lo half starts n elements after out: aligned like out when n % PACK == 0
    auto fits = [&](int pack) {
        return n % pack == 0 && (uintptr_t) in % 16 == 0 && (uintptr_t) out % (2 * pack) == 0 && (uintptr_t) out_lo8 % pack == 0;
    };
    // H200 (ZK_BENCH_PREFILL_KERNELS, T 2048, [T, 4096]): scalar 25.6 us, 4-wide 19.3, 8-wide 19.2 (lo8: 17.0);
    // at T 512 8-wide leads (5.7 vs 6.2 us)
    const int pack = fits(8) ? 8 : (fits(4) ? 4 : 1);
    const int64_t packs = n / pack;
    const int64_t blocks = (packs + 255) / 256 < 4096 ? (packs + 255) / 256 : 4096;
    if (pack == 8) zk_launch(split_rows_vec_kernel<8>, (unsigned) blocks, 256, 0, stream, out, out_lo8, in, packs);
    else if (pack == 4) zk_launch(split_rows_vec_kernel<4>, (unsigned) blocks, 256, 0, stream, out, out_lo8, in, packs);
    else zk_launch(split_rows_kernel, (unsigned) blocks, 256, 0, stream, out, out_lo8, in, n);
}

void combine_halves(float * y, int ld_y, const float * Y, int n_rows, int n_cols, bool accumulate, cudaStream_t stream) {
    if (n_rows <= 0) return;
    dim3 grid((n_cols + 255) / 256 < 32 ? (n_cols + 255) / 256 : 32, n_rows);
    combine_halves_kernel<<<grid, 256, 0, stream>>>(y, ld_y, Y, n_rows, n_cols, accumulate);
}

void fill_random_bf16(bf16 * x, int64_t n, uint64_t seed, float scale, float offset, cudaStream_t stream) {
    fill_random_bf16_kernel<<<1024, 256, 0, stream>>>(x, n, seed, scale, offset);
}

void fill_random_f32(float * x, int64_t n, uint64_t seed, float scale, float offset, cudaStream_t stream) {
    fill_random_f32_kernel<<<1024, 256, 0, stream>>>(x, n, seed, scale, offset);
}
