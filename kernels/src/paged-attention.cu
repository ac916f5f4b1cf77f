// Causal attention over a paged KV cache (16-token pages), for prefill chunks and decodes alike.
// Per token t of sequence s at position pos_t, per head h:
//   o = sum_{j <= pos_t} softmax_j(scale * q . k_j) v_j        (online softmax, fp32)
// k_j, v_j live at page block_tables[s][j / 16], offset j % 16. This step's keys are written
// first (kv_cache_write), so a chunk sees earlier chunks and itself through one path.
// Pool layout per attention layer: [pages, heads, 16, D], so one head's page is contiguous.
#include "zamba2-common.cuh"
#include "zamba2-launch.cuh"

#define ZK_ATTN_WARPS 4
#define ZK_ATTN_MAX_DPL 8  // head dims up to 256

// ---- kernels -----------------------------------------------------------------------------------

template <typename TS>
static __global__ void kv_cache_write_kernel(bf16 * __restrict__ k_pool, bf16 * __restrict__ v_pool,
                                             const TS * __restrict__ k, const TS * __restrict__ v,
                                             const int32_t * __restrict__ kv_index, int n_heads,
                                             int head_dim) {
    zk_pdl_prologue();
    const int64_t t = blockIdx.x;
    const int idx = kv_index[t];
    const int64_t page = idx / ZK_PAGE_TOKENS;
    const int off = idx % ZK_PAGE_TOKENS;
    for (int i = threadIdx.x; i < n_heads * head_dim; i += blockDim.x) {
        const int h = i / head_dim, e = i % head_dim;
        const int64_t dst = ((page * n_heads + h) * ZK_PAGE_TOKENS + off) * head_dim + e;  // pool
        k_pool[dst] = zk_to_bf16(zk_to_f32(k[t * n_heads * head_dim + i]));  // k: [T, heads, D]
        v_pool[dst] = zk_to_bf16(zk_to_f32(v[t * n_heads * head_dim + i]));  // v: [T, heads, D]
    }
}

// One warp per (tile of up to Q consecutive tokens of one sequence, head). The tile's queries share
// every K/V load (Q-fold less traffic for prefill). Keys go in groups of 32: one key per lane for
// the Q scores, then the lanes switch to owning output dims (e = lane + 32k) to accumulate p_j v_j.
// A tile that straddles two sequences is processed one query at a time (Q = 1 path).
template <int Q, int DPL, bool VEC8, typename TQ, typename TO>
static __device__ void attend_tile(TO * __restrict__ out, const TQ * __restrict__ q,
                                   const bf16 * __restrict__ k_pool, const bf16 * __restrict__ v_pool,
                                   const int32_t * __restrict__ bt, int64_t t0, int n_q, int pos0,
                                   int h, int n_heads, int head_dim, float scale, float * qs, int lane) {
    // qs: [Q, D] scaled queries; query i (clamped to n_q - 1) is token t0 + i at position pos0 + i
    for (int i = 0; i < Q; ++i) {
        const TQ * qrow = q + ((t0 + min(i, n_q - 1)) * n_heads + h) * head_dim;     // q: [T, heads, D]
        for (int e = lane; e < head_dim; e += ZK_WARP_SIZE) qs[i * head_dim + e] = zk_to_f32(qrow[e]) * scale;
    }
    __syncwarp();
    const int pos_last = pos0 + n_q - 1;
    float m[Q], l[Q], acc[Q][DPL];
#pragma unroll
    for (int i = 0; i < Q; ++i) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
#pragma unroll
        for (int k = 0; k < DPL; ++k) acc[i][k] = 0.0f;
    }
    for (int j0 = 0; j0 <= pos_last; j0 += ZK_WARP_SIZE) {
        const int j = j0 + lane;
        float score[Q];
        int64_t kv_base = 0;
        if (j <= pos_last) {
            const int64_t page = bt[j / ZK_PAGE_TOKENS];
            kv_base = ((page * n_heads + h) * ZK_PAGE_TOKENS + j % ZK_PAGE_TOKENS) * head_dim;
        }
        // NOTE: every lane must take part in the shuffle, so it is not inside the select
        const int64_t base0 = __shfl_sync(0xffffffffu, kv_base, 0);             // key j0 is valid
        if (j > pos_last) kv_base = base0;
        const bf16 * krow = k_pool + kv_base;                 // k_pool: [pages, heads, 16, D]
        float dot[Q];
#pragma unroll
        for (int i = 0; i < Q; ++i) dot[i] = 0.0f;
        if (VEC8) {
            for (int e = 0; e < head_dim; e += 8) {
                const uint4 raw = *reinterpret_cast<const uint4 *>(krow + e);
                const bf16 * k8 = reinterpret_cast<const bf16 *>(&raw);
#pragma unroll
                for (int u = 0; u < 8; ++u) {
                    const float kv = zk_to_f32(k8[u]);
#pragma unroll
                    for (int i = 0; i < Q; ++i) dot[i] += qs[i * head_dim + e + u] * kv;
                }
            }
        } else {
            for (int e = 0; e < head_dim; ++e) {
                const float kv = zk_to_f32(krow[e]);
#pragma unroll
                for (int i = 0; i < Q; ++i) dot[i] += qs[i * head_dim + e] * kv;
            }
        }
        float p[Q];
#pragma unroll
        for (int i = 0; i < Q; ++i) {
            const int pos_i = pos0 + min(i, n_q - 1);
            score[i] = j <= pos_i ? dot[i] : -INFINITY;
            const float m_new = fmaxf(m[i], zk_warp_max(score[i]));  // finite: key j0 <= pos_i
            const float corr = expf(m[i] - m_new);
            p[i] = j <= pos_i ? expf(score[i] - m_new) : 0.0f;
            l[i] = l[i] * corr + zk_warp_sum(p[i]);
            m[i] = m_new;
#pragma unroll
            for (int k = 0; k < DPL; ++k) acc[i][k] *= corr;
        }
#pragma unroll 8
        for (int jj = 0; jj < ZK_WARP_SIZE; ++jj) {
            const int64_t base = __shfl_sync(0xffffffffu, kv_base, jj);
            const bf16 * vrow = v_pool + base;                // v_pool: [pages, heads, 16, D]
            float vv[DPL];
#pragma unroll
            for (int k = 0; k < DPL; ++k) {
                const int e = lane + ZK_WARP_SIZE * k;
                vv[k] = e < head_dim ? zk_to_f32(vrow[e]) : 0.0f;
            }
#pragma unroll
            for (int i = 0; i < Q; ++i) {
                const float pj = __shfl_sync(0xffffffffu, p[i], jj);
#pragma unroll
                for (int k = 0; k < DPL; ++k) acc[i][k] += pj * vv[k];
            }
        }
    }
