// RMSNorm with a fused residual add and an optional concatenated second input.
//   s = concat(a + b, c)                      [n_a + n_c]
//   y = s / sqrt(mean(s^2) + eps) * w         (fp32 math, one bf16 rounding)
// Uses: pre-mixer norm of X + Tr (hybrid layers: the sum is not written back), the shared block's
// input norm over concat(X, E) (2H), pre-FF norm and the final norm.
#include "zamba2-common.cuh"

// ---- kernels -----------------------------------------------------------------------------------

// One block per row; the row's sums stay in shared memory between the two passes.
// TA = bf16: the residual stream is bf16 and a + b is rounded as it would be stored.
// TA = float: fp32 residual stream; y may be written split (y_lo: the rows' bf16 remainders).
template <typename TA>
static __global__ void rms_norm_fused_kernel(bf16 * __restrict__ y, bf16 * __restrict__ y_lo, bf16 * __restrict__ sum_out,
                                             const TA * __restrict__ a, const TA * __restrict__ b,
                                             const bf16 * __restrict__ c, const bf16 * __restrict__ w,
                                             int n_a, int n_c, float eps) {
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
        // y: [T, n_a + n_c] (and y_lo: [T, n_a + n_c])
        zk_store_split(y + r * n + i, y_lo ? y_lo + r * n + i : nullptr, row[i] * inv * zk_to_f32(w[i]));
    }
}

// fp32 residual stream, vectorized: a thread holds ITEMS float4 of the row in registers, every load is
// issued before the first use (one memory round trip per row instead of one per 256 elements, which
// is what a one-row decode step waits on). Needs n_a, n_c multiples of 4 and n_a + n_c <= 1024 ITEMS.
template <int ITEMS>
static __global__ void __launch_bounds__(256) rms_norm_f32_vec_kernel(bf16 * __restrict__ y, bf16 * __restrict__ y_lo,
                                                                    const float * __restrict__ a, const float * __restrict__ b,
                                                                    const bf16 * __restrict__ c, const bf16 * __restrict__ w,
                                                                    int n_a, int n_c, float eps) {
    __shared__ float scratch[32];
    const int64_t r = blockIdx.x;
    const int n = n_a + n_c;
    float v[ITEMS][4];
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
        const int k = (threadIdx.x + i * blockDim.x) * 4;
        v[i][0] = v[i][1] = v[i][2] = v[i][3] = 0.0f;
        if (k < n_a) {
            float4 x = *reinterpret_cast<const float4 *>(a + r * n_a + k);                    // a: [T, n_a]
            if (b) {
                const float4 x2 = *reinterpret_cast<const float4 *>(b + r * n_a + k);         // b: [T, n_a]
                x.x += x2.x; x.y += x2.y; x.z += x2.z; x.w += x2.w;
            }
            v[i][0] = x.x; v[i][1] = x.y; v[i][2] = x.z; v[i][3] = x.w;
        } else if (k < n) {
            const uint2 raw = *reinterpret_cast<const uint2 *>(c + r * n_c + (k - n_a));     // c: [T, n_c] bf16
            const bf16 * c4 = reinterpret_cast<const bf16 *>(&raw);
#pragma unroll
            for (int u = 0; u < 4; ++u) v[i][u] = zk_to_f32(c4[u]);
        }
#pragma unroll
        for (int u = 0; u < 4; ++u) ss += v[i][u] * v[i][u];
    }
    ss = zk_block_sum(ss, scratch);
    const float inv = rsqrtf(ss / (float) n + eps);
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
        const int k = (threadIdx.x + i * blockDim.x) * 4;
        if (k >= n) continue;
        const uint2 wraw = *reinterpret_cast<const uint2 *>(w + k);                              // w: [n]
        const bf16 * w4 = reinterpret_cast<const bf16 *>(&wraw);
        const float4 o = make_float4(v[i][0] * inv * zk_to_f32(w4[0]), v[i][1] * inv * zk_to_f32(w4[1]),
                                     v[i][2] * inv * zk_to_f32(w4[2]), v[i][3] * inv * zk_to_f32(w4[3]));
        zk_store_split4(y + r * n + k, y_lo ? y_lo + r * n + k : nullptr, o);  // y (and y_lo): [T, n]
    }
}

// ---- launchers ---------------------------------------------------------------------------------

void rms_norm_fused(bf16 * y, bf16 * sum_out, const bf16 * a, const bf16 * b, const bf16 * c,
                    const bf16 * w, int n_rows, int n_a, int n_c, float eps, cudaStream_t stream) {
    if (n_rows <= 0) return;
    const int n = n_a + (c ? n_c : 0);
    const size_t smem = (size_t) n * sizeof(float);
    rms_norm_fused_kernel<bf16><<<n_rows, 256, smem, stream>>>(y, nullptr, sum_out, a, b, c, w, n_a, c ? n_c : 0, eps);
}

void rms_norm_f32(bf16 * y, bf16 * y_lo, const float * a, const float * b, const bf16 * c, const bf16 * w,
                  int n_rows, int n_a, int n_c, float eps, cudaStream_t stream) {
    if (n_rows <= 0) return;
    const int n = n_a + (c ? n_c : 0);
    const size_t smem = (size_t) n * sizeof(float);
    const int nc = c ? n_c : 0;
    const bool vec = n_a % 4 == 0 && nc % 4 == 0 && n <= 8192 && ((uintptr_t) a % 16) == 0 && ((uintptr_t) b % 16) == 0 &&
                     ((uintptr_t) c % 8) == 0 && ((uintptr_t) w % 8) == 0 && ((uintptr_t) y % 8) == 0 &&
                     ((uintptr_t) y_lo % 8) == 0;
    if (vec) {
        const int items = (n + 1023) / 1024;
#define ZK_RMS_VEC(I) rms_norm_f32_vec_kernel<I><<<n_rows, 256, 0, stream>>>(y, y_lo, a, b, c, w, n_a, nc, eps)
        if (items <= 1) ZK_RMS_VEC(1);
        else if (items <= 2) ZK_RMS_VEC(2);
        else if (items <= 4) ZK_RMS_VEC(4);
        else ZK_RMS_VEC(8);
#undef ZK_RMS_VEC
        return;
    }
    rms_norm_fused_kernel<float><<<n_rows, 256, smem, stream>>>(y, y_lo, nullptr, a, b, c, w, n_a, nc, eps);
}
