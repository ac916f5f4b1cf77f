// Tensor-core causal attention for prefill over the paged KV cache (flash-attention-2 style, mma.sync).
// Same function as paged_attention(float *) in paged-attention.cu; per token t of sequence s at
// position pos_t and head h:
//   o_t = sum_{j <= pos_t} softmax_j(scale * q_t . k_j) v_j
// computed per query tile with an online softmax over key tiles (all fp32):
//   S   = (q * scale * log2 e) . K^T       [16 rows, BK keys] per warp and key tile
//   m'  = max(m, rowmax S);  P = exp2(S - m');  c = exp2(m - m')
//   l   = c * l + rowsum P;  O = c * O + P . V                              O: [16 rows, D]
//   o   = O / l
// Precision: K and V are exact bf16 (the pool). The fp32 operands q and P are split into
// hi = bf16(x) and lo = bf16(x - hi), and each product is two bf16 MMAs (hi.K + lo.K, hi.V + lo.V)
// accumulated in fp32: the operands are exact to ~2^-17 relative instead of bf16's 2^-9, so the
// result matches the fp32 CUDA-core kernel to ~1e-5 (the lead's golden budget leaves no room for a
// bf16 rounding of q or P).
//
// Work split: one CTA of 4 warps per (query tile of up to 64 consecutive tokens of ONE sequence,
// head); warp w owns query rows [16w, 16w + 16). Query tiles are cut per sequence from cu_seqlens
// (so a tile never straddles two sequences; a decode token mixed into a prefill batch is a tile of
// one row). Key tiles of BK keys (4 or 2 pages of 16 tokens) are gathered through the block table
// into shared memory with cp.async, double buffered. Key tiles above a warp's diagonal are skipped,
// the diagonal ones are masked per row.
//
// Measured (H200, test-kernels ZK_BENCH_ATTN=1: one 2048-token prefill, 32 heads, median of 7):
// D=128 0.251 ms (CUDA-core kernel 3.006 ms), D=160 0.324 (3.549), D=224 0.873 (5.078); error vs
// float64 2.3e-6 rel l2 (CUDA-core 2e-7). D=224 runs one CTA per SM (119 KB of shared memory): the
// first lever there if it ever matters (BK = 16 or a single V stage would fit two).
#include <cstdlib>
#include <cstring>

#include "zamba2-mma.cuh"

#define ZK_TC_WARPS 4
#define ZK_TC_THREADS (ZK_TC_WARPS * ZK_WARP_SIZE)
#define ZK_TC_BQ (ZK_TC_WARPS * 16)  // query rows per CTA

// ---- cp.async wrappers (sm_80+) -------------------------------------------------

// 16-byte global -> shared copy; valid == false writes zeros (reads nothing from src).
static __device__ __forceinline__ void zk_cp_async16(bf16 * dst, const bf16 * src, bool valid) {
    const uint32_t d = (uint32_t) __cvta_generic_to_shared(dst);
    const int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(n));
}
static __device__ __forceinline__ void zk_cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int N> static __device__ __forceinline__ void zk_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// ---- kernel --------------------------------------------------------------------------------------

template <int D> struct zk_tc_shape {
    static constexpr int BK = D <= 128 ? 64 : 32;  // keys per tile (registers: S is BK/2, O is D/2 per thread)
    static constexpr int LD = D + 8;                // shared row stride in bf16: +16 B spreads ldmatrix rows over banks
    static constexpr size_t smem_bytes = (size_t) (2 * ZK_TC_BQ + 4 * BK) * LD * sizeof(bf16);  // Q hi/lo, K/V x 2
};