#pragma unroll
    for (int i = 0; i < Q; ++i) {
        if (i >= n_q) break;
        const float inv_l = 1.0f / l[i];
        TO * orow = out + ((t0 + i) * n_heads + h) * head_dim;    // out: [T, heads, D]
#pragma unroll
        for (int k = 0; k < DPL; ++k) {
            const int e = lane + ZK_WARP_SIZE * k;
            if (e < head_dim) zk_store(orow + e, acc[i][k] * inv_l);
        }
    }
    __syncwarp();  // NOTE: qs is reused by the next tile of this warp
}

template <int Q, int DPL, bool VEC8, typename TQ, typename TO>
static __global__ void paged_attention_kernel(TO * __restrict__ out, const TQ * __restrict__ q,
                                              const bf16 * __restrict__ k_pool,
                                              const bf16 * __restrict__ v_pool,
                                              const int32_t * __restrict__ block_tables, int max_pages,
                                              const int32_t * __restrict__ token_seq,
                                              const int32_t * __restrict__ positions, int n_tokens,
                                              int n_heads, int head_dim, float scale) {
    extern __shared__ float q_smem[];  // [ZK_ATTN_WARPS, Q, D]
    const int warp = threadIdx.x / ZK_WARP_SIZE;
    const int lane = threadIdx.x % ZK_WARP_SIZE;
    const int64_t item = (int64_t) blockIdx.x * ZK_ATTN_WARPS + warp;
    const int64_t n_tiles = ((int64_t) n_tokens + Q - 1) / Q;
    if (item >= n_tiles * n_heads) return;
    const int64_t t0 = (item / n_heads) * Q;
    const int h = (int) (item % n_heads);
    const int n_q = (int) min((int64_t) Q, (int64_t) n_tokens - t0);
    float * qs = q_smem + (size_t) warp * Q * head_dim;
    const int s0 = token_seq[t0];
    if (token_seq[t0 + n_q - 1] == s0) {
        attend_tile<Q, DPL, VEC8, TQ, TO>(out, q, k_pool, v_pool, block_tables + (int64_t) s0 * max_pages, t0, n_q,
                                  positions[t0], h, n_heads, head_dim, scale, qs, lane);
    } else {
        for (int i = 0; i < n_q; ++i) {
            const int s = token_seq[t0 + i];
            attend_tile<1, DPL, VEC8, TQ, TO>(out, q, k_pool, v_pool, block_tables + (int64_t) s * max_pages, t0 + i, 1,
                                      positions[t0 + i], h, n_heads, head_dim, scale, qs, lane);
        }
    }
}

// ---- launchers ---------------------------------------------------------------------------------

void kv_cache_write(bf16 * k_pool, bf16 * v_pool, const bf16 * k, const bf16 * v,
                    const int32_t * kv_index, int n_tokens, int n_heads, int head_dim,
                    cudaStream_t stream) {
    if (n_tokens <= 0) return;
    zk_launch(kv_cache_write_kernel<bf16>, n_tokens, 256, 0, stream, k_pool, v_pool, k, v, kv_index, n_heads, head_dim);
}

void kv_cache_write(bf16 * k_pool, bf16 * v_pool, const float * k, const float * v,
                    const int32_t * kv_index, int n_tokens, int n_heads, int head_dim,
                    cudaStream_t stream) {
    if (n_tokens <= 0) return;
    zk_launch(kv_cache_write_kernel<float>, n_tokens, 256, 0, stream, k_pool, v_pool, k, v, kv_index, n_heads, head_dim);
}

