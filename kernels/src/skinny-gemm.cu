// Skinny GEMM for decode-sized steps (M <= 64 token rows) on tensor cores, weights streamed once:
//
//   y[m, n] (+)= sum_k x[m, k] w[n, k]  +  sum_r x2[m, r] w2[n, r]          (w2 term optional)
//
// x comes as bf16 (SKINNY_X_BF16), as bf16 hi + lo rows whose sum is the fp32 value to ~2^-17
// (SKINNY_X_SPLIT, what the norms write), as fp32 split into hi + lo in registers (SKINNY_X_F32), or, on decode
// steps of <= 8 rows, computed from its producer's output (rmsnorm, gated norm, GELU(g) * u: skinny-gemm-input.cuh);
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
// the counter is reset for the next launch (CUDA-graph safe). At M <= 4 such shapes use half tiles instead
// (8 features over the whole K, its two halves in the mma's A rows g and g+8 and B columns 2m and 2m+1:
// skinny-gemm-item.cuh), which end with their own write. Several weight matrices with the same K
// (q/k/v, LoRA w0s) share one launch as segments.
//
// Streaming (measured on the H200, ZK_BENCH_SKINNY=1 in the kernel tests): by default a persistent grid
// (at most one resident wave of CTAs) loops over the work items (item = 16 features x one K slice), so no
// CTA launch ramp or wave tail between items, and split-K is only used to give about half the resident
// CTAs an item (out_proj 2048x4096 at M = 1: 14.1 -> 8.8 us). Launched with PDL (args.pdl) the kernel
// triggers its dependents at once and waits for its predecessor before its first load of x, so its
// launch and CTA ramp overlap the previous kernel (1.2B layer chain at M = 1: 35.7 -> 30.7 us per layer).
// M <= 8 (NT = 1, kernels/NOTES.md runs 18-22): each CTA stages its whole input in shared memory once (every
// mode; the computed ones are otherwise recomputed per item), so the main loop reads x from shared memory and a
// warp holds 8 steps of weight loads (256 B per lane); before its PDL wait it already issues its first 4 steps
// (registers) and, when the item has more, a second group through cp.async (shared slots, U = 4 only); and each
// item (16-feature tiles) issues the first 4 steps of the CTA's next item before its finish (run 62).
// Measured slower and removed (kernels/NOTES.md run log): the copy engine's L2 prefetch of the next items (in_proj
// M = 1 13.5 -> 16.6-17.7 us) or of the next launch's weights (runs 44, 50-55), a cp.async ring of 4-6 stages per
// warp across items (in_proj 13.5 -> 16.2 us), a shared-memory ring of bulk copies (runs 28-29), one CTA per SM, a
// persistent grid sized to fill its rounds evenly (b1 1.980 -> 2.011 ms), more weights in shared memory before the
// wait (run 52), the first item peeled out of the item loop (run 60: no spills, but b1 +110 us). Items are summed
// exactly as before, whichever CTA takes them: for a given K slicing the results do not depend on the schedule, PDL,
// the staging or the preloads (bitwise, tested).
#include <algorithm>
#include <type_traits>

#define ZK_SKINNY_WARPS 8

#include "skinny-gemm-item.cuh"
#include "zamba2-launch.cuh"
#include "zamba2-timeline.cuh"

// Blocks per SM (256 threads; __launch_bounds__ holds every variant at <= 128 registers; ptxas -v: the staged
// M <= 8 variants spill at most 32 bytes, the preload held across the wait, the others at most 64 bytes): the
// persistent grid is this many CTAs per SM.
constexpr int ZK_SKINNY_BLOCKS_PER_SM = 2;

// ---- the register-streaming kernel ------------------------------------------------------------