template <int D>
static __global__ void __launch_bounds__(ZK_TC_THREADS)
attention_prefill_tc_kernel(float * __restrict__ out, const float * __restrict__ q, const bf16 * __restrict__ k_pool,
                            const bf16 * __restrict__ v_pool, const int32_t * __restrict__ block_tables, int max_pages,
                            const int32_t * __restrict__ cu_seqlens, int n_seqs, const int32_t * __restrict__ positions,
                            int n_heads, float scale_log2) {
    constexpr int BK = zk_tc_shape<D>::BK, LD = zk_tc_shape<D>::LD;
    constexpr int N_S = BK / 8;      // 8-key column blocks of S
    constexpr int N_O = D / 8;       // 8-dim column blocks of O
    constexpr int CHUNKS = D / 8;    // 16-byte chunks per K/V row
    extern __shared__ __align__(16) bf16 smem[];
    bf16 * q_hi = smem;                          // [BQ, LD] bf16(q * scale * log2 e)
    bf16 * q_lo = q_hi + ZK_TC_BQ * LD;          // [BQ, LD] remainders
    bf16 * k_s = q_lo + ZK_TC_BQ * LD;           // [2, BK, LD] key tiles (double buffer)
    bf16 * v_s = k_s + 2 * BK * LD;              // [2, BK, LD] value tiles
    __shared__ int tile_info[3];                 // sequence, first query row in it, rows

    const int tid = threadIdx.x, warp = tid / ZK_WARP_SIZE, lane = tid % ZK_WARP_SIZE;
    const int h = blockIdx.x;

    // -- which (sequence, query tile) this CTA owns: tile blockIdx.y of the per-sequence tiling, where
    //    sequence s has ceil(len_s / BQ) tiles, the last rows first (they have the most keys).
    if (warp == 0) {
        const int want = blockIdx.y;
        int base = 0;
        if (lane == 0) tile_info[0] = -1;
        __syncwarp();  // NOTE: the -1 must land before the owning lane (any lane) writes its sequence
        for (int s0 = 0; s0 < n_seqs && base <= want; s0 += ZK_WARP_SIZE) {
            const int s = s0 + lane;
            const int len = s < n_seqs ? cu_seqlens[s + 1] - cu_seqlens[s] : 0;
            const int nt = (len + ZK_TC_BQ - 1) / ZK_TC_BQ;
            int incl = nt;  // inclusive warp scan of tile counts
#pragma unroll
            for (int off = 1; off < ZK_WARP_SIZE; off <<= 1) {
                const int v = __shfl_up_sync(0xffffffffu, incl, off);
                if (lane >= off) incl += v;
            }
            const int first = base + incl - nt;
            if (nt > 0 && want >= first && want < base + incl) {
                const int r0 = (nt - 1 - (want - first)) * ZK_TC_BQ;
                tile_info[0] = s;
                tile_info[1] = r0;
                tile_info[2] = min(ZK_TC_BQ, len - r0);
            }
            base += __shfl_sync(0xffffffffu, incl, ZK_WARP_SIZE - 1);
        }
    }
    __syncthreads();
    const int seq = tile_info[0];
    if (seq < 0) return;  // the grid is an upper bound on the tile count
    const int n_q = tile_info[2];
    const int64_t t0 = cu_seqlens[seq] + tile_info[1];   // first token of the tile
    const int pos0 = positions[t0];                      // its position; row r is at pos0 + r
    const int last_key = pos0 + n_q - 1;                 // keys [0, last_key] are read
    const int32_t * bt = block_tables + (int64_t) seq * max_pages;
    const int n_kt = last_key / BK + 1;                  // key tiles

    // -- K/V tile kt -> buffer b: key j = kt * BK + i lives at page bt[j / 16], row j % 16;
    //    keys past last_key are zero-filled (their P is 0, and 0 * garbage could be NaN).
    auto load_kv = [&](int kt, int b) {
        for (int c = tid; c < BK * CHUNKS; c += ZK_TC_THREADS) {
            const int i = c / CHUNKS, e = (c % CHUNKS) * 8;
            const int j = kt * BK + i;
            const bool valid = j <= last_key;
            int64_t src = 0;
            if (valid) src = (((int64_t) bt[j / ZK_PAGE_TOKENS] * n_heads + h) * ZK_PAGE_TOKENS + j % ZK_PAGE_TOKENS) * D + e;
            zk_cp_async16(k_s + (b * BK + i) * LD + e, k_pool + src, valid);  // k_pool: [pages, heads, 16, D]
            zk_cp_async16(v_s + (b * BK + i) * LD + e, v_pool + src, valid);  // v_pool: [pages, heads, 16, D]
        }
        zk_cp_async_commit();
    };
    load_kv(0, 0);

    // -- Q tile: q [T, heads, D] fp32 -> q_hi, q_lo [BQ, LD]; rows past n_q are zeros.
    for (int c = tid; c < ZK_TC_BQ * (D / 4); c += ZK_TC_THREADS) {
        const int r = c / (D / 4), e = (c % (D / 4)) * 4;
        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
        if (r < n_q) x = *reinterpret_cast<const float4 *>(q + ((t0 + r) * n_heads + h) * D + e);
        uint32_t hi[2], lo[2];
        zk_split2(hi[0], lo[0], x.x * scale_log2, x.y * scale_log2);
        zk_split2(hi[1], lo[1], x.z * scale_log2, x.w * scale_log2);
        *reinterpret_cast<uint2 *>(q_hi + r * LD + e) = make_uint2(hi[0], hi[1]);
        *reinterpret_cast<uint2 *>(q_lo + r * LD + e) = make_uint2(lo[0], lo[1]);
    }

    // -- this warp's rows: r = 16 warp + g (+8); their positions (rows past n_q act as the last row)
    const int g = lane / 4, c2 = (lane % 4) * 2;
    const int row_first = warp * 16;
    const bool warp_active = row_first < n_q;
    const int pos_a = pos0 + min(row_first + g, n_q - 1);      // row g
    const int pos_b = pos0 + min(row_first + g + 8, n_q - 1);  // row g + 8
    const int warp_pos_min = pos0 + row_first;
    const int warp_pos_max = pos0 + min(row_first + 15, n_q - 1);

    float o[N_O][4];                 // O: [16, D] accumulator, C-fragment layout per 8-dim block
    float m_a = -INFINITY, m_b = -INFINITY;  // running row max (log2 domain), rows g and g + 8
    float l_a = 0.f, l_b = 0.f;              // this thread's partial row sums (its 2 columns per block)
#pragma unroll
    for (int n = 0; n < N_O; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;

    for (int kt = 0; kt < n_kt; ++kt) {
        const int b = kt & 1;
        if (kt + 1 < n_kt) {
            load_kv(kt + 1, b ^ 1);  // NOTE: buffer b ^ 1 was released by the barrier at the end of kt - 1
            zk_cp_async_wait<1>();
        } else {
            zk_cp_async_wait<0>();
        }
        __syncthreads();  // tile kt (and, at kt = 0, the Q tile) visible to every warp

        const int key0 = kt * BK;
        if (warp_active && key0 <= warp_pos_max) {
            const bf16 * kb = k_s + b * BK * LD;  // [BK, LD]
            const bf16 * vb = v_s + b * BK * LD;  // [BK, LD]
            // S = Q . K^T: [16, BK], two MMAs per block (q hi and q lo against the exact bf16 keys)
            float s[N_S][4];
#pragma unroll
            for (int n = 0; n < N_S; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
            for (int kd = 0; kd < D / 16; ++kd) {
                uint32_t a_hi[4], a_lo[4];  // Q rows [16w, +16), dims [16kd, +16): matrices (r0-7,d0-7) (r8-15,d0-7) (r0-7,d8-15) (r8-15,d8-15)
                const int qr = row_first + (lane % 8) + ((lane / 8) % 2) * 8, qc = kd * 16 + (lane / 16) * 8;
                zk_ldmatrix_x4(a_hi, q_hi + qr * LD + qc);
                zk_ldmatrix_x4(a_lo, q_lo + qr * LD + qc);
#pragma unroll
                for (int n = 0; n < N_S; n += 2) {
                    uint32_t kf[4];  // keys [8n, +16), dims [16kd, +16): (k0-7,d0-7) (k0-7,d8-15) (k8-15,d0-7) (k8-15,d8-15)
                    const int kr = n * 8 + (lane / 16) * 8 + (lane % 8), kc = kd * 16 + ((lane / 8) % 2) * 8;
                    zk_ldmatrix_x4(kf, kb + kr * LD + kc);
                    zk_mma_bf16(s[n], a_hi, kf[0], kf[1]);
                    zk_mma_bf16(s[n], a_lo, kf[0], kf[1]);
                    zk_mma_bf16(s[n + 1], a_hi, kf[2], kf[3]);
                    zk_mma_bf16(s[n + 1], a_lo, kf[2], kf[3]);
                }
            }
            // causal mask on the diagonal tile(s): key j is visible to a row at position p iff j <= p
            if (key0 + BK - 1 > warp_pos_min) {
#pragma unroll
                for (int n = 0; n < N_S; ++n) {
                    const int j = key0 + n * 8 + c2;
                    if (j > pos_a) s[n][0] = -INFINITY;
                    if (j + 1 > pos_a) s[n][1] = -INFINITY;
                    if (j > pos_b) s[n][2] = -INFINITY;
                    if (j + 1 > pos_b) s[n][3] = -INFINITY;
                }
            }
            // online softmax: row max over the 4 threads of a row (lanes 4g .. 4g+3). Key 0 is in tile 0
            // and visible to every row, so m is finite from the first tile on (no -inf - -inf).
            float mx_a = m_a, mx_b = m_b;
#pragma unroll
            for (int n = 0; n < N_S; ++n) {
                mx_a = fmaxf(mx_a, fmaxf(s[n][0], s[n][1]));
                mx_b = fmaxf(mx_b, fmaxf(s[n][2], s[n][3]));
            }
            mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 1));
            mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 2));
            mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 1));
            mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 2));
            const float corr_a = exp2f(m_a - mx_a), corr_b = exp2f(m_b - mx_b);
            m_a = mx_a;
            m_b = mx_b;
            float sum_a = 0.f, sum_b = 0.f;
