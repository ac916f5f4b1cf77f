// Attention of decode-only steps (one query per sequence) over the paged KV cache (16-token pages):
//   o = sum_{j <= pos} softmax_j(scale * q . k_j) v_j                (online softmax, fp32)
// A block per (sequence, head), its 4 warps split the keys (warp w takes groups of 32 keys
// w, w + 4, ...) so one query is not a single warp's serial walk; the warps' partial (max, sum,
// accumulator) are merged through shared memory at the end. Within a group, lane i owns key j0 + i for
// the score (its whole K row loaded with 16-byte loads, all issued before the dot product), then the
// lanes switch to owning output dims (e = lane + 32 k) to accumulate p_j v_j.
#include "zamba2-common.cuh"
#include "zamba2-launch.cuh"

#define ZK_DEC_WARPS 4

template <int DPL>  // head_dim <= 32 * DPL, head_dim % 8 == 0
static __global__ void __launch_bounds__(ZK_DEC_WARPS * ZK_WARP_SIZE)
attention_decode_kernel(float * __restrict__ out, const float * __restrict__ q, const bf16 * __restrict__ k_pool,
                        const bf16 * __restrict__ v_pool, const int32_t * __restrict__ block_tables, int max_pages,
                        const int32_t * __restrict__ positions, int n_heads, int head_dim, float scale) {
    zk_pdl_prologue();
    constexpr int DMAX = ZK_WARP_SIZE * DPL, CHUNKS = DMAX / 8;
    __shared__ float qs[DMAX];                      // scaled query
    __shared__ float w_m[ZK_DEC_WARPS], w_l[ZK_DEC_WARPS];
    __shared__ float w_acc[ZK_DEC_WARPS][DMAX];
    const int64_t t = blockIdx.x;                   // token t is sequence t's only token
    const int h = blockIdx.y;
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE;
    const int pos = positions[t];
    const int32_t * bt = block_tables + t * max_pages;   // block_tables: [S, max_pages]
    for (int e = threadIdx.x; e < head_dim; e += blockDim.x) qs[e] = q[(t * n_heads + h) * head_dim + e] * scale;  // q: [T, heads, D]
    __syncthreads();

    float m = -INFINITY, l = 0.0f, acc[DPL];
#pragma unroll
    for (int k = 0; k < DPL; ++k) acc[k] = 0.0f;
    for (int j0 = warp * ZK_WARP_SIZE; j0 <= pos; j0 += ZK_DEC_WARPS * ZK_WARP_SIZE) {
        const int j = min(j0 + lane, pos);           // lanes past pos re-read key pos, masked below
        const int64_t kv_base = (((int64_t) bt[j / ZK_PAGE_TOKENS] * n_heads + h) * ZK_PAGE_TOKENS + j % ZK_PAGE_TOKENS) * head_dim;
        const bf16 * krow = k_pool + kv_base;        // k_pool: [pages, heads, 16, D]
        uint4 kr[CHUNKS];
#pragma unroll
        for (int c = 0; c < CHUNKS; ++c) kr[c] = c * 8 < head_dim ? *reinterpret_cast<const uint4 *>(krow + c * 8) : make_uint4(0, 0, 0, 0);
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
#pragma unroll 8
        for (int jj = 0; jj < ZK_WARP_SIZE; ++jj) {
            const int64_t base = __shfl_sync(0xffffffffu, kv_base, jj);
            const float pj = __shfl_sync(0xffffffffu, p, jj);
            if (jj >= n_keys) continue;              // warp-uniform
            const bf16 * vrow = v_pool + base;       // v_pool: [pages, heads, 16, D]
#pragma unroll
            for (int k = 0; k < DPL; ++k) {
                const int e = lane + ZK_WARP_SIZE * k;
                if (e < head_dim) acc[k] += pj * zk_to_f32(vrow[e]);
            }
        }
    }
    if (lane == 0) { w_m[warp] = m; w_l[warp] = l; }
#pragma unroll
    for (int k = 0; k < DPL; ++k) w_acc[warp][lane + ZK_WARP_SIZE * k] = acc[k];
    __syncthreads();
    // merge the warps: a warp that saw no key has m = -inf, l = 0 and weighs exp(-inf) = 0
    float M = w_m[0];
    for (int w = 1; w < ZK_DEC_WARPS; ++w) M = fmaxf(M, w_m[w]);
    float L = 0.0f, scale_w[ZK_DEC_WARPS];
    for (int w = 0; w < ZK_DEC_WARPS; ++w) { scale_w[w] = expf(w_m[w] - M); L += w_l[w] * scale_w[w]; }
    const float inv_l = 1.0f / L;
    for (int e = threadIdx.x; e < head_dim; e += blockDim.x) {
        float o = 0.0f;
        for (int w = 0; w < ZK_DEC_WARPS; ++w) o += w_acc[w][e] * scale_w[w];
        out[(t * n_heads + h) * head_dim + e] = o * inv_l;   // out: [T, heads, D]
    }
}

bool paged_attention_decode(float * out, const float * q, const bf16 * k_pool, const bf16 * v_pool,
                            const int32_t * block_tables, int max_pages, const int32_t * positions, int n_seqs,
                            int n_heads, int head_dim, float scale, cudaStream_t stream) {
    if (n_seqs <= 0) return true;
    if (head_dim % 8 != 0 || head_dim > 256) return false;
    const dim3 grid((unsigned) n_seqs, (unsigned) n_heads), block(ZK_DEC_WARPS * ZK_WARP_SIZE);
    const int dpl = (head_dim + ZK_WARP_SIZE - 1) / ZK_WARP_SIZE;
#define ZK_DEC(N) zk_launch(attention_decode_kernel<N>, grid, block, 0, stream, out, q, k_pool, v_pool, block_tables, max_pages, \
                                                                         positions, n_heads, head_dim, scale)
    if (dpl <= 1) ZK_DEC(1);
    else if (dpl <= 2) ZK_DEC(2);
    else if (dpl <= 4) ZK_DEC(4);
    else if (dpl <= 5) ZK_DEC(5);
    else if (dpl <= 7) ZK_DEC(7);
    else ZK_DEC(8);
#undef ZK_DEC
    return true;
}