template <int Q, int DPL, typename TQ, typename TO>
static void paged_attention_launch(TO * out, const TQ * q, const bf16 * k_pool, const bf16 * v_pool,
                                   const int32_t * block_tables, int max_pages, const int32_t * token_seq,
                                   const int32_t * positions, int n_tokens, int n_heads, int head_dim,
                                   float scale, cudaStream_t stream) {
    const int64_t items = ((int64_t) n_tokens + Q - 1) / Q * n_heads;
    const unsigned blocks = (unsigned) ((items + ZK_ATTN_WARPS - 1) / ZK_ATTN_WARPS);
    const size_t smem = (size_t) ZK_ATTN_WARPS * Q * head_dim * sizeof(float);
    if (head_dim % 8 == 0) {
        paged_attention_kernel<Q, DPL, true, TQ, TO><<<blocks, ZK_ATTN_WARPS * ZK_WARP_SIZE, smem, stream>>>(
            out, q, k_pool, v_pool, block_tables, max_pages, token_seq, positions, n_tokens, n_heads, head_dim, scale);
    } else {
        paged_attention_kernel<Q, DPL, false, TQ, TO><<<blocks, ZK_ATTN_WARPS * ZK_WARP_SIZE, smem, stream>>>(
            out, q, k_pool, v_pool, block_tables, max_pages, token_seq, positions, n_tokens, n_heads, head_dim, scale);
    }
}

template <int DPL, typename TQ, typename TO>
static void paged_attention_dpl(TO * out, const TQ * q, const bf16 * k_pool, const bf16 * v_pool,
                                const int32_t * block_tables, int max_pages, const int32_t * token_seq,
                                const int32_t * positions, int n_tokens, int n_heads, int head_dim, float scale,
                                bool multi_query, cudaStream_t stream) {
    if (multi_query) {
        paged_attention_launch<4, DPL>(out, q, k_pool, v_pool, block_tables, max_pages, token_seq, positions,
                                       n_tokens, n_heads, head_dim, scale, stream);
    } else {
        paged_attention_launch<1, DPL>(out, q, k_pool, v_pool, block_tables, max_pages, token_seq, positions,
                                       n_tokens, n_heads, head_dim, scale, stream);
    }
}

// Tiles of 4 queries when the batch holds prefill chunks (T > 4 * S on average is not required:
// straddling tiles fall back per query); one query per warp for decode-only batches.
template <typename TQ, typename TO>
static void paged_attention_any(TO * out, const TQ * q, const bf16 * k_pool, const bf16 * v_pool,
                                const int32_t * block_tables, int max_pages, const int32_t * token_seq,
                                const int32_t * positions, int n_tokens, int n_heads, int head_dim,
                                float scale, bool multi_query, cudaStream_t stream) {
    if (n_tokens <= 0 || head_dim > ZK_WARP_SIZE * ZK_ATTN_MAX_DPL) return;
    const int dpl = (head_dim + ZK_WARP_SIZE - 1) / ZK_WARP_SIZE;
#define ZK_ATTN_DPL(N) paged_attention_dpl<N>(out, q, k_pool, v_pool, block_tables, max_pages, token_seq, \
                                              positions, n_tokens, n_heads, head_dim, scale, multi_query, stream)
    if (dpl <= 2) ZK_ATTN_DPL(2);
    else if (dpl <= 4) ZK_ATTN_DPL(4);
    else if (dpl <= 5) ZK_ATTN_DPL(5);
    else if (dpl <= 7) ZK_ATTN_DPL(7);
    else ZK_ATTN_DPL(8);
#undef ZK_ATTN_DPL
}

void paged_attention(bf16 * out, const bf16 * q, const bf16 * k_pool, const bf16 * v_pool,
                     const int32_t * block_tables, int max_pages, const int32_t * token_seq,
                     const int32_t * positions, int n_tokens, int n_heads, int head_dim,
                     float scale, bool multi_query, cudaStream_t stream) {
    paged_attention_any(out, q, k_pool, v_pool, block_tables, max_pages, token_seq, positions, n_tokens, n_heads,
                        head_dim, scale, multi_query, stream);
}

void paged_attention(float * out, const float * q, const bf16 * k_pool, const bf16 * v_pool,
                     const int32_t * block_tables, int max_pages, const int32_t * token_seq,
                     const int32_t * positions, int n_tokens, int n_heads, int head_dim,
                     float scale, bool multi_query, cudaStream_t stream,
                     const int32_t * cu_seqlens, int n_seqs) {
    // prefill batches on the tensor cores (attention-prefill-tc.cu) when the layout is known
    if (multi_query && cu_seqlens && n_seqs > 0 && attention_prefill_tc_enabled() &&
        attention_prefill_tc(out, q, k_pool, v_pool, block_tables, max_pages, cu_seqlens, n_seqs, positions,
                             n_tokens, n_heads, head_dim, scale, stream))
        return;
    paged_attention_any(out, q, k_pool, v_pool, block_tables, max_pages, token_seq, positions, n_tokens, n_heads,
                        head_dim, scale, multi_query, stream);
}
