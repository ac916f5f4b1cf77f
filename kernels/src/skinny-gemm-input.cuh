// skinny_gemm's computed inputs (kernels/src/skinny-gemm.cu includes this once): how a work item loads 8 input
// elements of a row for each x mode (bf16, split hi + lo, fp32 split in registers, and the decode path's
// rmsnorm / gated norm / GELU(g) * u of their producers' outputs), the per-CTA norm scales, the staging of a
// CTA's whole input in shared memory (M <= 8), and the in_proj conv epilogue of the fused decode path.
#pragma once

#include "zamba2-mma.cuh"

#ifndef ZK_SKINNY_WARPS
#define ZK_SKINNY_WARPS 8
#endif

// Modes whose input has a lo part (two MMAs per tile); GELU_MUL rounds its input to bf16 like gelu_mul.
template <int XMODE> struct skinny_x_split { static constexpr bool value = XMODE != SKINNY_X_BF16 && XMODE != SKINNY_X_GELU_MUL; };

// Where zk_load_x8 reads: x (x_lo) rows of stride ld_x, K the GEMM's K; for the norm modes also the norm's
// source and the per-row (per-group) scales the CTA computed after its PDL wait (shared memory).
struct skinny_x_view {
    const void * x;
    const bf16 * x_lo;
    int ld_x, K;
    const skinny_x_norm * norm;  // RMSNORM / GATED_NORM
    const float * inv;           // [8 rows][8 groups] in shared memory
    const unsigned char * stage; // staged input (shared memory): hi rows [M] then lo rows [M], stage_stride bytes apart
    int stage_stride, stage_lo;  // row stride and the lo rows' offset, bytes
    int half_k;                  // half tiles (skinny_launch::half_k; STAGED only): lane g reads row g / 2 at k + (g % 2) K / 2
};

constexpr int ZK_SKINNY_NORM_MAX_M = 8;       // rows the norm modes take (NT = 1)
constexpr int ZK_SKINNY_NORM_MAX_GROUPS = 8;  // GATED_NORM groups per row

static __device__ __forceinline__ uint32_t zk_pack_bf16x2(float a, float b) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<const uint32_t *>(&v);
}

// fp32 -> bf16 hi + bf16 lo (lo = bf16(f - hi)), 8 values: the same split as zk_split2, written over floats
// (zk_split2's form spills in the NT 2/8 variants).
static __device__ __forceinline__ void zk_split8(uint4 & hi, uint4 & lo, const float (&f)[8]) {
    float h[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) h[i] = zk_to_f32(zk_to_bf16(f[i]));
    hi = make_uint4(zk_pack_bf16x2(h[0], h[1]), zk_pack_bf16x2(h[2], h[3]), zk_pack_bf16x2(h[4], h[5]), zk_pack_bf16x2(h[6], h[7]));
    lo = make_uint4(zk_pack_bf16x2(f[0] - h[0], f[1] - h[1]), zk_pack_bf16x2(f[2] - h[2], f[3] - h[3]),
                    zk_pack_bf16x2(f[4] - h[4], f[5] - h[5]), zk_pack_bf16x2(f[6] - h[6], f[7] - h[7]));
}

static __device__ __forceinline__ void zk_load_f32x8(float (&f)[8], const float * p) {
    const float4 v0 = __ldg(reinterpret_cast<const float4 *>(p)), v1 = __ldg(reinterpret_cast<const float4 *>(p) + 1);
    f[0] = v0.x; f[1] = v0.y; f[2] = v0.z; f[3] = v0.w; f[4] = v1.x; f[5] = v1.y; f[6] = v1.z; f[7] = v1.w;
}

static __device__ __forceinline__ void zk_load_bf16x8(float (&f)[8], const bf16 * p) {
    const uint4 raw = __ldg(reinterpret_cast<const uint4 *>(p));
    const bf16 * b = reinterpret_cast<const bf16 *>(&raw);
#pragma unroll
    for (int i = 0; i < 8; ++i) f[i] = zk_to_f32(b[i]);
}

