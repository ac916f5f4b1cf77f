// skinny_gemm's warp-level weight stream (kernels/src/skinny-gemm.cu includes this once): a warp's group of U
// 32-wide k steps, its W loads (registers, or cp.async into shared slots for the group in flight across the PDL
// wait), and the MMAs of the group against the input rows (swap AB: 16 output features x 8 rows per mma).
#pragma once

#include "skinny-gemm-input.cuh"

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

// Streamed once per step: do not allocate in L1. A warp's load covers 64 bytes of each of 8 rows and the row's next
// 64-byte steps belong to the next warps, so the L2 fetches the whole aligned 256 bytes at the first miss.
// Loaded into r where pred holds, r left as it is elsewhere: the predicate lives inside the asm and r is tied to it.
// Written as `pred ? load : zero`, the compiler loaded into temporaries and moved them into r under the predicate,
// and each move waited for its load: the 16-feature tiles' preload then held its CTA until the weights arrived,
// before its PDL wait (SASS: LDG, MOV / STL of the loaded registers, ACQBULK). The half tiles still get such moves
// (their MMA fragments interleave two loads' registers; kernels/NOTES.md run 62).
static __device__ __forceinline__ void zk_ld_stream_if(uint4 & r, const bf16 * p, bool pred) {
    asm("{\n\t.reg .pred q;\n\tsetp.ne.b32 q, %4, 0;\n\t"
        "@q ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%5];\n\t}"
        : "+r"(r.x), "+r"(r.y), "+r"(r.z), "+r"(r.w) : "r"((int) pred), "l"(p));
}

// One group of U 32-wide k steps of a warp: its W loads (rows n0+g and n0+g+8, 16 bytes each per step), issued
// together. Split from the MMAs so a CTA can issue its first group before its PDL wait (weights are constant).
template <int U>
static __device__ __forceinline__ void zk_skinny_load_w(uint4 (&wa)[U], uint4 (&wb)[U], const bf16 * w_a, const bf16 * w_b,
                                                        bool ok_a, bool ok_b, int K, int n_steps, int s0, int t) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int k = (s0 + u * ZK_SKINNY_WARPS) * 32 + 8 * t;  // K % 8 == 0: 8 elements all in or all out
        const bool in = s0 + u * ZK_SKINNY_WARPS < n_steps && k < K;
        wa[u] = make_uint4(0, 0, 0, 0);
        wb[u] = make_uint4(0, 0, 0, 0);
        zk_ld_stream_if(wa[u], w_a + k, ok_a && in);  // W row n0+g
        zk_ld_stream_if(wb[u], w_b + k, ok_b && in);  // W row n0+g+8
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
        asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;" ::"r"(da), "l"(w_a + (ia ? k : 0)), "r"(ia ? 16 : 0) : "memory");
        asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;" ::"r"(db), "l"(w_b + (ib ? k : 0)), "r"(ib ? 16 : 0) : "memory");
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
}

// acc[j] (16 features x 8 rows 8j..8j+7) += W . x^T over one group: x loads of the group first, then the MMAs.
template <int NT, int XMODE, int U, bool STAGED>
static __device__ __forceinline__ void zk_skinny_group(float (&acc)[NT][4], const uint4 (&wa)[U], const uint4 (&wb)[U],
                                                       const skinny_x_view & X, int M, int n_steps, int s0, int g, int t) {
    const uint4 zero = make_uint4(0, 0, 0, 0);
    if constexpr (STAGED) {  // NT = 1: x row g from shared memory, loaded right before its MMAs
        // half tiles: B column g is row g / 2 over the K half g % 2 (the A rows' halves: skinny_launch::half_k)
        const int xm = X.half_k ? g >> 1 : g, xk = X.half_k && (g & 1) ? X.half_k : 0;
        const int kw = X.half_k ? X.half_k : X.K;
        const bool row_ok = xm < M;
        const unsigned char * xrow = X.stage + xm * X.stage_stride + 2 * xk;
#pragma unroll
        for (int u = 0; u < U; ++u) {
            if (s0 + u * ZK_SKINNY_WARPS >= n_steps) break;  // warp-uniform
            const int k = (s0 + u * ZK_SKINNY_WARPS) * 32 + 8 * t;
            const bool in = row_ok && k < kw;
            const unsigned char * row = xrow + 2 * k;
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
    } else {
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
        zk_skinny_load_w<U>(wa, wb, w_a, w_b, ok_a, ok_b, X.half_k ? X.half_k : X.K, s_end, s0, t);
        zk_skinny_group<NT, XMODE, U, STAGED>(acc, wa, wb, X, M, s_end, s0, g, t);
    }
}

