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
    rms_norm_fused_kernel<float><<<n_rows, 256, smem, stream>>>(y, y_lo, nullptr, a, b, c, w, n_a, c ? n_c : 0, eps);
}