// 8 consecutive input elements of row m at column k as bf16 hi (and lo for split modes).
template <int XMODE>
static __device__ __forceinline__ void zk_load_x8(uint4 & hi, uint4 & lo, const skinny_x_view & X, int m, int k) {
    if (XMODE == SKINNY_X_BF16 || XMODE == SKINNY_X_SPLIT) {
        hi = __ldg(reinterpret_cast<const uint4 *>(static_cast<const bf16 *>(X.x) + (int64_t) m * X.ld_x + k));         // x: [M, K] bf16
        if (XMODE == SKINNY_X_SPLIT) lo = __ldg(reinterpret_cast<const uint4 *>(X.x_lo + (int64_t) m * X.ld_x + k));  // x_lo: [M, K]
        return;
    }
    const float * xf = static_cast<const float *>(X.x) + (int64_t) m * X.ld_x;  // x: [M, ld_x] fp32
    float f[8];
    if (XMODE == SKINNY_X_F32) {
        zk_load_f32x8(f, xf + k);
    } else if (XMODE == SKINNY_X_RMSNORM) {
        const skinny_x_norm & nm = *X.norm;
        if (k < nm.k1) {
            zk_load_f32x8(f, xf + k);
            if (nm.add) {
                float a[8];
                zk_load_f32x8(a, nm.add + (int64_t) m * X.ld_x + k);  // add: [M, k1] stride ld_x
#pragma unroll
                for (int i = 0; i < 8; ++i) f[i] += a[i];
            }
        } else {
            zk_load_bf16x8(f, nm.tail + (int64_t) m * nm.ld_tail + (k - nm.k1));  // tail: [M, K - k1]
        }
        float w[8];
        zk_load_bf16x8(w, nm.w + k);  // w: [K]
        const float inv = X.inv[m * ZK_SKINNY_NORM_MAX_GROUPS];
#pragma unroll
        for (int i = 0; i < 8; ++i) f[i] = w[i] * (f[i] * inv);  // rms_norm_f32's rounding order
    } else if (XMODE == SKINNY_X_GATED_NORM) {
        const skinny_x_norm & nm = *X.norm;
        zk_load_f32x8(f, xf + k);  // g = y * silu(z): [M, K]
        float w[8];
        zk_load_bf16x8(w, nm.w + k);
        const float inv = X.inv[m * ZK_SKINNY_NORM_MAX_GROUPS + k / nm.group];  // 8 | group: one group per pack
#pragma unroll
        for (int i = 0; i < 8; ++i) f[i] = w[i] * (f[i] * inv);  // gated_rms_norm's rounding order
    } else {  // GELU_MUL: gu [M, 2K]
        float g[8], u[8];
        zk_load_f32x8(g, xf + k);
        zk_load_f32x8(u, xf + X.K + k);
        uint32_t packed[4];
#pragma unroll
        for (int i = 0; i < 8; i += 2) {
            const float a0 = 0.5f * g[i] * (1.0f + erff(g[i] * 0.70710678118654752f));
            const float a1 = 0.5f * g[i + 1] * (1.0f + erff(g[i + 1] * 0.70710678118654752f));
            packed[i / 2] = zk_pack_bf16x2(a0 * u[i], a1 * u[i + 1]);  // gelu_mul's bf16(act * u)
        }
        hi = make_uint4(packed[0], packed[1], packed[2], packed[3]);
        return;
    }
    zk_split8(hi, lo, f);
}

// RMSNORM: the row scales from the warps' partial sums of squares (part[warp][row], each warp's row sums already
// written), summed in a fixed order: every CTA gets the same bits. Starts with the barrier that publishes part.
static __device__ __forceinline__ void skinny_rms_scales(const skinny_gemm_args & a, float * inv,
                                                         const float (&part)[ZK_SKINNY_WARPS][ZK_SKINNY_NORM_MAX_M]) {
    __syncthreads();
    if ((int) threadIdx.x < a.M) {
        float t = 0.0f;
#pragma unroll
        for (int w = 0; w < ZK_SKINNY_WARPS; ++w) t += part[w][threadIdx.x];  // fixed order
        inv[threadIdx.x * ZK_SKINNY_NORM_MAX_GROUPS] = rsqrtf(t / (float) a.K + a.norm.eps);
    }
}

