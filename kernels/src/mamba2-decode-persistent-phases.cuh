// The persistent Mamba2 decode's phases between the GEMVs (mamba2-decode-persistent.cu includes this once): the
// staged inputs of in_proj (rmsnorm) and out_proj (the gated norm), the conv operands, the state step of one state
// unit, and the loads each of them needs, issued a GEMV phase ahead and held as loaded.
#pragma once

#include <cstdint>

#include "mamba2-decode-persistent-ring.cuh"

namespace {

// Loads v[0..n) of this consumer thread's float4s (k = 4 (tid + 256 i)) with __ldcg.
__device__ inline void pk_load_vec(float4 (&v)[PK_MAX_VEC4], const float * src, int n) {
#pragma unroll
    for (int i = 0; i < PK_MAX_VEC4; ++i) {
        const int k = 4 * ((int) threadIdx.x + PK_CONSUMERS * i);
        v[i] = k < n ? __ldcg(reinterpret_cast<const float4 *>(src + k)) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
}

// A staged vector's norm weights, this consumer thread's share (4 bf16 per float4 of pk_load_vec): loaded a GEMV
// phase ahead (the kernel's prefetch), so that the staging waits for one round trip (x or y), not two.
struct pk_vec_weights {
    uint2 w[PK_MAX_VEC4];
};
__device__ inline void pk_load_vec_weights(pk_vec_weights & v, const bf16 * w, int n) {
#pragma unroll
    for (int i = 0; i < PK_MAX_VEC4; ++i) {
        const int k = 4 * ((int) threadIdx.x + PK_CONSUMERS * i);
        v.w[i] = k < n ? *reinterpret_cast<const uint2 *>(w + k) : make_uint2(0u, 0u);
    }
}
// xs[k..k+3] = w[k..k+3] * (v * f)
__device__ inline void pk_store_scaled(float * xs, int k, const uint2 & w, const float4 & v, float f) {
    const float2 w01 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&w.x));
    const float2 w23 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&w.y));
    *reinterpret_cast<float4 *>(xs + k) = make_float4(w01.x * (v.x * f), w01.y * (v.y * f), w23.x * (v.z * f), w23.y * (v.w * f));
}

// in_proj's input: xs = w * (s * rsqrt(mean(s^2) + eps)), s = x (+ tr).
__device__ inline void pk_stage_rmsnorm(const pk_params & p, const pk_smem & s, const pk_vec_weights & w, const float * tr) {
    const int H = p.a.hidden;
    float4 v[PK_MAX_VEC4];
    pk_load_vec(v, p.a.x, H);
    if (tr) {
        float4 t[PK_MAX_VEC4];
        pk_load_vec(t, tr, H);
#pragma unroll
        for (int i = 0; i < PK_MAX_VEC4; ++i) { v[i].x += t[i].x; v[i].y += t[i].y; v[i].z += t[i].z; v[i].w += t[i].w; }
    }
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < PK_MAX_VEC4; ++i) ss += v[i].x * v[i].x + v[i].y * v[i].y + v[i].z * v[i].z + v[i].w * v[i].w;
    const float inv = rsqrtf(pk_block_sum(ss, s.scratch) / (float) H + p.a.eps);
#pragma unroll
    for (int i = 0; i < PK_MAX_VEC4; ++i) {
        const int k = 4 * ((int) threadIdx.x + PK_CONSUMERS * i);
        if (k >= H) break;
        pk_store_scaled(s.xs, k, w.w[i], v[i], inv);
    }
    pk_sync();
}

// The down phase's input, as bf16 in xs: bf16(gelu(g) * u), g = gu[0, F), u = gu[F, 2F) (skinny_gemm's GELU_MUL
// input: gelu_mul's math and rounding).
__device__ inline float pk_gelu_erf(float g) { return 0.5f * g * (1.0f + erff(g * 0.70710678118654752f)); }
__device__ inline uint32_t pk_bf16x2(float a, float b) {  // round to nearest, a in the low half
    const __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<const uint32_t *>(&v);
}
__device__ inline void pk_stage_gelu_mul(const pk_params & p, const pk_smem & s) {
    const int F = p.a.ffn;
    float4 g[PK_MAX_VEC4], u[PK_MAX_VEC4];
    pk_load_vec(g, p.a.gu, F);
    pk_load_vec(u, p.a.gu + F, F);
    bf16 * xs = reinterpret_cast<bf16 *>(s.xs);
#pragma unroll
    for (int i = 0; i < PK_MAX_VEC4; ++i) {
        const int k = 4 * ((int) threadIdx.x + PK_CONSUMERS * i);
        if (k >= F) break;
        const uint32_t lo = pk_bf16x2(pk_gelu_erf(g[i].x) * u[i].x, pk_gelu_erf(g[i].y) * u[i].y);
        const uint32_t hi = pk_bf16x2(pk_gelu_erf(g[i].z) * u[i].z, pk_gelu_erf(g[i].w) * u[i].w);
        *reinterpret_cast<uint2 *>(xs + k) = make_uint2(lo, hi);
    }
    pk_sync();
}