// use_pre: the first PRE steps of the warp's first group of W loads for this item are already in pre_a /
// pre_b (issued before the PDL wait, or by the CTA's previous item), and its second group in the shared slots
// (cp.async, when slots is not null). next_item >= 0: the CTA's next item, whose first PRE steps this item issues
// into pre_a / pre_b once its own weights are consumed, so they are in flight during its finish (returns whether).
template <int NT, int XMODE, bool OUT_F32, int U, bool STAGED, int PRE, bool HALF>
static __device__ __forceinline__ bool skinny_item(const skinny_launch & L, int item, const skinny_x_view & X,
                                                   float (&red)[ZK_SKINNY_WARPS][NT * 4][ZK_WARP_SIZE],
                                                   bool & last_block, bool use_pre, uint4 (&pre_a)[PRE],
                                                   uint4 (&pre_b)[PRE], const uint4 * slots, bool have_pre, float y_pre,
                                                   skinny_conv_stage * cs, int next_item) {
    const skinny_item_pos p = skinny_locate<HALF>(L, item);
    const skinny_item_rows r = skinny_rows<HALF>(L, p);
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE, g = lane / 4, t = lane % 4;
    float acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    // the conv epilogue's operands into shared memory while the item's weights stream (cs: RMSNORM, fp32 y only)
    const bool conv_staged = cs && L.a.conv.out && !L.a.no_conv_stage && skinny_conv_stage_issue(L.a, p.seg, p.n0, *cs);
    if (!conv_staged && XMODE == SKINNY_X_RMSNORM && L.a.conv.out) skinny_conv_prefetch(L.a, p.seg, p.n0);
    int s_first = r.s_begin + warp;
    if (use_pre && s_first < r.s_end) {
        uint4 wa[U], wb[U];
#pragma unroll
        for (int u = 0; u < PRE; ++u) { wa[u] = pre_a[u]; wb[u] = pre_b[u]; }
        if constexpr (PRE < U) {  // the rest of the group, issued now
            constexpr int REST = PRE < U ? U - PRE : 1;
            uint4 ra[REST], rb[REST];
            zk_skinny_load_w<REST>(ra, rb, r.w_a, r.w_b, r.ok_a, r.ok_b, r.kw, r.s_end, s_first + PRE * ZK_SKINNY_WARPS, t);
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
    const bool next_pre = NT == 1 && next_item >= 0;
    if (next_pre) {
        const skinny_item_rows rn = skinny_rows<HALF>(L, skinny_locate<HALF>(L, next_item));
        zk_skinny_load_w<PRE>(pre_a, pre_b, rn.w_a, rn.w_b, rn.ok_a, rn.ok_b, rn.kw, rn.s_end, rn.s_begin + warp, t);
    }
    skinny_item_finish<NT, XMODE, OUT_F32, HALF>(L, p, acc, red, last_block, have_pre, y_pre, conv_staged ? cs : nullptr);
    return next_pre;
}

// CTA b takes items b, b + gridDim.x, ... (GRID schedule: exactly one). Weights are constant, so the first group
// of W loads of the CTA's first item is issued before zk_pdl_wait: under PDL they overlap the previous kernel;
// everything that reads activations or writes comes after.
template <int NT, int XMODE, bool OUT_F32, bool STAGED, bool HALF = false>
static __global__ void __launch_bounds__(ZK_SKINNY_WARPS * ZK_WARP_SIZE, ZK_SKINNY_BLOCKS_PER_SM)
    skinny_gemm_kernel(const __grid_constant__ skinny_launch L) {
    extern __shared__ __align__(16) unsigned char stage[];  // STAGED: the computed input
    constexpr int U = skinny_group_steps<NT, STAGED>::value;
    constexpr bool SLOTS = NT == 1 && U <= 4;  // the second group's shared slots (32 KB at U = 4)
    constexpr bool NORM = XMODE == SKINNY_X_RMSNORM || XMODE == SKINNY_X_GATED_NORM;
    __shared__ float red[ZK_SKINNY_WARPS][NT * 4][ZK_WARP_SIZE];  // per-warp partial tiles
    __shared__ bool last_block;
    __shared__ float inv[NORM ? ZK_SKINNY_NORM_MAX_M * ZK_SKINNY_NORM_MAX_GROUPS : 1];
    // the conv epilogue's operands (in_proj of a decode step: RMSNORM with fp32 y; skinny_conv_stage_issue)
    constexpr bool CONV = XMODE == SKINNY_X_RMSNORM && OUT_F32;
    __shared__ typename std::conditional<CONV, skinny_conv_stage, int>::type conv_stage;
    ZK_TL_BEGIN();
    zk_pdl_trigger();  // a GEMV often follows a GEMV (LoRA, then the main weights): let it prefetch
    const int n_items = L.tiles * L.KS;
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE;
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
        const skinny_item_rows r = skinny_rows<HALF>(L, skinny_locate<HALF>(L, blockIdx.x));
        zk_skinny_load_w<PRE>(pre_a, pre_b, r.w_a, r.w_b, r.ok_a, r.ok_b, r.kw, r.s_end, r.s_begin + warp, lane % 4);
        const int s1 = r.s_begin + warp + ZK_SKINNY_WARPS * U;
        if (SLOTS && !L.a.no_second_group && s1 < r.s_end) {
            uint4 * mine = w_slots + warp * 2 * U * ZK_WARP_SIZE + lane;
            zk_skinny_copy_w<U>(mine, r.w_a, r.w_b, r.ok_a, r.ok_b, r.kw, r.s_end, s1, lane % 4);
            slots = mine;
        }
    }
    if (NORM) {  // the norm weight is a constant: into L1 before the wait (the staging reads it right after)
        for (int line = threadIdx.x; line * 64 < L.a.K; line += blockDim.x) {
            asm volatile("prefetch.global.L1 [%0];" ::"l"(L.a.norm.w + line * 64));
        }
    }
    zk_pdl_wait();
    ZK_TL_WAITED();
    // the rows' conv state slots: loaded with the staging's loads, stored once the staging is done (storing at
    // once would hold warp 0's staging loads back by one round trip)
    const bool conv_rows = CONV && L.a.conv.out && (int) threadIdx.x < L.a.M;
    int conv_slot = 0;
    if (conv_rows) asm volatile("ld.global.s32 %0, [%1];" : "=r"(conv_slot) : "l"(L.a.conv.seq_slot + threadIdx.x));
    float y_pre = 0.0f;  // the first item's old y (accumulate), read while the CTA stages its input
    bool have_pre = (int) blockIdx.x < n_items && skinny_y_preread<NT, OUT_F32, HALF>(L, blockIdx.x, y_pre);
    skinny_x_view X = {L.a.x, L.a.x_lo, L.a.ld_x, L.a.K, &L.a.norm, inv, stage, L.stage_stride, L.a.M * L.stage_stride,
                       skinny_half<HALF && STAGED>(L)};
    __shared__ float part[ZK_SKINNY_WARPS][ZK_SKINNY_NORM_MAX_M];  // the norm modes' per-warp row sums
    if (STAGED && NORM && L.a.M * L.a.K <= (int) blockDim.x * 8 * ZK_SKINNY_ONE_PASS_PACKS) {
        skinny_stage_one_pass<XMODE>(L.a, X, inv, part, stage);
    } else {
        if (NORM) skinny_norm_prologue<XMODE>(L.a, inv, part);
        if (STAGED) skinny_stage_input<XMODE>(X, L.a.M, stage);
    }
    if constexpr (CONV) {
        if (L.a.conv.out) {
            if (conv_rows) conv_stage.slot[threadIdx.x] = conv_slot;
            __syncthreads();
        }
    }
    ZK_TL_MARK(0);
    // pre_a / pre_b hold the first steps of item it's first group: the preload, then each item's cross-item issue of
    // the next (NT = 1, 16-feature tiles: the half tiles have one item per CTA where they are used, and the issue
    // costs them spills)
    bool pre_ready = preload;
    for (int it = blockIdx.x; it < n_items; it += gridDim.x) {
        const bool first = it == (int) blockIdx.x;
        const int next = NT == 1 && !HALF && !L.a.no_cross_preload && it + (int) gridDim.x < n_items ? it + (int) gridDim.x : -1;
        if (!first) have_pre = skinny_y_preread<NT, OUT_F32, HALF>(L, it, y_pre);
        pre_ready = skinny_item<NT, XMODE, OUT_F32, U, STAGED, PRE, HALF>(
            L, it, X, red, last_block, pre_ready, pre_a, pre_b, first ? slots : nullptr, have_pre, y_pre,
            CONV ? (skinny_conv_stage *) &conv_stage : nullptr, next);
        __syncthreads();  // red and last_block are reused by the next item
        if (it == (int) blockIdx.x) ZK_TL_MARK(1);
    }
    ZK_TL_END(ZK_TL_SKINNY);
}

// ---- launcher ----------------------------------------------------------------------------------

static bool aligned16(const void * p) { return ((uintptr_t) p % 16) == 0; }

// Tiles of rows_per_tile output features over all segments; tile_end: the cumulative count per segment.
static int skinny_count_tiles(const skinny_gemm_args & a, int (&tile_end)[ZK_SKINNY_MAX_SEGMENTS], int rows_per_tile) {
    int tiles = 0;
    for (int s = 0; s < a.n_seg; ++s) {
        tiles += (a.seg[s].n + rows_per_tile - 1) / rows_per_tile;
        tile_end[s] = tiles;
    }
    return tiles;
}

// Measured defaults (H200, 1.2B decode shapes at M = 1 and 8: ZK_BENCH_SKINNY=1, tests/test-skinny-gemm-bench.cu):
// PERSISTENT.
constexpr skinny_schedule ZK_SKINNY_DEFAULT_SCHEDULE = SKINNY_SCHEDULE_PERSISTENT;
// With the 32 KB of weight slots and 4 KB of partial tiles, two CTAs per SM still fit (2 x 108.5 KB of 227).
constexpr size_t ZK_SKINNY_STAGE_MAX_BYTES = 72 * 1024;

// Once per kernel instantiation (a host-side attribute: fine during stream capture): dynamic shared memory may
// pass 48 KB.
template <typename Kernel>
static void skinny_allow_smem(Kernel kernel, size_t bytes, bool & opted_in) {
    if (!opted_in) {
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) bytes);
        opted_in = true;
    }
}