#pragma unroll
            for (int n = 0; n < N_S; ++n) {  // P = exp2(S - m), in place
                s[n][0] = exp2f(s[n][0] - m_a);
                s[n][1] = exp2f(s[n][1] - m_a);
                s[n][2] = exp2f(s[n][2] - m_b);
                s[n][3] = exp2f(s[n][3] - m_b);
                sum_a += s[n][0] + s[n][1];
                sum_b += s[n][2] + s[n][3];
            }
            l_a = l_a * corr_a + sum_a;
            l_b = l_b * corr_b + sum_b;
#pragma unroll
            for (int n = 0; n < N_O; ++n) {
                o[n][0] *= corr_a;
                o[n][1] *= corr_a;
                o[n][2] *= corr_b;
                o[n][3] *= corr_b;
            }
            // O += P . V: P [16, BK] split hi + lo (its C layout is the A layout of the next MMA), V [BK, D]
#pragma unroll
            for (int kk = 0; kk < BK / 16; ++kk) {
                uint32_t p_hi[4], p_lo[4];  // keys [16kk, +16): blocks 2kk (a0, a1) and 2kk + 1 (a2, a3)
                zk_split2(p_hi[0], p_lo[0], s[2 * kk][0], s[2 * kk][1]);
                zk_split2(p_hi[1], p_lo[1], s[2 * kk][2], s[2 * kk][3]);
                zk_split2(p_hi[2], p_lo[2], s[2 * kk + 1][0], s[2 * kk + 1][1]);
                zk_split2(p_hi[3], p_lo[3], s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
                for (int n = 0; n < N_O; n += 2) {
                    uint32_t vf[4];  // keys [16kk, +16), dims [8n, +16), transposed: (k0-7,d0-7) (k8-15,d0-7) (k0-7,d8-15) (k8-15,d8-15)
                    const int vr = kk * 16 + ((lane / 8) % 2) * 8 + (lane % 8), vc = n * 8 + (lane / 16) * 8;
                    zk_ldmatrix_x4_trans(vf, vb + vr * LD + vc);
                    zk_mma_bf16(o[n], p_hi, vf[0], vf[1]);
                    zk_mma_bf16(o[n], p_lo, vf[0], vf[1]);
                    zk_mma_bf16(o[n + 1], p_hi, vf[2], vf[3]);
                    zk_mma_bf16(o[n + 1], p_lo, vf[2], vf[3]);
                }
            }
        }
        __syncthreads();  // every warp is done with buffer b before tile kt + 2 overwrites it
    }

    if (!warp_active) return;
    // o = O / l, l summed over the row's 4 threads; out: [T, heads, D]
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
    const float inv_a = 1.0f / l_a, inv_b = 1.0f / l_b;
    const int ra = row_first + g, rb = ra + 8;
