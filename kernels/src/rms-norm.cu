// RMSNorm with a fused residual add and an optional concatenated second input.
//   s = concat(a + b, c)                      [n_a + n_c]
//   y = s / sqrt(mean(s^2) + eps) * w         (fp32 math, one bf16 rounding)
// Uses: pre-mixer norm of X + Tr (hybrid layers: the sum is not written back), the shared block's
// input norm over concat(X, E) (2H), pre-FF norm and the final norm.
#include "zamba2-fp8.cuh"
#include "zamba2-launch.cuh"

// ---- kernels -----------------------------------------------------------------------------------

// One block per row; the row's sums stay in shared memory between the two passes.
// TA = bf16: the residual stream is bf16 and a + b is rounded as it would be stored.
// TA = float: fp32 residual stream; y may be written split (y_lo: the rows' bf16 remainders).
template <typename TA>
static __global__ void rms_norm_fused_kernel(bf16 * __restrict__ y, bf16 * __restrict__ y_lo, uint8_t * __restrict__ y_lo8,
                                             bf16 * __restrict__ sum_out,
                                             const TA * __restrict__ a, const TA * __restrict__ b,
                                             const bf16 * __restrict__ c, const bf16 * __restrict__ w,
                                             int n_a, int n_c, float eps) {
    zk_pdl_prologue();
    extern __shared__ float row[];  // [n_a + n_c]
    __shared__ float scratch[32];
    const int64_t r = blockIdx.x;
    const int n = n_a + n_c;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n_a; i += blockDim.x) {
        float s = zk_to_f32(a[r * n_a + i]);                  // a: [T, n_a]
        if (b) {
            s += zk_to_f32(b[r * n_a + i]);                   // b: [T, n_a]
            if (sizeof(TA) == 2) {
                // NOTE: the sum is rounded to bf16 first, as the bf16 residual stream holds it
                const bf16 s16 = zk_to_bf16(s);
                if (sum_out) sum_out[r * n_a + i] = s16;      // sum_out: [T, n_a]
                s = zk_to_f32(s16);
            }
        } else if (sum_out) {
            sum_out[r * n_a + i] = zk_to_bf16(s);
        }
        row[i] = s;
        ss += s * s;
    }
    for (int i = threadIdx.x; i < n_c; i += blockDim.x) {
        const float s = zk_to_f32(c[r * n_c + i]);            // c: [T, n_c]
        row[n_a + i] = s;
        ss += s * s;
    }
    ss = zk_block_sum(ss, scratch);
    const float inv = rsqrtf(ss / (float) n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        // y: [T, n_a + n_c] (and y_lo or y_lo8: [T, n_a + n_c])
        const float o = row[i] * inv * zk_to_f32(w[i]);
        if (y_lo8) zk_store_split_lo8(y + r * n + i, y_lo8 + r * n + i, o);
        else zk_store_split(y + r * n + i, y_lo ? y_lo + r * n + i : nullptr, o);
    }
}

// fp32 residual stream, vectorized: a thread holds ITEMS packs of PACK (4 or 8) consecutive values of the row in
// registers, every load is issued before the first use (one memory round trip per row instead of one per 256
// elements, which is what a one-row decode step waits on). Needs n_a, n_c multiples of PACK and
// n_a + n_c <= 256 PACK ITEMS. Stores: PACK bf16 of y, and PACK bf16 of y_lo or PACK bytes of y_lo8.
template <int PACK, int ITEMS>
static __global__ void __launch_bounds__(256) rms_norm_f32_vec_kernel(bf16 * __restrict__ y, bf16 * __restrict__ y_lo,
                                                                    uint8_t * __restrict__ y_lo8,
                                                                    const float * __restrict__ a, const float * __restrict__ b,
                                                                    const bf16 * __restrict__ c, const bf16 * __restrict__ w,
                                                                    int n_a, int n_c, float eps) {
    zk_pdl_prologue();
    __shared__ float scratch[32];
    const int64_t r = blockIdx.x;
    const int n = n_a + n_c;
    float v[ITEMS][PACK];
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
        const int k = (threadIdx.x + i * blockDim.x) * PACK;
#pragma unroll
        for (int u = 0; u < PACK; ++u) v[i][u] = 0.0f;
        if (k < n_a) {
            zk_load_pack<PACK>(v[i], a + r * n_a + k);                                        // a: [T, n_a]
            if (b) {
                float x2[PACK];
                zk_load_pack<PACK>(x2, b + r * n_a + k);                                      // b: [T, n_a]
#pragma unroll
                for (int u = 0; u < PACK; ++u) v[i][u] += x2[u];
            }
        } else if (k < n) {
            zk_load_pack<PACK>(v[i], c + r * n_c + (k - n_a));                                // c: [T, n_c] bf16
        }
#pragma unroll
        for (int u = 0; u < PACK; ++u) ss += v[i][u] * v[i][u];
    }
    ss = zk_block_sum(ss, scratch);
    const float inv = rsqrtf(ss / (float) n + eps);
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
        const int k = (threadIdx.x + i * blockDim.x) * PACK;
        if (k >= n) continue;
        float wf[PACK];
        zk_load_pack<PACK>(wf, w + k);                                                        // w: [n]
