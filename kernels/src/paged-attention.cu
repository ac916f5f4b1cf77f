// Causal attention over a paged KV cache (16-token pages), for prefill chunks and decodes alike.
// Per token t of sequence s at position pos_t, per head h:
//   o = sum_{j <= pos_t} softmax_j(scale * q . k_j) v_j        (online softmax, fp32)
// k_j, v_j live at page block_tables[s][j / 16], offset j % 16. This step's keys are written
// first (kv_cache_write), so a chunk sees earlier chunks and itself through one path.
// Pool layout per attention layer: [pages, heads, 16, D], so one head's page is contiguous.
#include "zamba2-common.cuh"

#define ZK_ATTN_WARPS 4
#define ZK_ATTN_MAX_DPL 8  // head dims up to 256

// ---- kernels -----------------------------------------------------------------------------------

static __global__ void kv_cache_write_kernel(bf16 * __restrict__ k_pool, bf16 * __restrict__ v_pool,
                                             const bf16 * __restrict__ k, const bf16 * __restrict__ v,
                                             const int32_t * __restrict__ kv_index, int n_heads,
                                             int head_dim) {
    const int64_t t = blockIdx.x;
    const int idx = kv_index[t];
    const int64_t page = idx / ZK_PAGE_TOKENS;
    const int off = idx % ZK_PAGE_TOKENS;
    for (int i = threadIdx.x; i < n_heads * head_dim; i += blockDim.x) {
        const int h = i / head_dim, e = i % head_dim;
        const int64_t dst = ((page * n_heads + h) * ZK_PAGE_TOKENS + off) * head_dim + e;  // pool
        k_pool[dst] = k[t * n_heads * head_dim + i];          // k: [T, heads, D]
        v_pool[dst] = v[t * n_heads * head_dim + i];          // v: [T, heads, D]
    }
}

// One warp per (token, head). Keys go in groups of 32, one key per lane for the scores; then the
// lanes switch to owning output dims (e = lane + 32k) to accumulate p_j * v_j.
template <bool VEC8>
static __global__ void paged_attention_kernel(bf16 * __restrict__ out, const bf16 * __restrict__ q,
                                              const bf16 * __restrict__ k_pool,
                                              const bf16 * __restrict__ v_pool,
                                              const int32_t * __restrict__ block_tables, int max_pages,
                                              const int32_t * __restrict__ token_seq,
                                              const int32_t * __restrict__ positions, int n_tokens,
                                              int n_heads, int head_dim, float scale) {
    extern __shared__ float q_smem[];  // [ZK_ATTN_WARPS, D]
    const int warp = threadIdx.x / ZK_WARP_SIZE;
    const int lane = threadIdx.x % ZK_WARP_SIZE;
    const int64_t item = (int64_t) blockIdx.x * ZK_ATTN_WARPS + warp;
    if (item >= (int64_t) n_tokens * n_heads) return;
    const int64_t t = item / n_heads;
    const int h = (int) (item % n_heads);
    const int32_t * bt = block_tables + (int64_t) token_seq[t] * max_pages;  // [max_pages]
    const int pos = positions[t];
    float * qs = q_smem + warp * head_dim;
    const bf16 * qrow = q + (t * n_heads + h) * head_dim;     // q: [T, heads, D]
    for (int e = lane; e < head_dim; e += ZK_WARP_SIZE) qs[e] = zk_to_f32(qrow[e]) * scale;
    __syncwarp();

    float m = -INFINITY, l = 0.0f;
    float acc[ZK_ATTN_MAX_DPL];
#pragma unroll
    for (int k = 0; k < ZK_ATTN_MAX_DPL; ++k) acc[k] = 0.0f;

    for (int j0 = 0; j0 <= pos; j0 += ZK_WARP_SIZE) {
        const int j = j0 + lane;
        float score = -INFINITY;
        int64_t kv_base = 0;  // element offset of key j's row for head h
        if (j <= pos) {
            const int64_t page = bt[j / ZK_PAGE_TOKENS];
            kv_base = ((page * n_heads + h) * ZK_PAGE_TOKENS + j % ZK_PAGE_TOKENS) * head_dim;
            const bf16 * krow = k_pool + kv_base;             // k_pool: [pages, heads, 16, D]
            float dot = 0.0f;
            if (VEC8) {
                for (int e = 0; e < head_dim; e += 8) {
                    const uint4 raw = *reinterpret_cast<const uint4 *>(krow + e);
                    const bf16 * kv8 = reinterpret_cast<const bf16 *>(&raw);
#pragma unroll
                    for (int u = 0; u < 8; ++u) dot += qs[e + u] * zk_to_f32(kv8[u]);
                }
            } else {
                for (int e = 0; e < head_dim; ++e) dot += qs[e] * zk_to_f32(krow[e]);
            }
            score = dot;
        }
        const float m_new = fmaxf(m, zk_warp_max(score));
        const float corr = expf(m - m_new);                   // 0 on the first group (m = -inf)
        const float pj = j <= pos ? expf(score - m_new) : 0.0f;
        l = l * corr + zk_warp_sum(pj);
        m = m_new;
#pragma unroll
        for (int k = 0; k < ZK_ATTN_MAX_DPL; ++k) acc[k] *= corr;
        const int n_valid = min(ZK_WARP_SIZE, pos - j0 + 1);
        for (int jj = 0; jj < n_valid; ++jj) {
            const float p = __shfl_sync(0xffffffffu, pj, jj);
            const int64_t base = __shfl_sync(0xffffffffu, kv_base, jj);
            const bf16 * vrow = v_pool + base;                // v_pool: [pages, heads, 16, D]
#pragma unroll
            for (int k = 0; k < ZK_ATTN_MAX_DPL; ++k) {
                const int e = lane + ZK_WARP_SIZE * k;
                if (e < head_dim) acc[k] += p * zk_to_f32(vrow[e]);
            }
        }
    }
    const float inv_l = 1.0f / l;
    bf16 * orow = out + (t * n_heads + h) * head_dim;         // out: [T, heads, D]
#pragma unroll
    for (int k = 0; k < ZK_ATTN_MAX_DPL; ++k) {
        const int e = lane + ZK_WARP_SIZE * k;
        if (e < head_dim) orow[e] = zk_to_bf16(acc[k] * inv_l);
    }
}

