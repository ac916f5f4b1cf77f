// skinny_gemm's work items (kernels/src/skinny-gemm.cu includes this once): the launch
// parameters, where an item (16 output features x one K slice) lies, its LoRA term, and how the 8 warps' partial
// tiles of an item are summed and written (split-K partials summed in a fixed order by the last slice).
#pragma once

#include "skinny-gemm-warp.cuh"

struct skinny_launch {
    skinny_gemm_args a;
    int tile_end[ZK_SKINNY_MAX_SEGMENTS];  // cumulative 16-feature tiles per segment
    int tiles;                             // over all segments
    int KS;                                // K slices per tile; work item = ks * tiles + tile
    int steps_per_slice;                   // 32-wide k steps of one slice
    int stage_stride;                      // staged input row stride, bytes (the STAGED kernels)
    // Half tiles (0: off; else K / 2): a tile is 8 output features and the mma's A rows g and g + 8 hold feature
    // n0 + g over the first and the second half of K, its B columns 2m and 2m + 1 input row m over the same
    // halves (M <= 4), so c0 + c3 is the whole dot product: no split-K partials for the shapes that needed them.
    int half_k;
};

// Output features per tile.
static __host__ __device__ __forceinline__ int skinny_tile_rows(int half_k) { return half_k ? 8 : 16; }
// HALF: the kernel instantiation that may run half tiles (the others compile as if half_k were 0).
template <bool HALF> static __device__ __forceinline__ int skinny_half(const skinny_launch & L) { return HALF ? L.half_k : 0; }

struct skinny_item_pos {
    int tile, ks, seg, n0;
};