// GATED_NORM: a warp per (row, group) entry sums the group's chunk sums of g^2 (from the state step).
static __device__ __forceinline__ void skinny_gated_scales(const skinny_gemm_args & a, float * inv) {
    const skinny_x_norm & nm = a.norm;
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE;
    const int n_groups = a.K / nm.group, per = nm.group / nm.chunk;
    for (int e = warp; e < a.M * n_groups; e += ZK_SKINNY_WARPS) {
        const int m = e / n_groups, gi = e % n_groups;
        float t = 0.0f;
        for (int c = lane; c < per; c += ZK_WARP_SIZE) t += __ldg(nm.gsq + (int64_t) m * nm.ld_gsq + gi * per + c);
        t = zk_warp_sum(t);
        if (lane == 0) inv[m * ZK_SKINNY_NORM_MAX_GROUPS + gi] = rsqrtf(t / (float) nm.group + nm.eps);
    }
}

// The norm modes' scales, once per CTA after its PDL wait (every CTA computes the same values in the same order).
// inv: [8 rows][8 groups] shared; part: [8 warps][8 rows] shared scratch.
template <int XMODE>
static __device__ __forceinline__ void skinny_norm_prologue(const skinny_gemm_args & a, float * inv,
                                                            float (&part)[ZK_SKINNY_WARPS][ZK_SKINNY_NORM_MAX_M]) {
    const skinny_x_norm & nm = a.norm;
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE;
    if (XMODE == SKINNY_X_RMSNORM) {
        // s = x (+ add) | tail over all K columns; 4 columns per thread and step (k1 % 8 == 0: a pack never straddles)
        float ss[ZK_SKINNY_NORM_MAX_M];
#pragma unroll
        for (int m = 0; m < ZK_SKINNY_NORM_MAX_M; ++m) {
            ss[m] = 0.0f;
            if (m >= a.M) continue;
            const float * xr = static_cast<const float *>(a.x) + (int64_t) m * a.ld_x;  // x: [M, ld_x]
#pragma unroll 2
            for (int k = threadIdx.x * 4; k < a.K; k += blockDim.x * 4) {
                float v[4];
                if (k < nm.k1) {
                    const float4 f = __ldg(reinterpret_cast<const float4 *>(xr + k));
                    v[0] = f.x; v[1] = f.y; v[2] = f.z; v[3] = f.w;
                    if (nm.add) {
                        const float4 d = __ldg(reinterpret_cast<const float4 *>(nm.add + (int64_t) m * a.ld_x + k));
                        v[0] += d.x; v[1] += d.y; v[2] += d.z; v[3] += d.w;
                    }
                } else {
                    const uint2 raw = __ldg(reinterpret_cast<const uint2 *>(nm.tail + (int64_t) m * nm.ld_tail + (k - nm.k1)));
                    const bf16 * h = reinterpret_cast<const bf16 *>(&raw);
                    v[0] = zk_to_f32(h[0]); v[1] = zk_to_f32(h[1]); v[2] = zk_to_f32(h[2]); v[3] = zk_to_f32(h[3]);
                }
                ss[m] += v[0] * v[0] + v[1] * v[1] + v[2] * v[2] + v[3] * v[3];
            }
        }
#pragma unroll
        for (int m = 0; m < ZK_SKINNY_NORM_MAX_M; ++m) {
            const float t = zk_warp_sum(ss[m]);
            if (lane == 0) part[warp][m] = t;
        }
        skinny_rms_scales(a, inv, part);
    } else if (XMODE == SKINNY_X_GATED_NORM) {
        skinny_gated_scales(a, inv);
    }
    __syncthreads();
}