// The conv operands of the CTA's xBC row of this thread (state of the sequence's slot, weights, bias; at most one row
// per thread: pk_plan), loaded into registers a phase ahead, as loaded: any instruction that used them (a conversion)
// would stall the warp there until they arrive. Converted and stored into shared memory after the barrier.
struct pk_conv_regs {
    float st[3];
    uint2 w;  // 4 bf16
    bf16 bias;
};
// This thread's xBC channel c of the CTA's in_proj rows, or -1 (computed once per launch).
__device__ inline int pk_conv_channel(const pk_params & p) {
    int r0, r1;
    pk_rows(p.ipo, blockIdx.x, gridDim.x, r0, r1);
    const int j = threadIdx.x, c = r0 + j - p.d;
    return j < r1 - r0 && c >= 0 && c < p.cd ? c : -1;
}
__device__ inline void pk_load_conv(pk_conv_regs & r, const pk_params & p, const mamba2_persist_layer & lw, int slot, int c) {
    if (c < 0) return;
    const float * st = lw.conv_state + (int64_t) slot * 3 * p.cd;  // [3, cd]
    r.st[0] = st[c];
    r.st[1] = st[p.cd + c];
    r.st[2] = st[2 * p.cd + c];
    r.w = *reinterpret_cast<const uint2 *>(lw.conv_w + (int64_t) c * 4);  // w: [cd, 4]
    r.bias = lw.conv_b ? lw.conv_b[c] : __float2bfloat16(0.0f);
}
__device__ inline void pk_store_conv(const pk_conv_regs & r, const pk_smem & s, int c) {
    if (c < 0) return;
    const int j = threadIdx.x;
    const float2 w01 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&r.w.x));
    const float2 w23 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&r.w.y));
    float * f = s.conv + j * PK_CONV_FIELDS;  // st0, st1, st2, w0..w3, bias
    f[0] = r.st[0];
    f[1] = r.st[1];
    f[2] = r.st[2];
    f[3] = w01.x;
    f[4] = w01.y;
    f[5] = w23.x;
    f[6] = w23.y;
    f[7] = zk_to_f32(r.bias);
}

// One state unit's rows held by this thread: pass i is row p0 + i (256 / gw) + tid / gw, columns n0..n0+3.
struct pk_state_regs {
    float4 S[PK_MAX_PASSES];
};

__device__ inline float4 * pk_state_ptr(const pk_params & p, const mamba2_persist_layer & lw, int slot, int u, int pass) {
    const int h = u / p.split, rpp = PK_CONSUMERS / p.gw;
    const int row = (u % p.split) * p.unit_rows + pass * rpp + (int) threadIdx.x / p.gw, n0 = ((int) threadIdx.x % p.gw) * 4;
    const int P = p.a.head_dim, N = p.a.d_state;
    return reinterpret_cast<float4 *>(lw.ssm_state + (((int64_t) slot * p.a.n_heads + h) * P + row) * N + n0);  // [slots, nh, P, N]
}

__device__ inline bool pk_pass_valid(const pk_params & p, int pass) {
    return pass * (PK_CONSUMERS / p.gw) + (int) threadIdx.x / p.gw < p.unit_rows;
}

__device__ inline void pk_load_state(pk_state_regs & r, const pk_params & p, const mamba2_persist_layer & lw, int slot, int u) {
#pragma unroll
    for (int i = 0; i < PK_MAX_PASSES; ++i) {
        r.S[i] = make_float4(0.f, 0.f, 0.f, 0.f);
        if (pk_pass_valid(p, i)) r.S[i] = __ldcs(pk_state_ptr(p, lw, slot, u, i));
    }
}

// The state update of unit u (state already in r), y and gsq[u] written.
// The per-head constants of unit u's head: dt_bias, A_log, D (loaded a phase ahead, as loaded: see pk_conv_regs).
struct pk_head_consts {
    float dt_bias, a_log, d_skip;
};
__device__ inline pk_head_consts pk_load_head(const pk_params & p, const mamba2_persist_layer & lw, int u) {
    const int h = u / p.split;
    return {lw.dt_bias[h], lw.a_log[h], lw.d_skip[h]};
}