#pragma unroll
        for (int u = 0; u < PACK; ++u) wf[u] *= v[i][u] * inv;
        // y (and y_lo or y_lo8): [T, n]
        zk_store_split_pack<PACK>(y + r * n + k, y_lo ? y_lo + r * n + k : nullptr, y_lo8 ? y_lo8 + r * n + k : nullptr, wf);
    }
}

// ---- launchers ---------------------------------------------------------------------------------

void rms_norm_fused(bf16 * y, bf16 * sum_out, const bf16 * a, const bf16 * b, const bf16 * c,
                    const bf16 * w, int n_rows, int n_a, int n_c, float eps, cudaStream_t stream) {
    if (n_rows <= 0) return;
    const int n = n_a + (c ? n_c : 0);
    const size_t smem = (size_t) n * sizeof(float);
    zk_launch(rms_norm_fused_kernel<bf16>, n_rows, 256, smem, stream, y, nullptr, nullptr, sum_out, a, b, c, w, n_a, c ? n_c : 0, eps);
}

template <int PACK>
static void rms_norm_f32_vec_launch(bf16 * y, bf16 * y_lo, uint8_t * y_lo8, const float * a, const float * b, const bf16 * c,
                                    const bf16 * w, int n_rows, int n_a, int n_c, float eps, cudaStream_t stream) {
    const int items = (n_a + n_c + 256 * PACK - 1) / (256 * PACK);
#define ZK_RMS_VEC(I) zk_launch(rms_norm_f32_vec_kernel<PACK, I>, n_rows, 256, 0, stream, y, y_lo, y_lo8, a, b, c, w, n_a, n_c, eps)
    if (items <= 1) ZK_RMS_VEC(1);
    else if (items <= 2) ZK_RMS_VEC(2);
    else if (items <= 4) ZK_RMS_VEC(4);
    else ZK_RMS_VEC(8);
#undef ZK_RMS_VEC
}

void rms_norm_f32(bf16 * y, bf16 * y_lo, const float * a, const float * b, const bf16 * c, const bf16 * w,
                  int n_rows, int n_a, int n_c, float eps, cudaStream_t stream, uint8_t * y_lo8) {
    if (n_rows <= 0) return;
    if (y_lo8) y_lo = nullptr;
    const int nc = c ? n_c : 0;
    const int n = n_a + nc;
    const size_t smem = (size_t) n * sizeof(float);
    // PACK-wide rows: every row start stays aligned when n_a, n_c are multiples of PACK and the bases are aligned
    auto fits = [&](int pack) {
        const uintptr_t fa = 16, ha = 2 * pack;  // fp32 packs load as float4s, bf16 packs in one access
        return n_a % pack == 0 && nc % pack == 0 && n <= 2048 * pack && (uintptr_t) a % fa == 0 && (uintptr_t) b % fa == 0 &&
               (uintptr_t) c % ha == 0 && (uintptr_t) w % ha == 0 && (uintptr_t) y % ha == 0 && (uintptr_t) y_lo % ha == 0 &&
               (uintptr_t) y_lo8 % pack == 0;
    };
    // H200 (ZK_BENCH_PREFILL_KERNELS, T 2048, H 2048): 8-wide packs 15.4 us for x + tr (4-wide 16.2), 18.4 for
    // [X | E] (19.8); 128 threads per row instead of 256 lost at T 512 (4.8 vs 4.1 us)
    if (fits(8)) {
        rms_norm_f32_vec_launch<8>(y, y_lo, y_lo8, a, b, c, w, n_rows, n_a, nc, eps, stream);
    } else if (fits(4)) {
        rms_norm_f32_vec_launch<4>(y, y_lo, y_lo8, a, b, c, w, n_rows, n_a, nc, eps, stream);
    } else {
        zk_launch(rms_norm_fused_kernel<float>, n_rows, 256, smem, stream, y, y_lo, y_lo8, nullptr, a, b, c, w, n_a, nc, eps);
    }
}