// ---- launchers ---------------------------------------------------------------------------------

void kv_cache_write(bf16 * k_pool, bf16 * v_pool, const bf16 * k, const bf16 * v,
                    const int32_t * kv_index, int n_tokens, int n_heads, int head_dim,
                    cudaStream_t stream) {
    if (n_tokens <= 0) return;
    kv_cache_write_kernel<<<n_tokens, 256, 0, stream>>>(k_pool, v_pool, k, v, kv_index, n_heads, head_dim);
}

void paged_attention(bf16 * out, const bf16 * q, const bf16 * k_pool, const bf16 * v_pool,
                     const int32_t * block_tables, int max_pages, const int32_t * token_seq,
                     const int32_t * positions, int n_tokens, int n_heads, int head_dim,
                     float scale, cudaStream_t stream) {
    if (n_tokens <= 0 || head_dim > ZK_WARP_SIZE * ZK_ATTN_MAX_DPL) return;
    const int64_t items = (int64_t) n_tokens * n_heads;
    const unsigned blocks = (unsigned) ((items + ZK_ATTN_WARPS - 1) / ZK_ATTN_WARPS);
    const size_t smem = (size_t) ZK_ATTN_WARPS * head_dim * sizeof(float);
    if (head_dim % 8 == 0) {
        paged_attention_kernel<true><<<blocks, ZK_ATTN_WARPS * ZK_WARP_SIZE, smem, stream>>>(
            out, q, k_pool, v_pool, block_tables, max_pages, token_seq, positions, n_tokens, n_heads,
            head_dim, scale);
    } else {
        paged_attention_kernel<false><<<blocks, ZK_ATTN_WARPS * ZK_WARP_SIZE, smem, stream>>>(
            out, q, k_pool, v_pool, block_tables, max_pages, token_seq, positions, n_tokens, n_heads,
            head_dim, scale);
    }
}
