// Skinny GEMM for decode-sized steps (M <= 64 token rows) on tensor cores, weights streamed once:
//
//   y[m, n] (+)= sum_k x[m, k] w[n, k]  +  sum_r x2[m, r] w2[n, r]          (w2 term optional)
//
// x comes as bf16 (SKINNY_X_BF16), as bf16 hi + lo rows whose sum is the fp32 value to ~2^-17
// (SKINNY_X_SPLIT, what the norms write), or as fp32 split into hi + lo in registers (SKINNY_X_F32);
// split inputs cost a second MMA per tile, not a second pass over W, so decode stays exact to fp32
// and pays no combine kernel. The optional second operand (LoRA: x2 = x . w0^T, fp32) accumulates
// into the same registers, so q/k/v and gate_up with adapters need one launch each.
//
// "Swap AB": mma.m16n8k16's A operand (16 rows) holds 16 output features n of W and its B operand
// (8 columns) holds 8 token rows of x^T, so one decode row wastes no weight bandwidth. A lane
// (g = lane / 4, t = lane % 4) loads 16 bytes of W rows n0+g and n0+g+8 at k = k0 + 8t and 16 bytes
// of x row 8j+g at the same k: since a dot product may permute k freely as long as A and B agree,
// those 8 elements feed the fragments' k slots {2t, 2t+1, 2t+8, 2t+9} of two MMAs directly (no
// shuffles, no shared-memory staging of W).
// A block = 16 output features x all M rows over a slice of K; its 8 warps split the slice (interleaved
// 32-wide steps, up to 8 steps of loads in flight per warp), then sum their partial tiles through
// shared memory in a fixed order. When one block per tile would leave HBM idle (few tiles or long K),
// KS blocks share a tile (work item = ks * tiles + tile): each writes its partial tile to a workspace and
// the last to finish (a per-tile counter) sums the KS partials in order and writes y: deterministic, and
// the counter is reset for the next launch (CUDA-graph safe). Several weight matrices with the same K
// (q/k/v, LoRA w0s) share one launch as segments.
//
// Streaming (measured on the H200, ZK_BENCH_SKINNY=1 in the kernel tests): by default a persistent grid
// (at most one resident wave of CTAs) loops over the work items (item = 16 features x one K slice), so no
// CTA launch ramp or wave tail between items, and split-K is only used to give about half the resident
// CTAs an item (out_proj 2048x4096 at M = 1: 14.1 -> 8.8 us). Launched with PDL (args.pdl) the kernel
// triggers its dependents at once and waits for its predecessor before its first load of x, so its
// launch and CTA ramp overlap the previous kernel (1.2B layer chain at M = 1: 35.7 -> 30.7 us per layer).
// Two ways to get more bytes in flight measured slower: the copy engine's L2 prefetch of the next items
// (kept as an option for the benchmark: prefetch_kb; in_proj M = 1 13.5 -> 16.6-17.7 us) and a cp.async
// shared-memory ring of 4-6 stages per warp running across items (in_proj 13.5 -> 16.2-16.4 us, M = 8
// 14.9 -> 20.7; removed).
// Items are summed exactly as before, whichever CTA takes them: for a given K slicing the results do not
// depend on the schedule, the prefetch or PDL (bitwise, tested).
#include <algorithm>

#include "zamba2-mma.cuh"

#define ZK_SKINNY_WARPS 8

// Steps (32 k each) a warp loads before its MMAs: the W and x loads of a group are all issued first
// (x from L2 is a round trip too: loading it inside the MMA loop serialized one trip per step, run 6).
template <int NT> struct skinny_unroll { static constexpr int value = NT <= 2 ? 4 : (NT == 4 ? 2 : 1); };
// Staged x (NT = 1) needs no x registers across the group (shared loads right before each MMA), so a warp can
// hold twice the weight loads: 8 steps, 256 bytes per lane in flight.
constexpr int ZK_SKINNY_STAGED_UNROLL = 8;
template <int NT, bool STAGED> struct skinny_group_steps {
    static constexpr int value = STAGED && NT == 1 ? ZK_SKINNY_STAGED_UNROLL : skinny_unroll<NT>::value;
};

// ---- device helpers ----------------------------------------------------------------------------

// Streamed once per step: do not allocate in L1.
static __device__ __forceinline__ uint4 zk_ld_stream(const bf16 * p) {
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

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

// One group of U 32-wide k steps of a warp: its W loads (rows n0+g and n0+g+8, 16 bytes each per step), issued
// together. Split from the MMAs so a CTA can issue its first group before its PDL wait (weights are constant).
template <int U>
static __device__ __forceinline__ void zk_skinny_load_w(uint4 (&wa)[U], uint4 (&wb)[U], const bf16 * w_a, const bf16 * w_b,
                                                        bool ok_a, bool ok_b, int K, int n_steps, int s0, int t) {
    const uint4 zero = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int k = (s0 + u * ZK_SKINNY_WARPS) * 32 + 8 * t;  // K % 8 == 0: 8 elements all in or all out
        const bool in = s0 + u * ZK_SKINNY_WARPS < n_steps && k < K;
        wa[u] = ok_a && in ? zk_ld_stream(w_a + k) : zero;  // W row n0+g
        wb[u] = ok_b && in ? zk_ld_stream(w_b + k) : zero;  // W row n0+g+8
    }
}