// The norm modes' staging in one pass when the CTA's input is small (M K <= 256 x 8 x ZK_SKINNY_ONE_PASS_PACKS,
// e.g. M = 1 up to K 4096): every thread loads its packs of the source, their norm weights (and, GATED, the chunk
// sums) at once, the row scales are reduced, then the packs are scaled, split and stored from registers: one
// memory round trip after the PDL wait instead of two (reduce, then re-read to stage).
constexpr int ZK_SKINNY_ONE_PASS_PACKS = 2;

template <int XMODE>
static __device__ __forceinline__ void skinny_stage_one_pass(const skinny_gemm_args & a, const skinny_x_view & X, float * inv,
                                                             float (&part)[ZK_SKINNY_WARPS][ZK_SKINNY_NORM_MAX_M],
                                                             unsigned char * stage) {
    constexpr int PK = ZK_SKINNY_ONE_PASS_PACKS;
    const skinny_x_norm & nm = a.norm;
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE;
    const int packs = a.K / 8, total = a.M * packs;
    float f[PK][8], w[PK][8];
    int row[PK], col[PK];
#pragma unroll
    for (int j = 0; j < PK; ++j) {
        const int i = threadIdx.x + j * blockDim.x;
        row[j] = -1;
        col[j] = 0;
#pragma unroll
        for (int u = 0; u < 8; ++u) f[j][u] = w[j][u] = 0.0f;
        if (i >= total) continue;
        const int m = i / packs, k = (i - m * packs) * 8;
        row[j] = m;
        col[j] = k;
        const float * xr = static_cast<const float *>(a.x) + (int64_t) m * a.ld_x;  // x: [M, ld_x] fp32
        if (XMODE == SKINNY_X_GATED_NORM || k < nm.k1) {
            zk_load_f32x8(f[j], xr + k);
            if (XMODE == SKINNY_X_RMSNORM && nm.add) {
                float d[8];
                zk_load_f32x8(d, nm.add + (int64_t) m * a.ld_x + k);  // add: [M, k1] stride ld_x
#pragma unroll
                for (int u = 0; u < 8; ++u) f[j][u] += d[u];
            }
        } else {
            zk_load_bf16x8(f[j], nm.tail + (int64_t) m * nm.ld_tail + (k - nm.k1));  // tail: [M, K - k1]
        }
        zk_load_bf16x8(w[j], nm.w + k);  // w: [K]
    }
    if (XMODE == SKINNY_X_RMSNORM) {
#pragma unroll
        for (int m = 0; m < ZK_SKINNY_NORM_MAX_M; ++m) {
            if (m >= a.M) break;  // block-uniform
            float ss = 0.0f;
#pragma unroll
            for (int j = 0; j < PK; ++j) {
                if (row[j] != m) continue;
#pragma unroll
                for (int u = 0; u < 8; ++u) ss += f[j][u] * f[j][u];
            }
            ss = zk_warp_sum(ss);
            if (lane == 0) part[warp][m] = ss;
        }
        skinny_rms_scales(a, inv, part);
    } else {
        skinny_gated_scales(a, inv);  // its loads overlap the packs' loads issued above
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < PK; ++j) {
        if (row[j] < 0) continue;
        const int m = row[j], k = col[j];
        const float sc = inv[m * ZK_SKINNY_NORM_MAX_GROUPS + (XMODE == SKINNY_X_GATED_NORM ? k / nm.group : 0)];
        float o[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) o[u] = w[j][u] * (f[j][u] * sc);  // the norms' rounding order
        uint4 hi, lo;
        zk_split8(hi, lo, o);
        unsigned char * dst = stage + m * X.stage_stride + 2 * k;  // stage: hi [M, K] then lo [M, K]
        *reinterpret_cast<uint4 *>(dst) = hi;
        *reinterpret_cast<uint4 *>(dst + X.stage_lo) = lo;
    }
    __syncthreads();
}