__device__ inline void pk_state_unit(pk_state_regs & r, const pk_params & p, const pk_smem & s, const mamba2_persist_layer & lw,
                                     int slot, int u, const pk_head_consts & hc) {
    const mamba2_persist_args & a = p.a;
    const int P = a.head_dim, N = a.d_state, G = a.n_groups, d = p.d, gw = p.gw, rpp = PK_CONSUMERS / gw;
    const int h = u / p.split, g = h / (a.n_heads / G), n0 = ((int) threadIdx.x % gw) * 4;
    const int row0 = (u % p.split) * p.unit_rows + (int) threadIdx.x / gw;
    const float dt = zk_softplus(__ldcg(a.zx + d + p.cd + h) + hc.dt_bias);
    const float dA = expf(dt * -expf(hc.a_log)), d_h = hc.d_skip;  // A = -exp(A_log)
    const float4 B = __ldcg(reinterpret_cast<const float4 *>(a.xbc + d + g * N + n0));
    const float4 C = __ldcg(reinterpret_cast<const float4 *>(a.xbc + d + G * N + g * N + n0));
    float xv[PK_MAX_PASSES], zv[PK_MAX_PASSES];
#pragma unroll
    for (int i = 0; i < PK_MAX_PASSES; ++i) {
        const int ch = h * P + row0 + i * rpp;
        const bool ok = pk_pass_valid(p, i);
        xv[i] = ok ? __ldcg(a.xbc + ch) : 0.0f;
        zv[i] = ok && n0 == 0 ? __ldcg(a.zx + ch) : 0.0f;
    }
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < PK_MAX_PASSES; ++i) {
        if (i * rpp >= p.unit_rows) break;  // block-uniform: the shuffles below need every lane
        const bool ok = pk_pass_valid(p, i);
        float4 & S = r.S[i];
        const float dtx = dt * xv[i];
        S.x = S.x * dA + dtx * B.x;
        S.y = S.y * dA + dtx * B.y;
        S.z = S.z * dA + dtx * B.z;
        S.w = S.w * dA + dtx * B.w;
        float acc = S.x * C.x + S.y * C.y + S.z * C.z + S.w * C.w;
        for (int off = gw / 2; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
        if (ok) {
            __stcs(pk_state_ptr(p, lw, slot, u, i), S);
            if (n0 == 0) {
                const float out = (acc + d_h * xv[i]) * zk_silu(zv[i]);
                a.y[h * P + row0 + i * rpp] = out;
                ss += out * out;
            }
        }
    }
    ss = pk_block_sum(ss, s.scratch);
    if (threadIdx.x == 0) a.gsq[u] = ss;
}

// Whether the gated norm folds into out_proj (tensor-core form, each segment inside one group): see pk_stage_gated.
__host__ __device__ inline bool pk_gated_folds(const pk_params & p) {
    const int S = pk_mma_segments(p.d);
    return S > 0 && (p.d / p.a.n_groups) % (p.d / S) == 0;
}

// out_proj's input: ys = w * (y * inv_g), inv_g = rsqrt(sum of group g's gsq / group + eps). y's loads and the gsq
// terms' loads are issued together (one round trip after barrier B). Folded (pk_gated_folds): xs = w * y, and
// gscale[q] = inv of segment q's group scales the segment's partial sums at the GEMV's end, so that nothing waits for
// the group sums between the loads and the GEMV.
__device__ inline void pk_stage_gated(const pk_params & p, const pk_smem & s, const pk_vec_weights & w, bool fold) {
    const mamba2_persist_args & a = p.a;
    const int d = p.d, G = a.n_groups, group = d / G, per = p.units / G;
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE;
    float4 v[PK_MAX_VEC4];
    pk_load_vec(v, a.y, d);
    for (int gi = warp; gi < G; gi += PK_CONSUMER_WARPS) {
        float q[PK_MAX_GSQ];
#pragma unroll
        for (int i = 0; i < PK_MAX_GSQ; ++i) {
            const int c = lane + ZK_WARP_SIZE * i;
            q[i] = c < per ? __ldcg(a.gsq + gi * per + c) : 0.0f;
        }
        float t = 0.0f;
#pragma unroll
        for (int i = 0; i < PK_MAX_GSQ; ++i) t += q[i];
        t = zk_warp_sum(t);
        const float inv = rsqrtf(t / (float) group + a.gated_eps);
        if (lane == 0) {
            s.ginv[gi] = inv;
            if (fold) {
                const int S = pk_mma_segments(d), seg = d / S;
                for (int sq = 0; sq < S; ++sq) {
                    if (sq * seg / group == gi) s.gscale[sq] = inv;
                }
            }
        }
    }
    if (!fold) pk_sync();  // ginv, before the scaling below
#pragma unroll
    for (int i = 0; i < PK_MAX_VEC4; ++i) {
        const int k = 4 * ((int) threadIdx.x + PK_CONSUMERS * i);
        if (k >= d) break;
        const float inv = fold ? 1.0f : s.ginv[k / group];  // group % 4 == 0: a float4 lies in one group
        pk_store_scaled(s.xs, k, w.w[i], v[i], inv);
    }
    pk_sync();
}

}  // namespace