// The same group issued as cp.async copies into the warp's shared-memory slots (16 bytes per lane per row
// and step, zero-filled outside W): no registers held, so a CTA can have a second group in flight across its
// PDL wait and prologue. slots: this lane's first slot; slot (u, row) at (2u + row) * 32 (conflict-free).
template <int U>
static __device__ __forceinline__ void zk_skinny_copy_w(uint4 * slots, const bf16 * w_a, const bf16 * w_b, bool ok_a,
                                                        bool ok_b, int K, int n_steps, int s0, int t) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int k = (s0 + u * ZK_SKINNY_WARPS) * 32 + 8 * t;
        const bool in = s0 + u * ZK_SKINNY_WARPS < n_steps && k < K;
        const bool ia = ok_a && in, ib = ok_b && in;
        const uint32_t da = (uint32_t) __cvta_generic_to_shared(slots + (2 * u) * ZK_WARP_SIZE);
        const uint32_t db = (uint32_t) __cvta_generic_to_shared(slots + (2 * u + 1) * ZK_WARP_SIZE);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(da), "l"(w_a + (ia ? k : 0)), "r"(ia ? 16 : 0) : "memory");
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(db), "l"(w_b + (ib ? k : 0)), "r"(ib ? 16 : 0) : "memory");
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
}

// acc[j] (16 features x 8 rows 8j..8j+7) += W . x^T over one group: x loads of the group first, then the MMAs.
template <int NT, int XMODE, int U, bool STAGED>
static __device__ __forceinline__ void zk_skinny_group(float (&acc)[NT][4], const uint4 (&wa)[U], const uint4 (&wb)[U],
                                                       const skinny_x_view & X, int M, int n_steps, int s0, int g, int t) {
    const uint4 zero = make_uint4(0, 0, 0, 0);
    if (STAGED) {  // NT = 1: x row g from shared memory, loaded right before its MMAs
        const bool row_ok = g < M;
#pragma unroll
        for (int u = 0; u < U; ++u) {
            if (s0 + u * ZK_SKINNY_WARPS >= n_steps) break;  // warp-uniform
            const int k = (s0 + u * ZK_SKINNY_WARPS) * 32 + 8 * t;
            const bool in = row_ok && k < X.K;
            const unsigned char * row = X.stage + g * X.stage_stride + 2 * k;
            const uint4 xh = in ? *reinterpret_cast<const uint4 *>(row) : zero;
            const uint32_t a03[4] = {wa[u].x, wb[u].x, wa[u].y, wb[u].y};  // k slots <- k+0..3
            const uint32_t a47[4] = {wa[u].z, wb[u].z, wa[u].w, wb[u].w};  // k slots <- k+4..7
            zk_mma_bf16(acc[0], a03, xh.x, xh.y);
            zk_mma_bf16(acc[0], a47, xh.z, xh.w);
            if (skinny_x_split<XMODE>::value) {
                const uint4 xl = in ? *reinterpret_cast<const uint4 *>(row + X.stage_lo) : zero;
                zk_mma_bf16(acc[0], a03, xl.x, xl.y);
                zk_mma_bf16(acc[0], a47, xl.z, xl.w);
            }
        }
        return;
    }
    uint4 xh[U][NT], xl[U][NT];
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int k = (s0 + u * ZK_SKINNY_WARPS) * 32 + 8 * t;
        const bool in = s0 + u * ZK_SKINNY_WARPS < n_steps && k < X.K;
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            const int m = 8 * j + g;
            xh[u][j] = zero;
            xl[u][j] = zero;
            if (in && m < M) zk_load_x8<XMODE>(xh[u][j], xl[u][j], X, m, k);
        }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
        if (s0 + u * ZK_SKINNY_WARPS >= n_steps) break;         // warp-uniform
        const uint32_t a03[4] = {wa[u].x, wb[u].x, wa[u].y, wb[u].y};  // k slots <- k+0..3
        const uint32_t a47[4] = {wa[u].z, wb[u].z, wa[u].w, wb[u].w};  // k slots <- k+4..7
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            zk_mma_bf16(acc[j], a03, xh[u][j].x, xh[u][j].y);
            zk_mma_bf16(acc[j], a47, xh[u][j].z, xh[u][j].w);
            if (skinny_x_split<XMODE>::value) {
                zk_mma_bf16(acc[j], a03, xl[u][j].x, xl[u][j].y);
                zk_mma_bf16(acc[j], a47, xl[u][j].z, xl[u][j].w);
            }
        }
    }
}

// acc += W[n0.., k] . x[.., k]^T over this warp's share of the 32-wide k steps [s_first, s_end) (interleaved
// across the 8 warps, U steps per group: s_first = the slice's first step + warp, or later).
template <int NT, int XMODE, bool STAGED = false>
static __device__ __forceinline__ void zk_skinny_accumulate(float (&acc)[NT][4], const bf16 * w_a, const bf16 * w_b,
                                                            bool ok_a, bool ok_b, const skinny_x_view & X, int M,
                                                            int s_first, int s_end, int g, int t) {
    constexpr int U = skinny_group_steps<NT, STAGED>::value;
    for (int s0 = s_first; s0 < s_end; s0 += ZK_SKINNY_WARPS * U) {
        uint4 wa[U], wb[U];
        zk_skinny_load_w<U>(wa, wb, w_a, w_b, ok_a, ok_b, X.K, s_end, s0, t);
        zk_skinny_group<NT, XMODE, U, STAGED>(acc, wa, wb, X, M, s_end, s0, g, t);
    }
}

