// Gated group RMSNorm of the Mamba2 mixer (norm_before_gate = False):
//   v = y * silu(z)                                   [d]
//   per group g of d/G consecutive channels: v_g / sqrt(mean(v_g^2) + eps) * w_g
#include "zamba2-fp8.cuh"
#include "zamba2-launch.cuh"

// ---- kernels -----------------------------------------------------------------------------------

// One block per (row, group).
template <typename TZ>
static __global__ void gated_rms_norm_kernel(bf16 * __restrict__ out, bf16 * __restrict__ out_lo, uint8_t * __restrict__ out_lo8,
                                             const float * __restrict__ y, const TZ * __restrict__ z, int ld_z,
                                             const bf16 * __restrict__ w, int d, int group_size,
                                             float eps) {
    zk_pdl_prologue();
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
        // out (and out_lo or out_lo8): [T, d]
        const float o = v[i] * inv * zk_to_f32(w[g0 + i]);
        if (out_lo8) zk_store_split_lo8(out + r * d + g0 + i, out_lo8 + r * d + g0 + i, o);
        else zk_store_split(out + r * d + g0 + i, out_lo ? out_lo + r * d + g0 + i : nullptr, o);
    }
}

// fp32 y and z, vectorized (see rms_norm_f32_vec_kernel): ITEMS packs of PACK (4 or 8) values per thread in
// registers, all loads issued first. Needs group_size, d and ld_z multiples of PACK and group_size <= 256 PACK ITEMS.
template <int PACK, int ITEMS>
static __global__ void __launch_bounds__(256) gated_rms_norm_vec_kernel(bf16 * __restrict__ out, bf16 * __restrict__ out_lo,
                                                                      uint8_t * __restrict__ out_lo8,
                                                                      const float * __restrict__ y, const float * __restrict__ z,
                                                                      int ld_z, const bf16 * __restrict__ w, int d,
                                                                      int group_size, float eps) {
    zk_pdl_prologue();
    __shared__ float scratch[32];
    const int64_t r = blockIdx.x;
    const int g0 = blockIdx.y * group_size;
    float v[ITEMS][PACK];
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
        const int k = (threadIdx.x + i * blockDim.x) * PACK;
#pragma unroll
        for (int u = 0; u < PACK; ++u) v[i][u] = 0.0f;
        if (k < group_size) {
            float zv[PACK];
            zk_load_pack<PACK>(v[i], y + r * d + g0 + k);      // y: [T, d]
            zk_load_pack<PACK>(zv, z + r * ld_z + g0 + k);     // z: [T, d] stride ld_z
#pragma unroll
            for (int u = 0; u < PACK; ++u) v[i][u] *= zk_silu(zv[u]);
        }
#pragma unroll
        for (int u = 0; u < PACK; ++u) ss += v[i][u] * v[i][u];
    }
    ss = zk_block_sum(ss, scratch);
    const float inv = rsqrtf(ss / (float) group_size + eps);
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
        const int k = (threadIdx.x + i * blockDim.x) * PACK;
        if (k >= group_size) continue;
        float wf[PACK];
        zk_load_pack<PACK>(wf, w + g0 + k);                    // w: [d]
#pragma unroll
        for (int u = 0; u < PACK; ++u) wf[u] *= v[i][u] * inv;
        const int64_t o = r * d + g0 + k;                      // out (and out_lo or out_lo8): [T, d]
        zk_store_split_pack<PACK>(out + o, out_lo ? out_lo + o : nullptr, out_lo8 ? out_lo8 + o : nullptr, wf);
    }
}

// ---- launchers ---------------------------------------------------------------------------------

void gated_rms_norm(bf16 * out, const float * y, const bf16 * z, int ld_z, const bf16 * w,
                    int n_rows, int d, int n_groups, float eps, cudaStream_t stream) {
    if (n_rows <= 0) return;
    const int group_size = d / n_groups;
    dim3 grid(n_rows, n_groups);
    zk_launch(gated_rms_norm_kernel<bf16>, grid, 256, (size_t) group_size * sizeof(float), stream, 
        out, nullptr, nullptr, y, z, ld_z, w, d, group_size, eps);
}

template <int PACK>
static void gated_vec_launch(bf16 * out, bf16 * out_lo, uint8_t * out_lo8, const float * y, const float * z, int ld_z,
                             const bf16 * w, int n_rows, int d, int n_groups, float eps, cudaStream_t stream) {
    const int group_size = d / n_groups;
    const dim3 grid(n_rows, n_groups);
    const int items = (group_size + 256 * PACK - 1) / (256 * PACK);
#define ZK_GATED_VEC(I) \
    zk_launch(gated_rms_norm_vec_kernel<PACK, I>, grid, 256, 0, stream, out, out_lo, out_lo8, y, z, ld_z, w, d, group_size, eps)
    if (items <= 1) ZK_GATED_VEC(1);
    else if (items <= 2) ZK_GATED_VEC(2);
    else if (items <= 4) ZK_GATED_VEC(4);
    else ZK_GATED_VEC(8);
#undef ZK_GATED_VEC
}

void gated_rms_norm_f32(bf16 * out, bf16 * out_lo, const float * y, const float * z, int ld_z, const bf16 * w,
                        int n_rows, int d, int n_groups, float eps, cudaStream_t stream, uint8_t * out_lo8) {
    if (n_rows <= 0) return;
    if (out_lo8) out_lo = nullptr;
    const int group_size = d / n_groups;
    auto fits = [&](int pack) {
        const uintptr_t ha = 2 * pack;  // bf16 pack bytes; fp32 packs load as float4s
        return group_size % pack == 0 && d % pack == 0 && ld_z % pack == 0 && group_size <= 2048 * pack &&
               (uintptr_t) y % 16 == 0 && (uintptr_t) z % 16 == 0 && (uintptr_t) w % ha == 0 && (uintptr_t) out % ha == 0 &&
               (uintptr_t) out_lo % ha == 0 && (uintptr_t) out_lo8 % pack == 0;
    };
    // H200 (ZK_BENCH_PREFILL_KERNELS, T 2048, d 4096): 8-wide packs 29.0 us (4-wide 30.8; lo8 26.9); 128 threads
    // per row instead of 256 lost (T 512: 11.2 vs 9.9 us)
    if (fits(8)) {
        gated_vec_launch<8>(out, out_lo, out_lo8, y, z, ld_z, w, n_rows, d, n_groups, eps, stream);
    } else if (fits(4)) {
        gated_vec_launch<4>(out, out_lo, out_lo8, y, z, ld_z, w, n_rows, d, n_groups, eps, stream);
    } else {
        const dim3 grid(n_rows, n_groups);
        zk_launch(gated_rms_norm_kernel<float>, grid, 256, (size_t) group_size * sizeof(float), stream, 
            out, out_lo, out_lo8, y, z, ld_z, w, d, group_size, eps);
    }
}
