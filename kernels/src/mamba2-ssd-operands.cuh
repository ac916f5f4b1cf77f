// The chunked SSD's operands (mamba2-ssd.cu): its constants and launch arguments, the shared-memory planes of
// 64-token rows, the loads of B / C into split bf16 planes, and the split tensor-core products of C.B^T and of
// a fragment with several B tiles. Included by mamba2-ssd.cu only.
#pragma once

#include "zamba2-mma.cuh"

#include <cstdint>

namespace {

constexpr int kL = 64;         // chunk tokens (ZK_SSD_CHUNK_TOKENS)
constexpr int kP = 64;         // head_dim padded (P <= 64)
constexpr int kThreads = 256;  // 8 warps
constexpr int kWarps = 8;
constexpr int kLdX = kP + 8;   // bf16 row stride of the [64 x 64] planes (16-byte pad: conflict-free ldmatrix)

__device__ __forceinline__ float bf16_pair_sum(const __nv_bfloat16 * hi, const __nv_bfloat16 * lo, int off) {
    return __bfloat162float(hi[off]) + __bfloat162float(lo[off]);
}

__device__ __forceinline__ int ld_acquire(const int * p) {
    int v;
    asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void st_release(int * p, int v) {
    asm volatile("st.release.gpu.global.b32 [%0], %1;\n" ::"l"(p), "r"(v) : "memory");
}

// Four consecutive columns [col, col + 4) of an xbc row, zero past `width` (vec: 16-byte loads allowed).
__device__ __forceinline__ float4 load4(const float * row, int col, int width, bool vec) {
    if (vec) return *reinterpret_cast<const float4 *>(row + col);
    float4 v;
    v.x = col < width ? row[col] : 0.0f;
    v.y = col + 1 < width ? row[col + 1] : 0.0f;
    v.z = col + 2 < width ? row[col + 2] : 0.0f;
    v.w = col + 3 < width ? row[col + 3] : 0.0f;
    return v;
}
__device__ __forceinline__ float4 load4(const bf16 * row, int col, int width, bool) {
    float4 v;
    v.x = col < width ? zk_to_f32(row[col]) : 0.0f;
    v.y = col + 1 < width ? zk_to_f32(row[col + 1]) : 0.0f;
    v.z = col + 2 < width ? zk_to_f32(row[col + 2]) : 0.0f;
    v.w = col + 3 < width ? zk_to_f32(row[col + 3]) : 0.0f;
    return v;
}

template <typename TX> struct ssd_args {
    float * y;             // [T, nh*P]
    float * ssm_state;     // [slots, nh, P, N]
    float * cb;            // [n_chunks, G, 64, 64]: C·B^T, written by the prep kernel
    int * sync;            // [0] ticket, [1 + (c*nh + h)*8 + w] flags
    int * chunk_seq;       // [n_chunks]
    const TX * xbc;        // [T, ld_xbc]: x | B | C
    const TX * dt_raw;     // [T, ld_dt]
    const float * dt_bias, * a_log, * d_skip;
    const int32_t * chunk_t0, * chunk_len, * seq_chunk0, * seq_nchunks, * seq_slot;
    int ld_xbc, ld_dt, n_chunks, n_seqs, n_heads, head_dim, n_groups, d_state, n_sync;
    bool vec4;             // xbc rows, columns and widths allow 16-byte loads
    int mode;              // mamba2_ssd_debug: 0 default, 1 spin without sleep, 2 no chain wait (timing only)
    unsigned long long * prof;  // phase times (ns sums over CTAs), nullptr: off
};

// Shared-memory planes (bf16, hi and lo of each fp32 operand), rows of 64 tokens.
template <int NPAD> struct ssd_smem {
    static constexpr int kLdB = NPAD + 8;
    static constexpr int kPlaneX = kL * kLdX, kPlaneB = kL * kLdB;
    static constexpr int kBf16 = 4 * kPlaneX + 4 * kPlaneB;
    static constexpr size_t kBytes = (size_t) kBf16 * 2 + 4 * kL * sizeof(float) + 16;
};

// B_g, C_g rows of chunk [t0, t0 + len) into bf16 planes [64 x NPAD] (zero past len and N).
template <int NPAD, typename TX>
__device__ __forceinline__ void load_bc(__nv_bfloat16 * b_hi, __nv_bfloat16 * b_lo, __nv_bfloat16 * c_hi,
                                        __nv_bfloat16 * c_lo, const ssd_args<TX> & a, int64_t t0, int len, int g) {
    constexpr int kLdB = ssd_smem<NPAD>::kLdB, kQ = NPAD / 4;
    constexpr int kIt = kL * kQ / kThreads;  // all loads first (in flight together), then the planes
    const int N = a.d_state, d = a.n_heads * a.head_dim;
    float4 bv[kIt], cv[kIt];
#pragma unroll
    for (int it = 0; it < kIt; ++it) {
        const int e = it * kThreads + threadIdx.x, j = e / kQ, n = (e % kQ) * 4;
        bv[it] = cv[it] = make_float4(0.f, 0.f, 0.f, 0.f);
        if (j < len && n < N) {
            const TX * row = a.xbc + (t0 + j) * a.ld_xbc;
            bv[it] = load4(row + d + g * N, n, N, a.vec4);
            cv[it] = load4(row + d + a.n_groups * N + g * N, n, N, a.vec4);
        }
    }
#pragma unroll
    for (int it = 0; it < kIt; ++it) {
        const int e = it * kThreads + threadIdx.x, j = e / kQ, n = (e % kQ) * 4;
        const int o = j * kLdB + n;
        zk_store_split4(b_hi + o, b_lo + o, bv[it]);
        zk_store_split4(c_hi + o, c_lo + o, cv[it]);
    }
}

// C·B^T tiles of warp w: rows 16*(w%4).., columns 32*(w/4).. (4 n8 tiles); tiles wholly above the
// diagonal block (never read) are skipped. A = C [i][n], B operand = B^T from the [j][n] plane.
template <int NPAD>
__device__ __forceinline__ void cb_mma(float (&acc)[4][4], const __nv_bfloat16 * b_hi, const __nv_bfloat16 * b_lo,
                                       const __nv_bfloat16 * c_hi, const __nv_bfloat16 * c_lo, int len) {
    constexpr int kLdB = ssd_smem<NPAD>::kLdB;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, q = lane >> 3, r = lane & 7;
    const int mi = warp & 3, j0 = 32 * (warp >> 2);
#pragma unroll
    for (int t = 0; t < 4; ++t) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.0f;
    if (16 * mi >= len) return;
#pragma unroll
    for (int ks = 0; ks < NPAD / 16; ++ks) {
        uint32_t ah[4], al[4];
        const int aoff = (16 * mi + r + 8 * (q & 1)) * kLdB + 16 * ks + 8 * (q >> 1);
        zk_ldmatrix_x4(ah, c_hi + aoff);
        zk_ldmatrix_x4(al, c_lo + aoff);
#pragma unroll
        for (int pr = 0; pr < 2; ++pr) {
            const int n0 = j0 + 16 * pr;  // j columns of this pair of n8 tiles
            if (n0 > 16 * mi + 15 || n0 >= len) continue;
            uint32_t bh[4], bl[4];
            const int boff = (n0 + r + 8 * (q >> 1)) * kLdB + 16 * ks + 8 * (q & 1);
            zk_ldmatrix_x4(bh, b_hi + boff);
            zk_ldmatrix_x4(bl, b_lo + boff);
            zk_mma_bf16x3(acc[2 * pr], ah, al, bh[0], bh[1], bl[0], bl[1]);
            zk_mma_bf16x3(acc[2 * pr + 1], ah, al, bh[2], bh[3], bl[2], bl[3]);
        }
    }
}

// Split products of one A fragment with the two n8 tiles of each of `kPairs` B fragment pairs, issued
// term by term (lo·hi, hi·lo, hi·hi over every tile in turn) so that consecutive MMAs never share an
// accumulator: the mma.sync latency overlaps instead of chaining three deep. Each accumulator sums its
// terms in the order of zk_mma_bf16x3.
template <int kPairs>
__device__ __forceinline__ void mma_x3_tiles(float (*acc)[4], const uint32_t (&ah)[4], const uint32_t (&al)[4],
                                             const uint32_t (*bh)[4], const uint32_t (*bl)[4]) {
#pragma unroll
    for (int pr = 0; pr < kPairs; ++pr) {
        zk_mma_bf16(acc[2 * pr], al, bh[pr][0], bh[pr][1]);
        zk_mma_bf16(acc[2 * pr + 1], al, bh[pr][2], bh[pr][3]);
    }
#pragma unroll
    for (int pr = 0; pr < kPairs; ++pr) {
        zk_mma_bf16(acc[2 * pr], ah, bl[pr][0], bl[pr][1]);
        zk_mma_bf16(acc[2 * pr + 1], ah, bl[pr][2], bl[pr][3]);
    }
#pragma unroll
    for (int pr = 0; pr < kPairs; ++pr) {
        zk_mma_bf16(acc[2 * pr], ah, bh[pr][0], bh[pr][1]);
        zk_mma_bf16(acc[2 * pr + 1], ah, bh[pr][2], bh[pr][3]);
    }
}

}  // namespace