template <bool HALF = false>
static __device__ __forceinline__ skinny_item_pos skinny_locate(const skinny_launch & L, int item) {
    skinny_item_pos p;
    p.ks = item / L.tiles;
    p.tile = item - p.ks * L.tiles;
    int s = 0;
    while (s + 1 < L.a.n_seg && p.tile >= L.tile_end[s]) ++s;
    p.seg = s;
    p.n0 = (p.tile - (s > 0 ? L.tile_end[s - 1] : 0)) * skinny_tile_rows(skinny_half<HALF>(L));
    return p;
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

// Where a warp's W loads of an item start: rows n0+g and n0+g+8 of the item's segment (clamped when past n), or
// with half tiles row n0+g at k 0 and at k K / 2; kw: the k extent of one of them; and the item's k steps.
struct skinny_item_rows {
    const bf16 * w_a, * w_b;
    bool ok_a, ok_b;
    int kw;
    int s_begin, s_end;
};

template <bool HALF = false>
static __device__ __forceinline__ skinny_item_rows skinny_rows(const skinny_launch & L, const skinny_item_pos & p) {
    const int half_k = skinny_half<HALF>(L);
    const skinny_gemm_args & a = L.a;
    const skinny_segment & sg = a.seg[p.seg];
    const int g = (threadIdx.x % ZK_WARP_SIZE) / 4;
    const int na = p.n0 + g, nb = half_k ? na : p.n0 + g + 8;
    skinny_item_rows r;
    r.ok_a = na < sg.n;
    r.ok_b = nb < sg.n;
    r.kw = half_k ? half_k : a.K;
    r.w_a = sg.w + (int64_t) (r.ok_a ? na : 0) * a.K;                 // w: [N, K]
    r.w_b = sg.w + (int64_t) (r.ok_b ? nb : 0) * a.K + half_k;        // half tiles: the row's second half
    r.s_begin = p.ks * L.steps_per_slice;
    r.s_end = min((r.kw + 31) / 32, r.s_begin + L.steps_per_slice);
    return r;
}

// Where output entry e of an item lands: feature n, input row m. Full tiles: e = c * 32 + lane of the C fragment
// (c0, c1 -> feature g, rows 2t, 2t+1 of the 8-row tile; c2, c3 -> feature g+8); half tiles: e = lane, whose
// c0 (first K half, column 2t) and c3 (second half, column 2t+1) together are feature g, row t.
template <int NT, bool HALF>
static __device__ __forceinline__ void skinny_entry_pos(const skinny_launch & L, const skinny_item_pos & p, int e, int & n, int & m) {
    const int q = e / ZK_WARP_SIZE, ln = e % ZK_WARP_SIZE;
    if (skinny_half<HALF>(L)) {
        n = p.n0 + ln / 4;
        m = ln % 4;
        return;
    }
    const int j = q / 4, c = q % 4;
    n = p.n0 + ln / 4 + (c >= 2 ? 8 : 0);
    m = 8 * j + 2 * (ln % 4) + (c & 1);
}

template <int NT, bool HALF>
static __device__ __forceinline__ int skinny_entries(const skinny_launch & L) {
    return skinny_half<HALF>(L) ? ZK_WARP_SIZE : NT * 4 * ZK_WARP_SIZE;
}

// NT = 1, one K slice, y += result in fp32 (out_proj into the residual; the HALF instantiations only): thread e
// reads its entry's old y when the item starts, so the item's end does not wait an L2 round trip for it. Returns
// whether it did (y_pre is set).
template <int NT, bool OUT_F32, bool HALF>
static __device__ __forceinline__ bool skinny_y_preread(const skinny_launch & L, int item, float & y_pre) {
    if (NT != 1 || !OUT_F32 || !HALF || !L.a.accumulate || L.KS != 1) return false;
    const int e = threadIdx.x;
    if (e >= skinny_entries<NT, HALF>(L)) return false;
    const skinny_item_pos p = skinny_locate<HALF>(L, item);
    const skinny_segment & sg = L.a.seg[p.seg];
    int n, m;
    skinny_entry_pos<NT, HALF>(L, p, e, n, m);
    if (n >= sg.n || m >= L.a.M) return false;
    const float * yo = static_cast<const float *>(sg.y) + (int64_t) m * sg.ld_y + n;  // y: [M, N] f32
    asm volatile("ld.global.f32 %0, [%1];" : "=f"(y_pre) : "l"(yo));  // volatile: issued here, not at its use
    return true;
}

// One work item: the block's 8 warps accumulate 16 (half tiles: 8) features x all M rows over K slice ks, sum their
// partial tiles in a fixed order, and write y (or, split-K, a partial tile; the last slice sums them).
// have_pre: this thread's entry's old y is y_pre (skinny_y_preread); cs: the conv epilogue's operands, copied when
// the item started (skinny_conv_stage_issue; nullptr: loaded here).
template <int NT, int XMODE, bool OUT_F32, bool HALF = false>
static __device__ __forceinline__ void skinny_item_finish(const skinny_launch & L, const skinny_item_pos & p,
                                                          const float (&acc)[NT][4],
                                                          float (&red)[ZK_SKINNY_WARPS][NT * 4][ZK_WARP_SIZE],
                                                          bool & last_block, bool have_pre = false, float y_pre = 0.0f,
                                                          const skinny_conv_stage * cs = nullptr) {
    constexpr int ENTRIES = NT * 4 * ZK_WARP_SIZE;  // one tile: 16 features x 8 NT rows
    const skinny_gemm_args & a = L.a;
    const int tile = p.tile, ks = p.ks, KS = L.KS;
    const skinny_segment & sg = a.seg[p.seg];
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE;
#pragma unroll
    for (int j = 0; j < NT; ++j) {
#pragma unroll
        for (int c = 0; c < 4; ++c) red[warp][j * 4 + c][lane] = acc[j][c];
    }
    if (cs) asm volatile("cp.async.wait_all;" ::: "memory");  // this thread's copies; the barrier publishes them
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
    // fragment entry (q = c index, lane) summed over the warps, or over the slices' partials in a fixed order
    auto entry_sum = [&](int q, int ln) {
        float v = 0.0f;
        if (KS > 1) {
            const float * parts = a.workspace + (int64_t) tile * KS * ENTRIES + q * ZK_WARP_SIZE + ln;
            for (int k = 0; k < KS; ++k) v += __ldcg(parts + (int64_t) k * ENTRIES);  // deterministic
        } else {
#pragma unroll
            for (int w = 0; w < ZK_SKINNY_WARPS; ++w) v += red[w][q][ln];
        }
        return v;
    };
    const int n_entries = skinny_entries<NT, HALF>(L);
    for (int e = threadIdx.x; e < n_entries; e += blockDim.x) {
        const float v = skinny_half<HALF>(L) ? entry_sum(0, e) + entry_sum(3, e) : entry_sum(e / ZK_WARP_SIZE, e % ZK_WARP_SIZE);
        int n, m;
        skinny_entry_pos<NT, HALF>(L, p, e, n, m);
        if (n >= sg.n || m >= a.M) continue;
        if (OUT_F32) {
            float * yo = static_cast<float *>(sg.y) + (int64_t) m * sg.ld_y + n;   // y: [M, N] f32
            *yo = a.accumulate ? (have_pre ? y_pre : *yo) + v : v;
            // only the RMSNORM instantiations carry the conv epilogue (in_proj of a decode step)
            if (XMODE == SKINNY_X_RMSNORM && a.conv.out && p.seg == 0 && n >= a.conv.col0 && n < a.conv.col0 + a.conv.n) {
                if (cs) skinny_conv_decode_staged(a.conv, *cs, m, n - a.conv.col0, n - p.n0, v);
                else skinny_conv_decode(a.conv, m, n - a.conv.col0, v);
            }
        } else {
            bf16 * yo = static_cast<bf16 *>(sg.y) + (int64_t) m * sg.ld_y + n;     // y: [M, N] bf16
            *yo = zk_to_bf16(a.accumulate ? zk_to_f32(*yo) + v : v);
        }
    }
    if (KS > 1 && threadIdx.x == 0) a.counters[tile] = 0;  // ready for the next launch
}