// STAGED (NT = 1): the CTA computes its whole input once (every mode's x, hi and lo bf16 rows) into shared
// memory after its wait, so the main loop's x loads are shared-memory loads instead of an L2 round trip and the
// computed modes' arithmetic (norm scales, GELU, the split) is done once per CTA, not once per work item
// (measured run 1: computed per item, in_proj at M = 1 took 23.4 us instead of 14.5).
template <int XMODE>
static __device__ __forceinline__ void skinny_stage_input(const skinny_x_view & X, int M, unsigned char * stage) {
    const int packs = X.K / 8;
#pragma unroll 4
    for (int i = threadIdx.x; i < M * packs; i += blockDim.x) {
        const int m = i / packs, k = (i - m * packs) * 8;
        uint4 hi, lo;
        zk_load_x8<XMODE>(hi, lo, X, m, k);
        unsigned char * row = stage + m * X.stage_stride + 2 * k;  // stage: hi [M, K] then lo [M, K], padded rows
        *reinterpret_cast<uint4 *>(row) = hi;
        if (skinny_x_split<XMODE>::value) *reinterpret_cast<uint4 *>(row + X.stage_lo) = lo;
    }
    __syncthreads();
}

// The conv epilogue of an item reads the conv state of its channels (HBM: touched once per step): ask for it
// into L2 when the item starts, so the epilogue does not wait a DRAM round trip. One 64-byte line segment per
// (row, tap) of the tile's 16 channels.
static __device__ __forceinline__ void skinny_conv_prefetch(const skinny_gemm_args & a, int seg, int n0) {
    const skinny_conv_epilogue & cv = a.conv;
    const int c0 = n0 - cv.col0;
    if (seg != 0 || c0 + 16 <= 0 || c0 >= cv.n) return;
    const int i = threadIdx.x;
    if (i >= 3 * a.M) return;
    const int m = i / 3, tap = i % 3;
    const float * line = cv.state + ((int64_t) cv.seq_slot[m] * 3 + tap) * cv.n + max(c0, 0);  // state: [slots, 3, n]
    asm volatile("prefetch.global.L2 [%0];" ::"l"(line));
}

// The conv epilogue's operands of one item in shared memory, copied (cp.async) when the item starts, so its finish
// needs no round trip (it took two: the sequence's slot, then the state). slot: the rows' state slots (the step's
// input), loaded with the CTA's staging loads and stored before its first item.
struct skinny_conv_stage {
    float state[ZK_SKINNY_NORM_MAX_M][3][16];  // [m][tap][channel c0 + j]
    uint2 w[16];                                // [channel][4 taps] bf16
    uint32_t bias[16];                          // the 4-byte-aligned bf16 pair that holds the channel's bias
    int slot[ZK_SKINNY_NORM_MAX_M];
};

static __device__ __forceinline__ void zk_cp_async(void * smem, const void * src, int bytes, bool ok) {
    const uint32_t d = (uint32_t) __cvta_generic_to_shared(smem);
    if (bytes == 4) asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(d), "l"(src), "r"(ok ? 4 : 0) : "memory");
    else asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" ::"r"(d), "l"(src), "r"(ok ? 8 : 0) : "memory");
}

// Whether the bias of conv channel c comes from its aligned pair (else the finish loads it: an unaligned bias, or
// the last channel of an odd count, whose pair would read past the tensor).
static __device__ __forceinline__ bool skinny_conv_bias_pair(const skinny_conv_epilogue & cv, int c) {
    return ((uintptr_t) cv.bias % 4) == 0 && (c | 1) < cv.n;
}

