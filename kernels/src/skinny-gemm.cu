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

// ---- device helpers ----------------------------------------------------------------------------

// Streamed once per step: do not allocate in L1.
static __device__ __forceinline__ uint4 zk_ld_stream(const bf16 * p) {
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

// 8 consecutive x elements of row m at column k as bf16 hi (and lo for split modes).
template <int XMODE>
static __device__ __forceinline__ void zk_load_x8(uint4 & hi, uint4 & lo, const void * x, const bf16 * x_lo, int64_t ld_x,
                                                  int m, int k) {
    if (XMODE == SKINNY_X_F32) {
        const float4 * p = reinterpret_cast<const float4 *>(static_cast<const float *>(x) + m * ld_x + k);  // x: [M, K] f32
        const float4 v0 = __ldg(p), v1 = __ldg(p + 1);
        // the same split as zk_split2, written over floats: zk_split2's form spills in the NT 2/8 variants
        const float f[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
        float h[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) h[i] = zk_to_f32(zk_to_bf16(f[i]));
        const auto pack = [](float a, float b) {
            const __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
            return *reinterpret_cast<const uint32_t *>(&v);
        };
        hi = make_uint4(pack(h[0], h[1]), pack(h[2], h[3]), pack(h[4], h[5]), pack(h[6], h[7]));
        lo = make_uint4(pack(f[0] - h[0], f[1] - h[1]), pack(f[2] - h[2], f[3] - h[3]), pack(f[4] - h[4], f[5] - h[5]),
                        pack(f[6] - h[6], f[7] - h[7]));
    } else {
        hi = __ldg(reinterpret_cast<const uint4 *>(static_cast<const bf16 *>(x) + m * ld_x + k));            // x: [M, K] bf16
        if (XMODE == SKINNY_X_SPLIT) lo = __ldg(reinterpret_cast<const uint4 *>(x_lo + m * ld_x + k));     // x_lo: [M, K]
    }
}

// acc[j] (16 features x 8 rows 8j..8j+7) += W[n0.., k] . x[8j.., k]^T over this warp's share of the
// 32-wide k steps [s_begin, s_end).
template <int NT, int XMODE>
static __device__ __forceinline__ void zk_skinny_accumulate(float (&acc)[NT][4], const bf16 * w_a, const bf16 * w_b,
                                                            bool ok_a, bool ok_b, const void * x, const bf16 * x_lo,
                                                            int ld_x, int K, int M, int s_begin, int s_end, int warp,
                                                            int g, int t) {
    constexpr int U = skinny_unroll<NT>::value;
    const uint4 zero = make_uint4(0, 0, 0, 0);
    const int n_steps = s_end;
    for (int s0 = s_begin + warp; s0 < n_steps; s0 += ZK_SKINNY_WARPS * U) {
        uint4 wa[U], wb[U], xh[U][NT], xl[U][NT];
#pragma unroll
        for (int u = 0; u < U; ++u) {  // every load of the group first: W (U x 1 KB per warp) and x
            const int k = (s0 + u * ZK_SKINNY_WARPS) * 32 + 8 * t;  // K % 8 == 0: 8 elements all in or all out
            const bool in = s0 + u * ZK_SKINNY_WARPS < n_steps && k < K;
            wa[u] = ok_a && in ? zk_ld_stream(w_a + k) : zero;   // W row n0+g
            wb[u] = ok_b && in ? zk_ld_stream(w_b + k) : zero;   // W row n0+g+8
#pragma unroll
            for (int j = 0; j < NT; ++j) {
                const int m = 8 * j + g;
                xh[u][j] = zero;
                xl[u][j] = zero;
                if (in && m < M) zk_load_x8<XMODE>(xh[u][j], xl[u][j], x, x_lo, ld_x, m, k);
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
                if (XMODE != SKINNY_X_BF16) {
                    zk_mma_bf16(acc[j], a03, xl[u][j].x, xl[u][j].y);
                    zk_mma_bf16(acc[j], a47, xl[u][j].z, xl[u][j].w);
                }
            }
        }
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
    zk_skinny_accumulate<NT, SKINNY_X_F32>(acc, sg.w2 + (int64_t) (ok_a ? na : 0) * a.K2,
                                           sg.w2 + (int64_t) (ok_b ? nb : 0) * a.K2, ok_a, ok_b, sg.x2, nullptr,
                                           a.ld_x2, a.K2, a.M, 0, (a.K2 + 31) / 32, warp, g, t);  // w2: [N, K2]
}

// One work item: the block's 8 warps accumulate 16 features x all M rows over K slice ks, sum their
// partial tiles in a fixed order, and write y (or, split-K, a partial tile; the last slice sums them).
template <int NT, int XMODE, bool OUT_F32>
static __device__ __forceinline__ void skinny_item_finish(const skinny_launch & L, const skinny_item_pos & p,
                                                          const float (&acc)[NT][4],
                                                          float (&red)[ZK_SKINNY_WARPS][NT * 4][ZK_WARP_SIZE],
                                                          bool & last_block);

template <int NT, int XMODE, bool OUT_F32>
static __device__ __forceinline__ void skinny_item(const skinny_launch & L, int item,
                                                   float (&red)[ZK_SKINNY_WARPS][NT * 4][ZK_WARP_SIZE],
                                                   bool & last_block) {
    const skinny_gemm_args & a = L.a;
    const skinny_item_pos p = skinny_locate(L, item);
    const skinny_segment & sg = a.seg[p.seg];
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE, g = lane / 4, t = lane % 4;
    const int na = p.n0 + g, nb = p.n0 + g + 8;
    const bool ok_a = na < sg.n, ok_b = nb < sg.n;
    float acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    const int s_begin = p.ks * L.steps_per_slice, s_end = min((a.K + 31) / 32, s_begin + L.steps_per_slice);
    zk_skinny_accumulate<NT, XMODE>(acc, sg.w + (int64_t) (ok_a ? na : 0) * a.K, sg.w + (int64_t) (ok_b ? nb : 0) * a.K,
                                    ok_a, ok_b, a.x, a.x_lo, a.ld_x, a.K, a.M, s_begin, s_end, warp, g, t);  // w: [N, K]
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
        } else {
            bf16 * yo = static_cast<bf16 *>(sg.y) + (int64_t) m * sg.ld_y + n;     // y: [M, N] bf16
            *yo = zk_to_bf16(a.accumulate ? zk_to_f32(*yo) + v : v);
        }
    }
    if (KS > 1 && threadIdx.x == 0) a.counters[tile] = 0;  // ready for the next launch
}

// CTA b takes items b, b + gridDim.x, ... (GRID schedule: exactly one). Weights are constant, so their
// prefetch may run before zk_pdl_wait, overlapping the previous kernel under PDL; everything else after.
template <int NT, int XMODE, bool OUT_F32>
static __global__ void __launch_bounds__(ZK_SKINNY_WARPS * ZK_WARP_SIZE, ZK_SKINNY_BLOCKS_PER_SM)
    skinny_gemm_kernel(const __grid_constant__ skinny_launch L) {
    __shared__ float red[ZK_SKINNY_WARPS][NT * 4][ZK_WARP_SIZE];  // per-warp partial tiles
    __shared__ bool last_block;
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
    zk_pdl_wait();
    for (int it = blockIdx.x; it < n_items; it += gridDim.x) {
        if (it != (int) blockIdx.x && L.prefetch_ahead >= 0 && warp == 0) {  // keep the window full
            const int64_t next = it + (int64_t) L.prefetch_ahead * gridDim.x;
            if (next < n_items) skinny_prefetch_item(L, (int) next, lane);
        }
        skinny_item<NT, XMODE, OUT_F32>(L, it, red, last_block);
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
    const int grid = persistent ? std::min(n_items, resident) : n_items;
    // L2 prefetch window: whole items within prefetch_kb beyond the current one (GRID: the current item)
    const int prefetch_kb = a.prefetch_kb == 0 ? ZK_SKINNY_DEFAULT_PREFETCH_KB : a.prefetch_kb;
    const int64_t item_bytes = (int64_t) 16 * std::min(a.K, L.steps_per_slice * 32) * (int64_t) sizeof(bf16);
    L.prefetch_ahead = prefetch_kb < 0 ? -1
                                       : (int) std::min<int64_t>(ZK_SKINNY_MAX_PREFETCH_AHEAD,
                                                                 (int64_t) prefetch_kb * 1024 / item_bytes);
    if (schedule == SKINNY_SCHEDULE_GRID && L.prefetch_ahead > 0) L.prefetch_ahead = 0;

    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned) grid);
    cfg.blockDim = dim3(ZK_SKINNY_WARPS * ZK_WARP_SIZE);
    cfg.dynamicSmemBytes = 0;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = a.pdl && dev.pdl ? 1 : 0;
    // launch errors surface at the caller's check (cudaGetLastError / stream capture)
    cudaLaunchKernelEx(&cfg, skinny_gemm_kernel<NT, XMODE, OUT_F32>, L);
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

bool skinny_gemm(const skinny_gemm_args & a, cudaStream_t stream) {
    if (a.M < 1 || a.M > ZK_SKINNY_MAX_M || a.n_seg < 1 || a.n_seg > ZK_SKINNY_MAX_SEGMENTS) return false;
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
        default: skinny_launch_mode<SKINNY_X_F32>(L, stream); break;
    }
    return true;
}