// Blocks per SM (256 threads; __launch_bounds__ holds every variant at <= 128 registers, no spills per
// ptxas -v): the persistent grid is this many CTAs per SM.
constexpr int ZK_SKINNY_BLOCKS_PER_SM = 2;

// ---- kernel ----------------------------------------------------------------------------------------

struct skinny_launch {
    skinny_gemm_args a;
    int tile_end[ZK_SKINNY_MAX_SEGMENTS];  // cumulative 16-feature tiles per segment
    int tiles;                             // over all segments
    int KS;                                // K slices per tile; work item = ks * tiles + tile
    int steps_per_slice;                   // 32-wide k steps of one slice
    int prefetch_ahead;                    // items prefetched beyond the current one; -1: no prefetch
    int stage_stride;                      // staged input row stride, bytes (the STAGED kernels)
};

struct skinny_item_pos {
    int tile, ks, seg, n0;
};

static __device__ __forceinline__ skinny_item_pos skinny_locate(const skinny_launch & L, int item) {
    skinny_item_pos p;
    p.ks = item / L.tiles;
    p.tile = item - p.ks * L.tiles;
    int s = 0;
    while (s + 1 < L.a.n_seg && p.tile >= L.tile_end[s]) ++s;
    p.seg = s;
    p.n0 = (p.tile - (s > 0 ? L.tile_end[s - 1] : 0)) * 16;
    return p;
}

// One warp asks the copy engine to bring an item's weights into L2: lanes 0-15 one W row slice each,
// lanes 16-31 the w2 rows (LoRA, slice 0 only). The warps' own loads then hit L2 or an in-flight miss.
static __device__ __forceinline__ void skinny_prefetch_item(const skinny_launch & L, int item, int lane) {
    const skinny_item_pos p = skinny_locate(L, item);
    const skinny_segment & sg = L.a.seg[p.seg];
    const int n = p.n0 + (lane & 15);
    if (n >= sg.n) return;
    if (lane < 16) {
        const int k0 = p.ks * L.steps_per_slice * 32, k1 = min(L.a.K, k0 + L.steps_per_slice * 32);
        if (k1 > k0) zk_prefetch_l2_bulk(sg.w + (int64_t) n * L.a.K + k0, (uint32_t) (k1 - k0) * sizeof(bf16));
    } else if (sg.w2 && p.ks == 0) {
        zk_prefetch_l2_bulk(sg.w2 + (int64_t) n * L.a.K2, (uint32_t) L.a.K2 * sizeof(bf16));
    }
}

// The LoRA term of an item (slice 0 only): acc += x2 . w2^T over K2, register loads.
template <int NT>
static __device__ __forceinline__ void skinny_item_w2(const skinny_launch & L, const skinny_item_pos & p, float (&acc)[NT][4]) {
    const skinny_gemm_args & a = L.a;
    const skinny_segment & sg = a.seg[p.seg];
    if (!sg.w2 || p.ks != 0) return;
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE, g = lane / 4, t = lane % 4;
    const int na = p.n0 + g, nb = p.n0 + g + 8;
    const bool ok_a = na < sg.n, ok_b = nb < sg.n;
    const skinny_x_view X2 = {sg.x2, nullptr, a.ld_x2, a.K2, nullptr, nullptr, nullptr, 0, 0};  // x2: [M, K2] fp32
    zk_skinny_accumulate<NT, SKINNY_X_F32>(acc, sg.w2 + (int64_t) (ok_a ? na : 0) * a.K2,
                                           sg.w2 + (int64_t) (ok_b ? nb : 0) * a.K2, ok_a, ok_b, X2, a.M, warp,
                                           (a.K2 + 31) / 32, g, t);  // w2: [N, K2]
}

