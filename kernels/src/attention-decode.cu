// Attention of decode-only steps (one query per sequence) over the paged KV cache (16-token pages):
//   o = sum_{j <= pos} softmax_j(scale * q . k_j) v_j                (online softmax, fp32)
// A block per (sequence, head), its WARPS warps split the keys (warp w takes groups of 32 keys
// w, w + WARPS, ...) so one query is not a single warp's serial walk; the warps' partial (max, sum,
// accumulator) are merged through shared memory at the end. Within a group, lane i owns key j0 + i for
// the score (its whole K row loaded with 16-byte loads, all issued before the dot product), then the
// lanes switch to owning DPL consecutive output dims (e = DPL lane + k, one 8-byte load per key when
// DPL % 4 == 0) to accumulate p_j v_j.
#include "zamba2-common.cuh"
#include "zamba2-launch.cuh"
#include "zamba2-timeline.cuh"


// Element e of a head row after NeoX rotary at position pos (rope_neox_qk_kernel's expressions, so the two paths
// give the same bits): the pair (i, i + D/2) rotated by pos * theta^(-2i/D).
static __device__ __forceinline__ float rope_element(const float * row, int e, int head_dim, int pos, float theta) {
    const int half = head_dim / 2, i = e < half ? e : e - half;
    const float inv_freq = 1.0f / powf(theta, (float) (2 * i) / (float) head_dim);
    const float ang = (float) pos * inv_freq;
    float sn, cs;
    sincosf(ang, &sn, &cs);
    const float x1 = row[i], x2 = row[i + half];
    return e < half ? x1 * cs - x2 * sn : x2 * cs + x1 * sn;
}

template <int DPL, int WARPS>  // head_dim <= 32 * DPL, head_dim % 8 == 0
static __global__ void __launch_bounds__(WARPS * ZK_WARP_SIZE)
attention_decode_kernel(float * __restrict__ out, const float * __restrict__ q, bf16 * k_pool, bf16 * v_pool,
                        const int32_t * __restrict__ block_tables, int max_pages, const int32_t * __restrict__ positions,
                        int n_heads, int head_dim, float scale, const float * __restrict__ k_new,
                        const float * __restrict__ v_new, const int32_t * __restrict__ kv_index, float rope_theta) {
    ZK_TL_BEGIN();
    constexpr int DMAX = ZK_WARP_SIZE * DPL, CHUNKS = DMAX / 8;
    __shared__ float qs[DMAX];                      // scaled query
    __shared__ float w_m[WARPS], w_l[WARPS];
    __shared__ float w_acc[WARPS][DMAX];
    __shared__ __align__(16) bf16 k_cur[DMAX];      // this step's key (k_new after rope, as the pool holds it)
    const int64_t t = blockIdx.x;                   // token t is sequence t's only token
    const int h = blockIdx.y;
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE;
    // Before the PDL wait: the step's inputs (positions, block tables: copied before its first kernel) and the K rows
    // of the warp's first group of keys that earlier steps wrote (j < pos; key pos is this step's, read after the
    // wait). Three dependent round trips (position, page, key) leave the critical path. Only the 8-warp blocks of
    // small batches (their registers allow it: the 4-warp blocks of large batches keep their occupancy) and head
    // rows of <= 224 elements (256 spills).
    constexpr bool PRE_K = WARPS == 8 && DPL <= 7;
    const int pos = positions[t];
    const int32_t * bt = block_tables + t * max_pages;   // block_tables: [S, max_pages]
    const int j0_first = warp * ZK_WARP_SIZE;
    const int j_first = min(j0_first + lane, pos);       // lanes past pos re-read key pos, masked below
    int64_t kv_first = 0;
    uint4 kr_first[CHUNKS];
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) kr_first[c] = make_uint4(0, 0, 0, 0);
    if (PRE_K && j0_first <= pos) {
        kv_first = (((int64_t) bt[j_first / ZK_PAGE_TOKENS] * n_heads + h) * ZK_PAGE_TOKENS + j_first % ZK_PAGE_TOKENS) * head_dim;
        if (j_first < pos) {
#pragma unroll
            for (int c = 0; c < CHUNKS; ++c) {
                if (c * 8 < head_dim) kr_first[c] = *reinterpret_cast<const uint4 *>(k_pool + kv_first + c * 8);
            }
        }
    }
    zk_pdl_prologue();
    ZK_TL_WAITED();
    const float * q_row = q + (t * n_heads + h) * head_dim;  // q: [T, heads, D]
    for (int e = threadIdx.x; e < head_dim; e += blockDim.x) {
        qs[e] = (rope_theta > 0.0f ? rope_element(q_row, e, head_dim, pos, rope_theta) : q_row[e]) * scale;
    }
    if (k_new) {
        // this step's key and value of (t, h) into the pool first (kv_cache_write's rounding); the barrier below
        // makes them visible to the block's own reads (plain loads: the pools are not read-only here)
        const int idx = kv_index[t];
        const int64_t dst = (((int64_t) (idx / ZK_PAGE_TOKENS) * n_heads + h) * ZK_PAGE_TOKENS + idx % ZK_PAGE_TOKENS) * head_dim;
        const float * k_row = k_new + (t * n_heads + h) * head_dim;  // k_new, v_new: [T, heads, D]
        for (int e = threadIdx.x; e < head_dim; e += blockDim.x) {
            const bf16 kb = zk_to_bf16(rope_theta > 0.0f ? rope_element(k_row, e, head_dim, pos, rope_theta) : k_row[e]);
            k_pool[dst + e] = kb;
            k_cur[e] = kb;
            v_pool[dst + e] = zk_to_bf16(v_new[(t * n_heads + h) * head_dim + e]);
        }
    }
    __syncthreads();

    float m = -INFINITY, l = 0.0f, acc[DPL];