#pragma unroll
    for (int n = 0; n < N_O; ++n) {
        if (ra < n_q)
            *reinterpret_cast<float2 *>(out + ((t0 + ra) * n_heads + h) * D + n * 8 + c2) =
                make_float2(o[n][0] * inv_a, o[n][1] * inv_a);
        if (rb < n_q)
            *reinterpret_cast<float2 *>(out + ((t0 + rb) * n_heads + h) * D + n * 8 + c2) =
                make_float2(o[n][2] * inv_b, o[n][3] * inv_b);
    }
}

// ---- launcher ------------------------------------------------------------------------------------

template <int D>
static void attention_prefill_tc_launch(float * out, const float * q, const bf16 * k_pool, const bf16 * v_pool,
                                        const int32_t * block_tables, int max_pages, const int32_t * cu_seqlens,
                                        int n_seqs, const int32_t * positions, int n_tokens, int n_heads, float scale,
                                        cudaStream_t stream) {
    const size_t smem = zk_tc_shape<D>::smem_bytes;
    // NOTE: a thread-safe one-time raise of the dynamic shared-memory limit per instantiation
    static const cudaError_t attr_err = cudaFuncSetAttribute(
        attention_prefill_tc_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) smem);
    (void) attr_err;  // a failure surfaces as the launch error
    // tiles: sum_s ceil(len_s / BQ) <= ceil(T / BQ) + S - 1; surplus CTAs exit at once
    const unsigned tiles = (unsigned) ((n_tokens + ZK_TC_BQ - 1) / ZK_TC_BQ + n_seqs);
    const dim3 grid((unsigned) n_heads, tiles);
    const float log2e = 1.4426950408889634f;
    attention_prefill_tc_kernel<D><<<grid, ZK_TC_THREADS, smem, stream>>>(
        out, q, k_pool, v_pool, block_tables, max_pages, cu_seqlens, n_seqs, positions, n_heads, scale * log2e);
}

