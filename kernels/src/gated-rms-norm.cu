// Gated group RMSNorm of the Mamba2 mixer (norm_before_gate = False):
//   v = y * silu(z)                                   [d]
//   per group g of d/G consecutive channels: v_g / sqrt(mean(v_g^2) + eps) * w_g
#include "zamba2-common.cuh"

// ---- kernels -----------------------------------------------------------------------------------

// One block per (row, group).
template <typename TZ>
static __global__ void gated_rms_norm_kernel(bf16 * __restrict__ out, bf16 * __restrict__ out_lo,
                                             const float * __restrict__ y, const TZ * __restrict__ z, int ld_z,
                                             const bf16 * __restrict__ w, int d, int group_size,
                                             float eps) {
    extern __shared__ float v[];  // [group_size]
    __shared__ float scratch[32];
    const int64_t r = blockIdx.x;
    const int g0 = blockIdx.y * group_size;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < group_size; i += blockDim.x) {
        const float zi = zk_to_f32(z[r * ld_z + g0 + i]);     // z: [T, d] stride ld_z
        const float vi = y[r * d + g0 + i] * zk_silu(zi);     // y: [T, d]
        v[i] = vi;
        ss += vi * vi;
    }
    ss = zk_block_sum(ss, scratch);
    const float inv = rsqrtf(ss / (float) group_size + eps);
    for (int i = threadIdx.x; i < group_size; i += blockDim.x) {
        // out (and out_lo): [T, d]
        zk_store_split(out + r * d + g0 + i, out_lo ? out_lo + r * d + g0 + i : nullptr, v[i] * inv * zk_to_f32(w[g0 + i]));
    }
}

// ---- launchers ---------------------------------------------------------------------------------

void gated_rms_norm(bf16 * out, const float * y, const bf16 * z, int ld_z, const bf16 * w,
                    int n_rows, int d, int n_groups, float eps, cudaStream_t stream) {
    if (n_rows <= 0) return;
    const int group_size = d / n_groups;
    dim3 grid(n_rows, n_groups);
    gated_rms_norm_kernel<bf16><<<grid, 256, (size_t) group_size * sizeof(float), stream>>>(
        out, nullptr, y, z, ld_z, w, d, group_size, eps);
}

void gated_rms_norm_f32(bf16 * out, bf16 * out_lo, const float * y, const float * z, int ld_z, const bf16 * w,
                        int n_rows, int d, int n_groups, float eps, cudaStream_t stream) {
    if (n_rows <= 0) return;
    const int group_size = d / n_groups;
    dim3 grid(n_rows, n_groups);
    gated_rms_norm_kernel<float><<<grid, 256, (size_t) group_size * sizeof(float), stream>>>(
        out, out_lo, y, z, ld_z, w, d, group_size, eps);
}