#pragma unroll
    for (int k = 0; k < DPL; ++k) acc[k] = 0.0f;
    for (int j0 = warp * ZK_WARP_SIZE; j0 <= pos; j0 += WARPS * ZK_WARP_SIZE) {
        const bool first = j0 == j0_first;
        const int j = min(j0 + lane, pos);           // lanes past pos re-read key pos, masked below
        const int64_t kv_base = PRE_K && first ? kv_first
                                      : (((int64_t) bt[j / ZK_PAGE_TOKENS] * n_heads + h) * ZK_PAGE_TOKENS + j % ZK_PAGE_TOKENS) * head_dim;
        const bf16 * krow = k_pool + kv_base;        // k_pool: [pages, heads, 16, D]
        uint4 kr[CHUNKS];
        if (PRE_K && first && j < pos) {             // loaded before the wait
#pragma unroll
            for (int c = 0; c < CHUNKS; ++c) kr[c] = kr_first[c];
        } else if (j == pos && k_new) {              // this step's key: the block wrote it (k_cur) before the barrier
#pragma unroll
            for (int c = 0; c < CHUNKS; ++c) kr[c] = c * 8 < head_dim ? *reinterpret_cast<const uint4 *>(k_cur + c * 8) : make_uint4(0, 0, 0, 0);
        } else {
#pragma unroll
            for (int c = 0; c < CHUNKS; ++c) kr[c] = c * 8 < head_dim ? *reinterpret_cast<const uint4 *>(krow + c * 8) : make_uint4(0, 0, 0, 0);
        }
        float dot = 0.0f;
#pragma unroll
        for (int c = 0; c < CHUNKS; ++c) {
            if (c * 8 >= head_dim) break;
            const bf16 * k8 = reinterpret_cast<const bf16 *>(&kr[c]);
#pragma unroll
            for (int u = 0; u < 8; ++u) dot += qs[c * 8 + u] * zk_to_f32(k8[u]);
        }
        const bool valid = j0 + lane <= pos;
        const float score = valid ? dot : -INFINITY;
        const float m_new = fmaxf(m, zk_warp_max(score));   // finite: key j0 <= pos is valid
        const float corr = expf(m - m_new);
        const float p = valid ? expf(score - m_new) : 0.0f;
        l = l * corr + zk_warp_sum(p);
        m = m_new;
#pragma unroll
        for (int k = 0; k < DPL; ++k) acc[k] *= corr;
        const int n_keys = min(ZK_WARP_SIZE, pos - j0 + 1);
        const bool full_lane = (lane + 1) * DPL <= head_dim;   // owns DPL dims (else some or none)
        if constexpr (DPL % 4 == 0 && DPL <= 8) {
            // V rows of VB keys at a time, every load issued before the first use: one memory round trip per
            // VB keys instead of one per 8 (the loop below waited four times per group of 32 keys)
            // (32 keys at once with 8 warps: one round trip per group; the 4-warp blocks of large batches keep 16
            // so more of them fit per SM)
            constexpr int VB = DPL <= 4 ? (WARPS == 8 ? 32 : 16) : 8, V8 = DPL / 4;
            for (int jb = 0; jb < n_keys; jb += VB) {  // warp-uniform
                uint2 vr[VB][V8];
                float pv[VB];
#pragma unroll
                for (int i = 0; i < VB; ++i) {
                    const int jj = jb + i;
                    const int64_t base = __shfl_sync(0xffffffffu, kv_base, jj & (ZK_WARP_SIZE - 1));
                    pv[i] = __shfl_sync(0xffffffffu, p, jj & (ZK_WARP_SIZE - 1));
                    const bf16 * vrow = v_pool + base + lane * DPL;  // v_pool: [pages, heads, 16, D]; this lane's dims
#pragma unroll
                    for (int c = 0; c < V8; ++c) {
                        vr[i][c] = jj < n_keys && full_lane ? *reinterpret_cast<const uint2 *>(vrow + 4 * c) : make_uint2(0, 0);
                    }
                }
#pragma unroll
                for (int i = 0; i < VB; ++i) {
                    if (jb + i >= n_keys) break;  // warp-uniform; same order as the per-key loop: bitwise equal
#pragma unroll
                    for (int c = 0; c < V8; ++c) {
                        const bf16 * v4 = reinterpret_cast<const bf16 *>(&vr[i][c]);
#pragma unroll
                        for (int u = 0; u < 4; ++u) acc[4 * c + u] += pv[i] * zk_to_f32(v4[u]);
                    }
                }
            }
        } else {  // per key: head dims per lane (DPL) not a multiple of 4
#pragma unroll 8
            for (int jj = 0; jj < ZK_WARP_SIZE; ++jj) {
                const int64_t base = __shfl_sync(0xffffffffu, kv_base, jj);
                const float pj = __shfl_sync(0xffffffffu, p, jj);
                if (jj >= n_keys) continue;              // warp-uniform
                const bf16 * vrow = v_pool + base + lane * DPL;  // v_pool: [pages, heads, 16, D]; this lane's dims
                if (DPL % 4 == 0 && full_lane) {
#pragma unroll
                    for (int c = 0; c < DPL / 4; ++c) {
                        const uint2 raw = *reinterpret_cast<const uint2 *>(vrow + 4 * c);  // 8-byte aligned: D % 8 == 0
                        const bf16 * v4 = reinterpret_cast<const bf16 *>(&raw);
#pragma unroll
                        for (int u = 0; u < 4; ++u) acc[4 * c + u] += pj * zk_to_f32(v4[u]);
                    }
                } else {
#pragma unroll
                    for (int k = 0; k < DPL; ++k) {
                        if (lane * DPL + k < head_dim) acc[k] += pj * zk_to_f32(vrow[k]);
                    }
                }
            }
        }
    }
    if (lane == 0) { w_m[warp] = m; w_l[warp] = l; }