bool attention_prefill_tc_supported(int head_dim) {
    switch (head_dim) {
    case 64: case 80: case 96: case 128: case 160: case 192: case 224: case 256: return true;
    default: return false;
    }
}

bool attention_prefill_tc(float * out, const float * q, const bf16 * k_pool, const bf16 * v_pool,
                          const int32_t * block_tables, int max_pages, const int32_t * cu_seqlens, int n_seqs,
                          const int32_t * positions, int n_tokens, int n_heads, int head_dim, float scale,
                          cudaStream_t stream) {
    if (!attention_prefill_tc_supported(head_dim) || cu_seqlens == nullptr || n_seqs <= 0) return false;
    if (n_tokens <= 0) return true;
#define ZK_TC_CASE(DIM)                                                                                         \
    case DIM:                                                                                                   \
        attention_prefill_tc_launch<DIM>(out, q, k_pool, v_pool, block_tables, max_pages, cu_seqlens, n_seqs,  \
                                         positions, n_tokens, n_heads, scale, stream);                          \
        return true;
    switch (head_dim) {
        ZK_TC_CASE(64) ZK_TC_CASE(80) ZK_TC_CASE(96) ZK_TC_CASE(128)
        ZK_TC_CASE(160) ZK_TC_CASE(192) ZK_TC_CASE(224) ZK_TC_CASE(256)
    default: return false;
    }
#undef ZK_TC_CASE
}

bool attention_prefill_tc_enabled() {
    static const bool enabled = [] {
        const char * e = std::getenv("ZAMBA2_ATTN_TC");
        return !(e && std::strcmp(e, "0") == 0);
    }();
    return enabled;
}