// Issued by every thread at the start of an item whose tile has conv channels (seg 0, columns col0 .. col0 + n);
// zero-filled outside the channels. Returns whether the item has any.
static __device__ __forceinline__ bool skinny_conv_stage_issue(const skinny_gemm_args & a, int seg, int n0,
                                                               skinny_conv_stage & cs) {
    const skinny_conv_epilogue & cv = a.conv;
    const int c0 = n0 - cv.col0;
    if (seg != 0 || c0 + 16 <= 0 || c0 >= cv.n) return false;
    const int n_state = a.M * 48;
    for (int i = threadIdx.x; i < n_state + 32; i += blockDim.x) {
        if (i < n_state) {
            const int m = i / 48, tap = (i / 16) % 3, j = i % 16, c = c0 + j;
            const bool ok = c >= 0 && c < cv.n;
            zk_cp_async(&cs.state[m][tap][j], cv.state + ((int64_t) cs.slot[m] * 3 + tap) * cv.n + (ok ? c : 0), 4, ok);  // [slots, 3, n]
        } else if (i < n_state + 16) {
            const int j = i - n_state, c = c0 + j;
            const bool ok = c >= 0 && c < cv.n;
            zk_cp_async(&cs.w[j], cv.w + (int64_t) (ok ? c : 0) * 4, 8, ok);  // w: [n, 4]
        } else {
            const int j = i - n_state - 16, c = c0 + j;
            const bool ok = cv.bias && c >= 0 && c < cv.n && skinny_conv_bias_pair(cv, c);
            zk_cp_async(&cs.bias[j], ok ? cv.bias + (c & ~1) : cv.w, 4, ok);
        }
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
    return true;
}

// causal_conv1d_decode for channel c (= c0 + j of the item's tile) of sequence m, fed the GEMM output v, from the
// staged operands; the state written back as skinny_conv_decode does. Bitwise the same values.
static __device__ __forceinline__ void skinny_conv_decode_staged(const skinny_conv_epilogue & cv, const skinny_conv_stage & cs,
                                                                 int m, int c, int j, float v) {
    const int n = cv.n;
    const float x0 = cs.state[m][0][j], x1 = cs.state[m][1][j], x2 = cs.state[m][2][j];
    const bf16 * w4 = reinterpret_cast<const bf16 *>(&cs.w[j]);
    float bias = 0.0f;
    if (cv.bias) {
        bias = skinny_conv_bias_pair(cv, c) ? zk_to_f32(reinterpret_cast<const bf16 *>(&cs.bias[j])[c & 1]) : zk_to_f32(cv.bias[c]);
    }
    const float acc = bias + zk_to_f32(w4[0]) * x0 + zk_to_f32(w4[1]) * x1 + zk_to_f32(w4[2]) * x2 + zk_to_f32(w4[3]) * v;
    cv.out[(int64_t) m * n + c] = zk_silu(acc);  // out: [M, n]
    float * st = cv.state + (int64_t) cs.slot[m] * 3 * n;  // state: [slots, 3, n]
    st[c] = x1;
    st[n + c] = x2;
    st[2 * n + c] = v;
}

// causal_conv1d_decode for channel c of sequence m, fed the GEMM output v (its pre-conv input): the same fp32
// expression, so the fused path matches the conv kernel bitwise. Channel c belongs to exactly one tile, so no
// other thread reads or writes its state.
static __device__ __forceinline__ void skinny_conv_decode(const skinny_conv_epilogue & cv, int m, int c, float v) {
    const int n = cv.n;
    float * st = cv.state + (int64_t) cv.seq_slot[m] * 3 * n;  // state: [slots, 3, n]
    const float x0 = st[c], x1 = st[n + c], x2 = st[2 * n + c];
    const uint2 wraw = *reinterpret_cast<const uint2 *>(cv.w + (int64_t) c * 4);  // w: [n, 4]
    const bf16 * w4 = reinterpret_cast<const bf16 *>(&wraw);
    const float acc = (cv.bias ? zk_to_f32(cv.bias[c]) : 0.0f) + zk_to_f32(w4[0]) * x0 + zk_to_f32(w4[1]) * x1 +
                      zk_to_f32(w4[2]) * x2 + zk_to_f32(w4[3]) * v;
    cv.out[(int64_t) m * n + c] = zk_silu(acc);  // out: [M, n]
    st[c] = x1;
    st[n + c] = x2;
    st[2 * n + c] = v;
}