#pragma unroll
    for (int k = 0; k < DPL; ++k) w_acc[warp][lane * DPL + k] = acc[k];
    __syncthreads();
    // merge the warps: a warp that saw no key has m = -inf, l = 0 and weighs exp(-inf) = 0
    float M = w_m[0];
    for (int w = 1; w < WARPS; ++w) M = fmaxf(M, w_m[w]);
    float L = 0.0f, scale_w[WARPS];
    for (int w = 0; w < WARPS; ++w) { scale_w[w] = expf(w_m[w] - M); L += w_l[w] * scale_w[w]; }
    const float inv_l = 1.0f / L;
    for (int e = threadIdx.x; e < head_dim; e += blockDim.x) {
        float o = 0.0f;
        for (int w = 0; w < WARPS; ++w) o += w_acc[w][e] * scale_w[w];
        out[(t * n_heads + h) * head_dim + e] = o * inv_l;   // out: [T, heads, D]
    }
    ZK_TL_END(ZK_TL_ATTN_DECODE);
}

bool paged_attention_decode(float * out, const float * q, bf16 * k_pool, bf16 * v_pool, const int32_t * block_tables,
                            int max_pages, const int32_t * positions, int n_seqs, int n_heads, int head_dim, float scale,
                            cudaStream_t stream, const float * k_new, const float * v_new, const int32_t * kv_index,
                            float rope_theta) {
    if (n_seqs <= 0) return true;
    if (head_dim % 8 != 0 || head_dim > 256) return false;
    if (rope_theta > 0.0f && !k_new) return false;  // the rotated k exists only in the pool: it must be written here
    const dim3 grid((unsigned) n_seqs, (unsigned) n_heads);
    const int dpl = (head_dim + ZK_WARP_SIZE - 1) / ZK_WARP_SIZE;
    // few (sequence, head) blocks (small batches): 8 warps each split the keys finer (b1 1.2B: 27 -> 17 us per
    // launch, run 16); many blocks: 4 warps, so more blocks fit per SM (8 measured slower from b16 up)
    const bool wide = (int64_t) n_seqs * n_heads <= 2 * zk_sm_count();
#define ZK_DEC_W(N, W) zk_launch(attention_decode_kernel<N, W>, grid, dim3(W * ZK_WARP_SIZE), 0, stream, out, q, k_pool, v_pool, \
                                 block_tables, max_pages, positions, n_heads, head_dim, scale, k_new, v_new, kv_index, \
                                 rope_theta)
#define ZK_DEC(N) (wide ? ZK_DEC_W(N, 8) : ZK_DEC_W(N, 4))
    if (dpl <= 1) ZK_DEC(1);
    else if (dpl <= 2) ZK_DEC(2);
    else if (dpl <= 4) ZK_DEC(4);
    else if (dpl <= 5) ZK_DEC(5);
    else if (dpl <= 7) ZK_DEC(7);
    else ZK_DEC(8);
#undef ZK_DEC
#undef ZK_DEC_W
    return true;
}
