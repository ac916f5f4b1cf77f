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
// KS blocks share a tile (grid.y): each writes its partial tile to a workspace and the last to finish
// (a per-tile counter) sums the KS partials in order and writes y: deterministic, and the counter is
// reset for the next launch (CUDA-graph safe). Several weight matrices with the same K (q/k/v, LoRA
// w0s) share one launch as segments of the grid.
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

// ---- kernel ------------------------------------------------------------------------------------

struct skinny_launch {
    skinny_gemm_args a;
    int tile_end[ZK_SKINNY_MAX_SEGMENTS];  // cumulative 16-feature tiles per segment
    int steps_per_block;                   // 32-wide k steps of one grid.y slice
};

template <int NT, int XMODE, bool OUT_F32>
static __global__ void __launch_bounds__(ZK_SKINNY_WARPS * ZK_WARP_SIZE) skinny_gemm_kernel(const skinny_launch L) {
    constexpr int ENTRIES = NT * 4 * ZK_WARP_SIZE;                // one tile: 16 features x 8 NT rows
    __shared__ float red[ZK_SKINNY_WARPS][NT * 4][ZK_WARP_SIZE];  // per-warp partial tiles
    __shared__ bool last_block;
    const skinny_gemm_args & a = L.a;
    const int tile = blockIdx.x, ks = blockIdx.y, KS = gridDim.y;
    int s = 0;
    while (s + 1 < a.n_seg && tile >= L.tile_end[s]) ++s;
    const skinny_segment & sg = a.seg[s];
    const int n0 = (tile - (s > 0 ? L.tile_end[s - 1] : 0)) * 16;
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE, g = lane / 4, t = lane % 4;
    const int na = n0 + g, nb = n0 + g + 8;
    const bool ok_a = na < sg.n, ok_b = nb < sg.n;

    float acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    const int s_begin = ks * L.steps_per_block, s_end = min((a.K + 31) / 32, s_begin + L.steps_per_block);
    zk_skinny_accumulate<NT, XMODE>(acc, sg.w + (int64_t) (ok_a ? na : 0) * a.K, sg.w + (int64_t) (ok_b ? nb : 0) * a.K,
                                    ok_a, ok_b, a.x, a.x_lo, a.ld_x, a.K, a.M, s_begin, s_end, warp, g, t);  // w: [N, K]
    if (sg.w2 && ks == 0) {
        zk_skinny_accumulate<NT, SKINNY_X_F32>(acc, sg.w2 + (int64_t) (ok_a ? na : 0) * a.K2,
                                               sg.w2 + (int64_t) (ok_b ? nb : 0) * a.K2, ok_a, ok_b, sg.x2, nullptr,
                                               a.ld_x2, a.K2, a.M, 0, (a.K2 + 31) / 32, warp, g, t);  // w2: [N, K2]
    }
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
        if (!last_block) return;
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

// ---- launcher ----------------------------------------------------------------------------------

static bool aligned16(const void * p) { return ((uintptr_t) p % 16) == 0; }

// Blocks per SM the kernels reach (256 threads, 100-128 registers for every NT per ptxas -v).
constexpr int ZK_SKINNY_BLOCKS_PER_SM = 2;

template <int NT, int XMODE>
static void skinny_launch_nt(skinny_launch & L, int tiles, cudaStream_t stream) {
    // K slices (grid.y): one round of loads per warp per slice, enough blocks for ~2 waves, a
    // workspace large enough; KS = 1 when the tiles alone fill the GPU.
    constexpr int U = skinny_unroll<NT>::value;
    static int n_sm = 0;
    if (n_sm == 0) {
        int dev = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev);
        if (n_sm <= 0) n_sm = 132;
    }
    const int n_steps = (L.a.K + 31) / 32;
    const int round = ZK_SKINNY_WARPS * U;
    int KS = 1;
    const int want = 2 * n_sm * ZK_SKINNY_BLOCKS_PER_SM;
    while (KS < 8 && tiles * KS < want && (n_steps + KS * 2 - 1) / (KS * 2) >= round / 2) KS *= 2;
    const int64_t entries = (int64_t) NT * 4 * ZK_WARP_SIZE;
    if (!L.a.workspace || !L.a.counters || (int64_t) tiles * KS * entries > L.a.workspace_floats || tiles > L.a.counter_count) KS = 1;
    L.steps_per_block = (n_steps + KS - 1) / KS;
    const dim3 grid((unsigned) tiles, (unsigned) KS), block(ZK_SKINNY_WARPS * ZK_WARP_SIZE);
    if (L.a.y_f32) skinny_gemm_kernel<NT, XMODE, true><<<grid, block, 0, stream>>>(L);
    else skinny_gemm_kernel<NT, XMODE, false><<<grid, block, 0, stream>>>(L);
}

template <int XMODE>
static void skinny_launch_mode(skinny_launch & L, int tiles, cudaStream_t stream) {
    const int M = L.a.M;
    if (M <= 8) skinny_launch_nt<1, XMODE>(L, tiles, stream);
    else if (M <= 16) skinny_launch_nt<2, XMODE>(L, tiles, stream);
    else if (M <= 32) skinny_launch_nt<4, XMODE>(L, tiles, stream);
    else skinny_launch_nt<8, XMODE>(L, tiles, stream);
}

bool skinny_gemm(const skinny_gemm_args & a, cudaStream_t stream) {
    if (a.M < 1 || a.M > ZK_SKINNY_MAX_M || a.n_seg < 1 || a.n_seg > ZK_SKINNY_MAX_SEGMENTS) return false;
    if (a.K < 8 || a.K % 8 != 0 || a.ld_x % 8 != 0 || !aligned16(a.x)) return false;
    if (a.x_mode == SKINNY_X_SPLIT && (!a.x_lo || !aligned16(a.x_lo))) return false;
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
    switch (a.x_mode) {
        case SKINNY_X_BF16: skinny_launch_mode<SKINNY_X_BF16>(L, tiles, stream); break;
        case SKINNY_X_SPLIT: skinny_launch_mode<SKINNY_X_SPLIT>(L, tiles, stream); break;
        default: skinny_launch_mode<SKINNY_X_F32>(L, tiles, stream); break;
    }
    return true;
}
