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

// fp32 y and z, vectorized (see rms_norm_f32_vec_kernel): ITEMS float4 per thread in registers, all
// loads issued first. Needs group_size, d and ld_z multiples of 4 and group_size <= 1024 ITEMS.
template <int ITEMS>
static __global__ void __launch_bounds__(256) gated_rms_norm_vec_kernel(bf16 * __restrict__ out, bf16 * __restrict__ out_lo,
                                                                      const float * __restrict__ y, const float * __restrict__ z,
                                                                      int ld_z, const bf16 * __restrict__ w, int d,
                                                                      int group_size, float eps) {
    __shared__ float scratch[32];
    const int64_t r = blockIdx.x;
    const int g0 = blockIdx.y * group_size;
    float v[ITEMS][4];
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
        const int k = (threadIdx.x + i * blockDim.x) * 4;
        v[i][0] = v[i][1] = v[i][2] = v[i][3] = 0.0f;
        if (k < group_size) {
            const float4 yv = *reinterpret_cast<const float4 *>(y + r * d + g0 + k);      // y: [T, d]
            const float4 zv = *reinterpret_cast<const float4 *>(z + r * ld_z + g0 + k);   // z: [T, d] stride ld_z
            v[i][0] = yv.x * zk_silu(zv.x);
            v[i][1] = yv.y * zk_silu(zv.y);
            v[i][2] = yv.z * zk_silu(zv.z);
            v[i][3] = yv.w * zk_silu(zv.w);
        }
#pragma unroll
        for (int u = 0; u < 4; ++u) ss += v[i][u] * v[i][u];
    }
    ss = zk_block_sum(ss, scratch);
    const float inv = rsqrtf(ss / (float) group_size + eps);
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
        const int k = (threadIdx.x + i * blockDim.x) * 4;
        if (k >= group_size) continue;
        const uint2 wraw = *reinterpret_cast<const uint2 *>(w + g0 + k);                   // w: [d]
        const bf16 * w4 = reinterpret_cast<const bf16 *>(&wraw);
        const float4 o = make_float4(v[i][0] * inv * zk_to_f32(w4[0]), v[i][1] * inv * zk_to_f32(w4[1]),
                                     v[i][2] * inv * zk_to_f32(w4[2]), v[i][3] * inv * zk_to_f32(w4[3]));
        zk_store_split4(out + r * d + g0 + k, out_lo ? out_lo + r * d + g0 + k : nullptr, o);  // out (and out_lo): [T, d]
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
    const bool vec = group_size % 4 == 0 && d % 4 == 0 && ld_z % 4 == 0 && group_size <= 8192 && ((uintptr_t) y % 16) == 0 &&
                     ((uintptr_t) z % 16) == 0 && ((uintptr_t) w % 8) == 0 && ((uintptr_t) out % 8) == 0 &&
                     ((uintptr_t) out_lo % 8) == 0;
    if (vec) {
        const int items = (group_size + 1023) / 1024;
#define ZK_GATED_VEC(I) gated_rms_norm_vec_kernel<I><<<grid, 256, 0, stream>>>(out, out_lo, y, z, ld_z, w, d, group_size, eps)
        if (items <= 1) ZK_GATED_VEC(1);
        else if (items <= 2) ZK_GATED_VEC(2);
        else if (items <= 4) ZK_GATED_VEC(4);
        else ZK_GATED_VEC(8);
#undef ZK_GATED_VEC
        return;
    }
    gated_rms_norm_kernel<float><<<grid, 256, (size_t) group_size * sizeof(float), stream>>>(
        out, out_lo, y, z, ld_z, w, d, group_size, eps);
}