// The conv epilogue of an item reads the conv state of its channels (HBM: touched once per step): ask for it
// into L2 when the item starts, so the epilogue does not wait a DRAM round trip. One 64-byte line segment per
// (row, tap) of the tile's 16 channels.
static __device__ __forceinline__ void skinny_conv_prefetch(const skinny_gemm_args & a, const skinny_item_pos & p) {
    const skinny_conv_epilogue & cv = a.conv;
    const int c0 = p.n0 - cv.col0;
    if (p.seg != 0 || c0 + 16 <= 0 || c0 >= cv.n) return;
    const int i = threadIdx.x;
    if (i >= 3 * a.M) return;
    const int m = i / 3, tap = i % 3;
    const float * line = cv.state + ((int64_t) cv.seq_slot[m] * 3 + tap) * cv.n + max(c0, 0);  // state: [slots, 3, n]
    asm volatile("prefetch.global.L2 [%0];" ::"l"(line));
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

// One work item: the block's 8 warps accumulate 16 features x all M rows over K slice ks, sum their
// partial tiles in a fixed order, and write y (or, split-K, a partial tile; the last slice sums them).
template <int NT, int XMODE, bool OUT_F32>
static __device__ __forceinline__ void skinny_item_finish(const skinny_launch & L, const skinny_item_pos & p,
                                                          const float (&acc)[NT][4],
                                                          float (&red)[ZK_SKINNY_WARPS][NT * 4][ZK_WARP_SIZE],
                                                          bool & last_block);

// Where a warp's W loads of an item start: rows n0+g and n0+g+8 of the item's segment (clamped when past n),
// and the item's k steps.
struct skinny_item_rows {
    const bf16 * w_a, * w_b;
    bool ok_a, ok_b;
    int s_begin, s_end;
};

static __device__ __forceinline__ skinny_item_rows skinny_rows(const skinny_launch & L, const skinny_item_pos & p) {
    const skinny_gemm_args & a = L.a;
    const skinny_segment & sg = a.seg[p.seg];
    const int g = (threadIdx.x % ZK_WARP_SIZE) / 4;
    const int na = p.n0 + g, nb = p.n0 + g + 8;
    skinny_item_rows r;
    r.ok_a = na < sg.n;
    r.ok_b = nb < sg.n;
    r.w_a = sg.w + (int64_t) (r.ok_a ? na : 0) * a.K;  // w: [N, K]
    r.w_b = sg.w + (int64_t) (r.ok_b ? nb : 0) * a.K;
    r.s_begin = p.ks * L.steps_per_slice;
    r.s_end = min((a.K + 31) / 32, r.s_begin + L.steps_per_slice);
    return r;
}

// use_pre: the first PRE steps of the warp's first group of W loads for this item are already in pre_a /
// pre_b (issued before the PDL wait), and its second group in the shared slots (cp.async, when slots is not
// null).
template <int NT, int XMODE, bool OUT_F32, int U, bool STAGED, int PRE>
static __device__ __forceinline__ void skinny_item(const skinny_launch & L, int item, const skinny_x_view & X,
                                                   float (&red)[ZK_SKINNY_WARPS][NT * 4][ZK_WARP_SIZE],
                                                   bool & last_block, bool use_pre, const uint4 (&pre_a)[PRE],
                                                   const uint4 (&pre_b)[PRE], const uint4 * slots) {
    const skinny_item_pos p = skinny_locate(L, item);
    const skinny_item_rows r = skinny_rows(L, p);
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE, g = lane / 4, t = lane % 4;
    float acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    if (XMODE == SKINNY_X_RMSNORM && L.a.conv.out) skinny_conv_prefetch(L.a, p);
    int s_first = r.s_begin + warp;
    if (use_pre && s_first < r.s_end) {
        uint4 wa[U], wb[U];
#pragma unroll
        for (int u = 0; u < PRE; ++u) { wa[u] = pre_a[u]; wb[u] = pre_b[u]; }
        if constexpr (PRE < U) {  // the rest of the group, issued now
            constexpr int REST = PRE < U ? U - PRE : 1;
            uint4 ra[REST], rb[REST];
            zk_skinny_load_w<REST>(ra, rb, r.w_a, r.w_b, r.ok_a, r.ok_b, L.a.K, r.s_end, s_first + PRE * ZK_SKINNY_WARPS, t);
#pragma unroll
            for (int u = PRE; u < U; ++u) { wa[u] = ra[u - PRE]; wb[u] = rb[u - PRE]; }
        }
        zk_skinny_group<NT, XMODE, U, STAGED>(acc, wa, wb, X, L.a.M, r.s_end, s_first, g, t);
        s_first += ZK_SKINNY_WARPS * U;
        if (slots && s_first < r.s_end) {
            asm volatile("cp.async.wait_all;" ::: "memory");  // this lane's own copies: no barrier needed
            uint4 wa[U], wb[U];
#pragma unroll
            for (int u = 0; u < U; ++u) {
                wa[u] = slots[(2 * u) * ZK_WARP_SIZE];
                wb[u] = slots[(2 * u + 1) * ZK_WARP_SIZE];
            }
            zk_skinny_group<NT, XMODE, U, STAGED>(acc, wa, wb, X, L.a.M, r.s_end, s_first, g, t);
            s_first += ZK_SKINNY_WARPS * U;
        }
    }
    zk_skinny_accumulate<NT, XMODE, STAGED>(acc, r.w_a, r.w_b, r.ok_a, r.ok_b, X, L.a.M, s_first, r.s_end, g, t);
    skinny_item_w2<NT>(L, p, acc);
    skinny_item_finish<NT, XMODE, OUT_F32>(L, p, acc, red, last_block);
}

template <int NT, int XMODE, bool OUT_F32>
static __device__ __forceinline__ void skinny_item_finish(const skinny_launch & L, const skinny_item_pos & p,
                                                          const float (&acc)[NT][4],
                                                          float (&red)[ZK_SKINNY_WARPS][NT * 4][ZK_WARP_SIZE],
                                                          bool & last_block) {
    constexpr int ENTRIES = NT * 4 * ZK_WARP_SIZE;  // one tile: 16 features x 8 NT rows
    const skinny_gemm_args & a = L.a;
    const int tile = p.tile, ks = p.ks, KS = L.KS, n0 = p.n0;
    const skinny_segment & sg = a.seg[p.seg];
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE;
#pragma unroll
    for (int j = 0; j < NT; ++j) {
#pragma unroll
        for (int c = 0; c < 4; ++c) red[warp][j * 4 + c][lane] = acc[j][c];
    }
    __syncthreads();
    if (KS > 1) {
        // partial tile of this slice -> workspace [tiles, KS, ENTRIES]; the last slice to arrive sums them
        float * part = a.workspace + ((int64_t) tile * KS + ks) * ENTRIES;
        for (int e = threadIdx.x; e < ENTRIES; e += blockDim.x) {
            float v = 0.0f;
#pragma unroll
            for (int w = 0; w < ZK_SKINNY_WARPS; ++w) v += red[w][e / ZK_WARP_SIZE][e % ZK_WARP_SIZE];
            part[e] = v;
        }
        __threadfence();
        __syncthreads();
        if (threadIdx.x == 0) last_block = atomicAdd(a.counters + tile, 1) == KS - 1;
        __syncthreads();
        if (!last_block) return;  // block-uniform
        __threadfence();
    }
    // C fragment: c0, c1 -> feature g, rows 2t, 2t+1 of the 8-row tile; c2, c3 -> feature g+8
    for (int e = threadIdx.x; e < ENTRIES; e += blockDim.x) {
        const int q = e / ZK_WARP_SIZE, ln = e % ZK_WARP_SIZE, j = q / 4, c = q % 4;
        float v = 0.0f;
        if (KS > 1) {
            const float * parts = a.workspace + (int64_t) tile * KS * ENTRIES + e;
            for (int k = 0; k < KS; ++k) v += __ldcg(parts + (int64_t) k * ENTRIES);  // fixed order: deterministic
        } else {
#pragma unroll
            for (int w = 0; w < ZK_SKINNY_WARPS; ++w) v += red[w][q][ln];
        }
        const int n = n0 + ln / 4 + (c >= 2 ? 8 : 0), m = 8 * j + 2 * (ln % 4) + (c & 1);
        if (n >= sg.n || m >= a.M) continue;
        if (OUT_F32) {
            float * yo = static_cast<float *>(sg.y) + (int64_t) m * sg.ld_y + n;   // y: [M, N] f32
            *yo = a.accumulate ? *yo + v : v;
            // only the RMSNORM instantiations carry the conv epilogue (in_proj of a decode step)
            if (XMODE == SKINNY_X_RMSNORM && a.conv.out && p.seg == 0 && n >= a.conv.col0 && n < a.conv.col0 + a.conv.n) {
                skinny_conv_decode(a.conv, m, n - a.conv.col0, v);
            }
        } else {
            bf16 * yo = static_cast<bf16 *>(sg.y) + (int64_t) m * sg.ld_y + n;     // y: [M, N] bf16
            *yo = zk_to_bf16(a.accumulate ? zk_to_f32(*yo) + v : v);
        }
    }
    if (KS > 1 && threadIdx.x == 0) a.counters[tile] = 0;  // ready for the next launch
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
        __syncthreads();
        if ((int) threadIdx.x < a.M) {
            float t = 0.0f;
#pragma unroll
            for (int w = 0; w < ZK_SKINNY_WARPS; ++w) t += part[w][threadIdx.x];  // fixed order
            inv[threadIdx.x * ZK_SKINNY_NORM_MAX_GROUPS] = rsqrtf(t / (float) a.K + nm.eps);
        }
    } else if (XMODE == SKINNY_X_GATED_NORM) {
        // a warp per (row, group): the group's chunk sums of g^2 from the state step
        const int n_groups = a.K / nm.group, per = nm.group / nm.chunk;
        for (int e = warp; e < a.M * n_groups; e += ZK_SKINNY_WARPS) {
            const int m = e / n_groups, gi = e % n_groups;
            float t = 0.0f;
            for (int c = lane; c < per; c += ZK_WARP_SIZE) t += __ldg(nm.gsq + (int64_t) m * nm.ld_gsq + gi * per + c);
            t = zk_warp_sum(t);
            if (lane == 0) inv[m * ZK_SKINNY_NORM_MAX_GROUPS + gi] = rsqrtf(t / (float) nm.group + nm.eps);
        }
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

// CTA b takes items b, b + gridDim.x, ... (GRID schedule: exactly one). Weights are constant, so the first
// group of W loads of the CTA's first item (and the optional L2 prefetch) are issued before zk_pdl_wait: under
// PDL they overlap the previous kernel; everything that reads activations or writes comes after.
template <int NT, int XMODE, bool OUT_F32, bool STAGED>
static __global__ void __launch_bounds__(ZK_SKINNY_WARPS * ZK_WARP_SIZE, ZK_SKINNY_BLOCKS_PER_SM)
    skinny_gemm_kernel(const __grid_constant__ skinny_launch L) {
    extern __shared__ __align__(16) unsigned char stage[];  // STAGED: the computed input
    constexpr int U = skinny_group_steps<NT, STAGED>::value;
    constexpr bool SLOTS = NT == 1 && U <= 4;  // the second group's shared slots (32 KB at U = 4)
    constexpr bool NORM = XMODE == SKINNY_X_RMSNORM || XMODE == SKINNY_X_GATED_NORM;
    __shared__ float red[ZK_SKINNY_WARPS][NT * 4][ZK_WARP_SIZE];  // per-warp partial tiles
    __shared__ bool last_block;
    __shared__ float inv[NORM ? ZK_SKINNY_NORM_MAX_M * ZK_SKINNY_NORM_MAX_GROUPS : 1];
    zk_pdl_trigger();  // a GEMV often follows a GEMV (LoRA, then the main weights): let it prefetch
    const int n_items = L.tiles * L.KS;
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE;
    if (L.prefetch_ahead >= 0 && warp == 0) {
        for (int d = 0; d <= L.prefetch_ahead; ++d) {
            const int64_t it = blockIdx.x + (int64_t) d * gridDim.x;
            if (it >= n_items) break;
            skinny_prefetch_item(L, (int) it, lane);
        }
    }
    // NT = 1 only (decode steps of <= 8 rows, where one round trip is a large share of the kernel): held across
    // the wait, the preloaded group makes the wider tiles spill (ptxas -v)
    // and the second group goes to shared memory through cp.async: two groups (8 KB per warp) in flight across
    // the wait and the prologue instead of one
    __shared__ uint4 w_slots[SLOTS ? ZK_SKINNY_WARPS * 2 * U * ZK_WARP_SIZE : 1];
    constexpr int PRE = U < 4 ? U : 4;  // held across the wait and the prologue: 8 steps spill (ptxas -v)
    uint4 pre_a[PRE], pre_b[PRE];
    const bool preload = NT == 1 && !L.a.late_weights && (int) blockIdx.x < n_items;
    const uint4 * slots = nullptr;
    if (preload) {
        const skinny_item_rows r = skinny_rows(L, skinny_locate(L, blockIdx.x));
        zk_skinny_load_w<PRE>(pre_a, pre_b, r.w_a, r.w_b, r.ok_a, r.ok_b, L.a.K, r.s_end, r.s_begin + warp, lane % 4);
        const int s1 = r.s_begin + warp + ZK_SKINNY_WARPS * U;
        if (SLOTS && !L.a.no_second_group && s1 < r.s_end) {
            uint4 * mine = w_slots + warp * 2 * U * ZK_WARP_SIZE + lane;
            zk_skinny_copy_w<U>(mine, r.w_a, r.w_b, r.ok_a, r.ok_b, L.a.K, r.s_end, s1, lane % 4);
            slots = mine;
        }
    }
    if (NORM) {  // the norm weight is a constant: into L1 before the wait (the staging reads it right after)
        for (int line = threadIdx.x; line * 64 < L.a.K; line += blockDim.x) {
            asm volatile("prefetch.global.L1 [%0];" ::"l"(L.a.norm.w + line * 64));
        }
    }
    zk_pdl_wait();
    if (NORM) {
        __shared__ float part[ZK_SKINNY_WARPS][ZK_SKINNY_NORM_MAX_M];
        skinny_norm_prologue<XMODE>(L.a, inv, part);
    }
    skinny_x_view X = {L.a.x, L.a.x_lo, L.a.ld_x, L.a.K, &L.a.norm, inv, stage, L.stage_stride, L.a.M * L.stage_stride};
    if (STAGED) skinny_stage_input<XMODE>(X, L.a.M, stage);
    for (int it = blockIdx.x; it < n_items; it += gridDim.x) {
        if (it != (int) blockIdx.x && L.prefetch_ahead >= 0 && warp == 0) {  // keep the window full
            const int64_t next = it + (int64_t) L.prefetch_ahead * gridDim.x;
            if (next < n_items) skinny_prefetch_item(L, (int) next, lane);
        }
        const bool first = preload && it == (int) blockIdx.x;
        skinny_item<NT, XMODE, OUT_F32, U, STAGED, PRE>(L, it, X, red, last_block, first, pre_a, pre_b, first ? slots : nullptr);
        __syncthreads();  // red and last_block are reused by the next item
    }
}

// ---- launcher ----------------------------------------------------------------------------------

static bool aligned16(const void * p) { return ((uintptr_t) p % 16) == 0; }

// Measured defaults (H200, 1.2B decode shapes at M = 1 and 8: ZK_BENCH_SKINNY=1, tests/test-skinny-gemm-bench.cu):
// PERSISTENT without L2 prefetch (the prefetch measured slower on every shape).
constexpr skinny_schedule ZK_SKINNY_DEFAULT_SCHEDULE = SKINNY_SCHEDULE_PERSISTENT;
constexpr int ZK_SKINNY_DEFAULT_PREFETCH_KB = -1;
constexpr int ZK_SKINNY_MAX_PREFETCH_AHEAD = 64;  // items
// With the 32 KB of weight slots and 4 KB of partial tiles, two CTAs per SM still fit (2 x 108.5 KB of 227).
constexpr size_t ZK_SKINNY_STAGE_MAX_BYTES = 72 * 1024;

struct skinny_device_info {
    int n_sm = 0;
    bool pdl = false;  // compute capability 9.0+
};

// Queried once per device (host-side attribute reads only: safe while a stream is being captured).
constexpr int ZK_SKINNY_MAX_DEVICES = 64;
static int skinny_current_device() {
    int dev = 0;
    cudaGetDevice(&dev);
    return dev >= 0 && dev < ZK_SKINNY_MAX_DEVICES ? dev : 0;
}
static const skinny_device_info & skinny_device(int dev) {
    static skinny_device_info info[ZK_SKINNY_MAX_DEVICES];
    skinny_device_info & d = info[dev];
    if (d.n_sm == 0) {
        int n_sm = 0, major = 0;
        cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev);
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
        d.pdl = major >= 9;
        d.n_sm = n_sm > 0 ? n_sm : 132;
    }
    return d;
}

template <int NT, int XMODE, bool OUT_F32>
static void skinny_launch_kernel(skinny_launch & L, cudaStream_t stream) {
    constexpr int U = skinny_unroll<NT>::value;
    const skinny_gemm_args & a = L.a;
    const int dev_id = skinny_current_device();
    const skinny_device_info & dev = skinny_device(dev_id);
    const skinny_schedule schedule = a.schedule == SKINNY_SCHEDULE_DEFAULT ? ZK_SKINNY_DEFAULT_SCHEDULE : a.schedule;
    const bool persistent = schedule != SKINNY_SCHEDULE_GRID;
    const int resident = dev.n_sm * ZK_SKINNY_BLOCKS_PER_SM;
    // K slices: one round of loads per warp per slice at least. GRID: enough blocks for ~2 waves;
    // persistent: items for about half the resident CTAs (out_proj 2048x4096 M=1: 2 slices 9.8 us,
    // 4 slices 11.9, 8 slices 15.6).
    const int n_steps = (a.K + 31) / 32;
    const int round = ZK_SKINNY_WARPS * U;
    int KS = 1;
    if (a.split_k > 0) {
        KS = std::min(a.split_k, n_steps);
    } else {
        const int want = persistent ? resident / 2 : 2 * resident;
        while (KS < 8 && L.tiles * KS < want && (n_steps + KS * 2 - 1) / (KS * 2) >= round / 2) KS *= 2;
    }
    const int64_t entries = (int64_t) NT * 4 * ZK_WARP_SIZE;
    if (!a.workspace || !a.counters || (int64_t) L.tiles * KS * entries > a.workspace_floats || L.tiles > a.counter_count) {
        KS = 1;
    }
    L.steps_per_slice = (n_steps + KS - 1) / KS;
    L.KS = (n_steps + L.steps_per_slice - 1) / L.steps_per_slice;  // no empty slices
    const int n_items = L.tiles * L.KS;
    // persistent: one full resident wave (sizing the grid to fill its rounds evenly, e.g. 178 CTAs x 3 items for
    // in_proj's 532 at M = 1, measured slower: b1 1.980 -> 2.011 ms, b256 17.1 -> 17.5 ms, run 21)
    const int grid = persistent ? std::min(n_items, resident) : n_items;
    // L2 prefetch window: whole items within prefetch_kb beyond the current one (GRID: the current item)
    const int prefetch_kb = a.prefetch_kb == 0 ? ZK_SKINNY_DEFAULT_PREFETCH_KB : a.prefetch_kb;
    const int64_t item_bytes = (int64_t) 16 * std::min(a.K, L.steps_per_slice * 32) * (int64_t) sizeof(bf16);
    L.prefetch_ahead = prefetch_kb < 0 ? -1
                                       : (int) std::min<int64_t>(ZK_SKINNY_MAX_PREFETCH_AHEAD,
                                                                 (int64_t) prefetch_kb * 1024 / item_bytes);
    if (schedule == SKINNY_SCHEDULE_GRID && L.prefetch_ahead > 0) L.prefetch_ahead = 0;

    // staged input (NT = 1): hi (and lo) rows of 2K bytes + 64 (the pad puts rows g and g+1 of a quarter warp's
    // 16-byte loads on different banks); at most ZK_SKINNY_STAGE_MAX_BYTES so two CTAs still fit per SM
    L.stage_stride = 2 * a.K + 64;
    const size_t stage_bytes = (size_t) a.M * L.stage_stride * (skinny_x_split<XMODE>::value ? 2 : 1);
    const bool staged = NT == 1 && !a.no_stage && stage_bytes <= ZK_SKINNY_STAGE_MAX_BYTES;
    auto kernel = staged ? skinny_gemm_kernel<NT, XMODE, OUT_F32, NT == 1> : skinny_gemm_kernel<NT, XMODE, OUT_F32, false>;
    if (staged) {  // static + dynamic may pass 48 KB
        static bool opted_in = false;  // per instantiation; a host-side attribute, fine during stream capture
        if (!opted_in) {
            cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) ZK_SKINNY_STAGE_MAX_BYTES);
            opted_in = true;
        }
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned) grid);
    cfg.blockDim = dim3(ZK_SKINNY_WARPS * ZK_WARP_SIZE);
    cfg.dynamicSmemBytes = staged ? stage_bytes : 0;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = a.pdl && dev.pdl ? 1 : 0;
    // launch errors surface at the caller's check (cudaGetLastError / stream capture)
    cudaLaunchKernelEx(&cfg, kernel, L);
}