template <int NT, int XMODE, bool OUT_F32>
static void skinny_launch_kernel(skinny_launch & L, cudaStream_t stream) {
    constexpr int U = skinny_unroll<NT>::value;
    const skinny_gemm_args & a = L.a;
    const skinny_schedule schedule = a.schedule == SKINNY_SCHEDULE_DEFAULT ? ZK_SKINNY_DEFAULT_SCHEDULE : a.schedule;
    const bool persistent = schedule != SKINNY_SCHEDULE_GRID;

    // staged input (NT = 1): hi (and lo) rows of 2K bytes + 64 (the pad puts rows g and g+1 of a quarter warp's
    // 16-byte loads on different banks); at most ZK_SKINNY_STAGE_MAX_BYTES so two CTAs still fit per SM
    L.stage_stride = 2 * a.K + 64;
    const size_t stage_bytes = (size_t) a.M * L.stage_stride * (skinny_x_split<XMODE>::value ? 2 : 1);
    const bool staged = NT == 1 && !a.no_stage && stage_bytes <= ZK_SKINNY_STAGE_MAX_BYTES;

    // K slices: one round of loads per warp per slice at least. GRID: enough blocks for ~2 waves;
    // persistent: items for about half the resident CTAs (out_proj 2048x4096 M=1: 2 slices 9.8 us,
    // 4 slices 11.9, 8 slices 15.6).
    const int resident = zk_sm_count() * ZK_SKINNY_BLOCKS_PER_SM;
    const int round = ZK_SKINNY_WARPS * U;
    const int want = persistent ? resident / 2 : 2 * resident;
    auto auto_split = [&](int n_steps) {
        int ks = 1;
        while (ks < 8 && L.tiles * ks < want && (n_steps + ks * 2 - 1) / (ks * 2) >= round / 2) ks *= 2;
        return ks;
    };
    // Half tiles where 16-feature tiles would be split along K (out_proj, o_proj, down at M = 1): twice the tiles,
    // each over the whole K, so an item ends with its own write instead of a partial, a fence, a counter and a
    // second read by the last slice. The MMA's B columns carry the halves: M <= 4.
    L.half_k = 0;
    bool w2 = false;
    for (int s = 0; s < a.n_seg; ++s) w2 = w2 || a.seg[s].w2;
    if (NT == 1 && staged && a.M <= 4 && a.K % 64 == 0 && a.split_k == 0 && !a.no_half_tiles && !a.conv.out && !w2 &&
        auto_split((a.K + 31) / 32) > 1) {
        L.half_k = a.K / 2;
        L.tiles = skinny_count_tiles(a, L.tile_end, skinny_tile_rows(L.half_k));
    }
    const int n_steps = ((L.half_k ? L.half_k : a.K) + 31) / 32;
    int KS = a.split_k > 0 ? std::min(a.split_k, n_steps) : auto_split(n_steps);
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
    const dim3 block(ZK_SKINNY_WARPS * ZK_WARP_SIZE);
    // launch errors surface at the caller's check (cudaGetLastError / stream capture)
    // half tiles: their own instantiation (staged, NT = 1), so the others keep their register allocation
    auto kernel = L.half_k ? skinny_gemm_kernel<NT, XMODE, OUT_F32, NT == 1, NT == 1>
                  : staged ? skinny_gemm_kernel<NT, XMODE, OUT_F32, NT == 1> : skinny_gemm_kernel<NT, XMODE, OUT_F32, false>;
    if (staged) {
        static bool opted_in[2] = {false, false};  // per kernel: full and half tiles
        skinny_allow_smem(kernel, ZK_SKINNY_STAGE_MAX_BYTES, opted_in[L.half_k ? 1 : 0]);
    }
    zk_launch_pdl(a.pdl, kernel, dim3((unsigned) grid), block, staged ? stage_bytes : 0, stream, L);
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
    for (int s = 0; s < a.n_seg; ++s) {
        const skinny_segment & sg = a.seg[s];
        if (sg.n < 1 || !sg.w || !sg.y || !aligned16(sg.w)) return false;
        if (sg.w2 && (a.K2 < 8 || a.K2 % 8 != 0 || a.ld_x2 % 4 != 0 || !sg.x2 || !aligned16(sg.x2) || !aligned16(sg.w2))) {
            return false;
        }
    }
    L.tiles = skinny_count_tiles(a, L.tile_end, skinny_tile_rows(0));
    L.half_k = 0;
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