template <int NT, int XMODE>
static void skinny_launch_nt(skinny_launch & L, cudaStream_t stream) {
    if (L.a.y_f32) skinny_launch_kernel<NT, XMODE, true>(L, stream);
    else skinny_launch_kernel<NT, XMODE, false>(L, stream);
}

template <int XMODE>
static void skinny_launch_mode(skinny_launch & L, cudaStream_t stream) {
    const int M = L.a.M;
    if (M <= 8) skinny_launch_nt<1, XMODE>(L, stream);
    else if (M <= 16) skinny_launch_nt<2, XMODE>(L, stream);
    else if (M <= 32) skinny_launch_nt<4, XMODE>(L, stream);
    else skinny_launch_nt<8, XMODE>(L, stream);
}

template <int XMODE>
static void skinny_launch_norm_mode(skinny_launch & L, cudaStream_t stream) {  // M <= 8 (checked)
    skinny_launch_nt<1, XMODE>(L, stream);
}

// The computed-input modes and the conv epilogue: what the kernel assumes (false: refuse the call).
static bool skinny_fused_args_ok(const skinny_gemm_args & a) {
    const skinny_x_norm & nm = a.norm;
    const bool computed = a.x_mode >= SKINNY_X_RMSNORM;
    if (computed && a.M > ZK_SKINNY_NORM_MAX_M) return false;
    if (a.x_mode == SKINNY_X_RMSNORM) {
        if (!nm.w || !aligned16(nm.w) || nm.k1 <= 0 || nm.k1 > a.K || nm.k1 % 8 != 0) return false;
        if (nm.k1 < a.K && (!nm.tail || !aligned16(nm.tail) || nm.ld_tail % 8 != 0 || nm.ld_tail < a.K - nm.k1)) return false;
        if (nm.add && !aligned16(nm.add)) return false;
    } else if (a.x_mode == SKINNY_X_GATED_NORM) {
        if (!nm.w || !aligned16(nm.w) || !nm.gsq || nm.chunk <= 0 || nm.group <= 0 || nm.group % nm.chunk != 0) return false;
        if (nm.group % 8 != 0 || a.K % nm.group != 0 || a.K / nm.group > ZK_SKINNY_NORM_MAX_GROUPS) return false;
        if (nm.ld_gsq < a.K / nm.chunk) return false;
    } else if (a.x_mode == SKINNY_X_GELU_MUL) {
        if (a.ld_x < 2 * a.K) return false;
    }
    if (a.conv.out) {
        const skinny_conv_epilogue & cv = a.conv;
        if (a.x_mode != SKINNY_X_RMSNORM || !a.y_f32 || a.accumulate) return false;
        if (!cv.state || !cv.w || !cv.seq_slot || (uintptr_t) cv.w % 8 != 0 || cv.n < 1 || cv.col0 < 0) return false;
        if (cv.col0 + cv.n > a.seg[0].n) return false;
    }
    return true;
}

bool skinny_gemm(const skinny_gemm_args & a, cudaStream_t stream) {
    if (a.M < 1 || a.M > ZK_SKINNY_MAX_M || a.n_seg < 1 || a.n_seg > ZK_SKINNY_MAX_SEGMENTS) return false;
    if (a.x_mode < SKINNY_X_BF16 || a.x_mode > SKINNY_X_GELU_MUL || !skinny_fused_args_ok(a)) return false;
    if (a.K < 8 || a.K % 8 != 0 || a.ld_x % 8 != 0 || !aligned16(a.x)) return false;
    if (a.x_mode == SKINNY_X_SPLIT && (!a.x_lo || !aligned16(a.x_lo))) return false;
    if (a.schedule < SKINNY_SCHEDULE_DEFAULT || a.schedule > SKINNY_SCHEDULE_PERSISTENT) return false;
    skinny_launch L;
    L.a = a;
    int tiles = 0;
    for (int s = 0; s < a.n_seg; ++s) {
        const skinny_segment & sg = a.seg[s];
        if (sg.n < 1 || !sg.w || !sg.y || !aligned16(sg.w)) return false;
        if (sg.w2 && (a.K2 < 8 || a.K2 % 8 != 0 || a.ld_x2 % 4 != 0 || !sg.x2 || !aligned16(sg.x2) || !aligned16(sg.w2))) {
            return false;
        }
        tiles += (sg.n + 15) / 16;
        L.tile_end[s] = tiles;
    }
    L.tiles = tiles;
    switch (a.x_mode) {
        case SKINNY_X_BF16: skinny_launch_mode<SKINNY_X_BF16>(L, stream); break;
        case SKINNY_X_SPLIT: skinny_launch_mode<SKINNY_X_SPLIT>(L, stream); break;
        case SKINNY_X_F32: skinny_launch_mode<SKINNY_X_F32>(L, stream); break;
        case SKINNY_X_RMSNORM: skinny_launch_norm_mode<SKINNY_X_RMSNORM>(L, stream); break;
        case SKINNY_X_GATED_NORM: skinny_launch_norm_mode<SKINNY_X_GATED_NORM>(L, stream); break;
        default: skinny_launch_norm_mode<SKINNY_X_GELU_MUL>(L, stream); break;
    }
    return true;
}
