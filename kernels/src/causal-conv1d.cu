// Depthwise causal conv1d (width 4) + SiLU over a packed varlen batch, with per-slot conv state.
//   c_t = bias + sum_{k=0..3} w[k] * x_{t-3+k};   out_t = silu(c_t)
// where x_{j} for j < 0 comes from the sequence's conv state (state[3 + j], oldest first).
// The state has the activations' type (fp32 in the engine): it holds pre-conv inputs, so storing them is exact.
#include "zamba2-common.cuh"
#include "zamba2-launch.cuh"

#define ZK_CONV_TAPS 4
#define ZK_CONV_STATE 3
// Tokens per block of the tiled conv. H200 (ZK_BENCH_PREFILL_KERNELS): 8 beat 16 at T = 2048, 512 and mixed
// batches (30.0 vs 35.2 us at 2048: more blocks in flight; the 3 halo rows per 8 come from L2).
#define ZK_CONV_TILE_TOKENS 8

// ---- kernels -----------------------------------------------------------------------------------

// V consecutive channels of one row as floats (V = 4: one 16-byte fp32 or 8-byte bf16 access).
template <int V> static __device__ __forceinline__ void conv_load(float (&v)[V], const float * p) {
    if constexpr (V == 4) {
        const float4 q = *reinterpret_cast<const float4 *>(p);
        v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
    } else {
#pragma unroll
        for (int u = 0; u < V; ++u) v[u] = p[u];
    }
}
template <int V> static __device__ __forceinline__ void conv_load(float (&v)[V], const bf16 * p) {
    if constexpr (V == 4) {
        const uint2 q = *reinterpret_cast<const uint2 *>(p);
        const bf16 * h = reinterpret_cast<const bf16 *>(&q);
#pragma unroll
        for (int u = 0; u < 4; ++u) v[u] = zk_to_f32(h[u]);
    } else {
#pragma unroll
        for (int u = 0; u < V; ++u) v[u] = zk_to_f32(p[u]);
    }
}
template <int V> static __device__ __forceinline__ void conv_store(float * p, const float (&v)[V]) {
    if constexpr (V == 4) *reinterpret_cast<float4 *>(p) = make_float4(v[0], v[1], v[2], v[3]);
    else {
#pragma unroll
        for (int u = 0; u < V; ++u) p[u] = v[u];
    }
}
template <int V> static __device__ __forceinline__ void conv_store(bf16 * p, const float (&v)[V]) {
    if constexpr (V == 4) {
        const __nv_bfloat162 a = __floats2bfloat162_rn(v[0], v[1]), b = __floats2bfloat162_rn(v[2], v[3]);
        *reinterpret_cast<uint2 *>(p) =
            make_uint2(*reinterpret_cast<const uint32_t *>(&a), *reinterpret_cast<const uint32_t *>(&b));
    } else {
#pragma unroll
        for (int u = 0; u < V; ++u) p[u] = zk_to_bf16(v[u]);
    }
}

// Tiled varlen conv: block (x, y) covers V * blockDim.x channels of the tokens it owns in [yL, yL + L + 2),
// L = ZK_CONV_TILE_TOKENS. Token t of a sequence starting at `start` (index j = t - start) is owned by block
// (j <= 2 ? start : t) / L: the first three tokens of a sequence, the only ones that read its old conv state,
// go with the sequence's first token. So one thread (per channel group) reads a slot's old state and, with
// UPDATE, writes its new state (the last 3 inputs of the sequence, or old taps for sequences shorter than 3):
// no other block reads that state, so the write-back needs no second launch. A thread issues the loads of its
// L + 3 input rows (3 halo rows, mostly from L2) and its weights before it resolves which tokens it owns
// (dependent token_seq -> cu_seqlens loads), so that latency hides behind the data loads.
template <typename TX, int V, bool UPDATE>
static __global__ void causal_conv1d_tile_kernel(TX * __restrict__ out, const TX * __restrict__ xbc, int ld_x,
                                                 TX * conv_state, const bf16 * __restrict__ w,
                                                 const bf16 * __restrict__ bias, const int32_t * __restrict__ cu_seqlens,
                                                 const int32_t * __restrict__ token_seq,
                                                 const int32_t * __restrict__ seq_slot, int n_tokens, int n_channels) {
    zk_pdl_prologue();
    constexpr int L = ZK_CONV_TILE_TOKENS;
    __shared__ int s_j[L + 2];     // index inside its sequence of token yL + i; -1: not owned by this block
    __shared__ int s_slot[L + 2];  // its sequence's slot
    __shared__ int s_len[L + 2];   // its sequence's length
    const int64_t tb = (int64_t) blockIdx.y * L;
    const int c0 = (blockIdx.x * blockDim.x + threadIdx.x) * V;
    const bool active = c0 < n_channels;

    float x[L + 5][V];  // rows of tokens tb - 3 .. tb + L + 1 (the last two only when owned tokens reach them)
#pragma unroll
    for (int r = 0; r < L + 5; ++r) {
        const int64_t t = tb - 3 + r;
        if (r < L + 3 && active && t >= 0 && t < n_tokens) conv_load<V>(x[r], xbc + t * ld_x + c0);  // xbc: [T, C] stride ld_x
        else {
#pragma unroll
            for (int u = 0; u < V; ++u) x[r][u] = 0.0f;
        }
    }
    float wt[V][ZK_CONV_TAPS], b[V];
#pragma unroll
    for (int u = 0; u < V; ++u) {
        const bf16 * wc = w + (int64_t) (active ? c0 + u : 0) * ZK_CONV_TAPS;  // w: [C, 4] (8-byte rows on the 4-channel path)
        if constexpr (V == 4) {
            const uint2 wraw = *reinterpret_cast<const uint2 *>(wc);
            const bf16 * w4 = reinterpret_cast<const bf16 *>(&wraw);
#pragma unroll
            for (int k = 0; k < ZK_CONV_TAPS; ++k) wt[u][k] = zk_to_f32(w4[k]);
        } else {
#pragma unroll
            for (int k = 0; k < ZK_CONV_TAPS; ++k) wt[u][k] = zk_to_f32(wc[k]);
        }
        b[u] = bias && active ? zk_to_f32(bias[c0 + u]) : 0.0f;
    }

    if (threadIdx.x < L + 2) {
        const int64_t t = tb + threadIdx.x;
        int j = -1, slot = 0, len = 0;
        if (t < n_tokens) {
            const int s = token_seq[t];
            const int64_t start = cu_seqlens[s], end = cu_seqlens[s + 1];
            const int sl = seq_slot[s];
            const int jj = (int) (t - start);
            if ((jj <= 2 ? start : t) / L == (int64_t) blockIdx.y) {
                j = jj;
                slot = sl;
                len = (int) (end - start);
            }
        }
        s_j[threadIdx.x] = j;
        s_slot[threadIdx.x] = slot;
        s_len[threadIdx.x] = len;
    }
    __syncthreads();
    if (!active) return;
    if (s_j[L] >= 0 || s_j[L + 1] >= 0) {  // the first tokens of a sequence that starts at the end of the tile
#pragma unroll
        for (int r = L + 3; r < L + 5; ++r) {
            const int64_t t = tb - 3 + r;
            if (t < n_tokens) conv_load<V>(x[r], xbc + t * ld_x + c0);
        }
    }

    float st[ZK_CONV_STATE][V];  // old state of the sequence being processed (loaded at its first token)
#pragma unroll
    for (int k = 0; k < ZK_CONV_STATE; ++k) {
#pragma unroll
        for (int u = 0; u < V; ++u) st[k][u] = 0.0f;
    }
#pragma unroll
    for (int i = 0; i < L + 2; ++i) {
        const int j = s_j[i];
        if (j < 0) continue;
        if (j == 0) {
            TX * sp = conv_state + (int64_t) s_slot[i] * ZK_CONV_STATE * n_channels + c0;  // conv_state: [slots, 3, C]
#pragma unroll
            for (int k = 0; k < ZK_CONV_STATE; ++k) conv_load<V>(st[k], sp + (int64_t) k * n_channels);
            if constexpr (UPDATE) {
                const int len = s_len[i];
#pragma unroll
                for (int k = 0; k < ZK_CONV_STATE; ++k) {
                    const int src = len - ZK_CONV_STATE + k;  // new tap k = input src of the sequence, or old tap len + k
                    float nv[V];
                    if (src >= 0) conv_load<V>(nv, xbc + (tb + i + src) * ld_x + c0);
                    else {
#pragma unroll
                        for (int u = 0; u < V; ++u) nv[u] = len + k == 1 ? st[1][u] : st[2][u];  // len >= 1: old tap 1 or 2
                    }
                    conv_store<V>(sp + (int64_t) k * n_channels, nv);
                }
            }
        }
        float acc[V];
#pragma unroll
        for (int u = 0; u < V; ++u) acc[u] = b[u];
#pragma unroll
        for (int k = 0; k < ZK_CONV_TAPS; ++k) {
            const int src = j - (ZK_CONV_TAPS - 1) + k;  // < 0: tap 3 + src of the old state
#pragma unroll
            for (int u = 0; u < V; ++u) {
                const float xv = src >= 0 ? x[i + k][u] : (src == -3 ? st[0][u] : (src == -2 ? st[1][u] : st[2][u]));
                acc[u] += wt[u][k] * xv;
            }
        }
#pragma unroll
        for (int u = 0; u < V; ++u) acc[u] = zk_silu(acc[u]);
        conv_store<V>(out + (tb + i) * n_channels + c0, acc);  // out: [T, C]
    }
}

// One thread per (sequence, channel): reads the old state before writing it (no other thread
// touches this (slot, channel)).
template <typename TX>
static __global__ void causal_conv1d_state_update_kernel(TX * __restrict__ conv_state,
                                                         const TX * __restrict__ xbc, int ld_x,
                                                         const int32_t * __restrict__ cu_seqlens,
                                                         const int32_t * __restrict__ seq_slot,
                                                         int n_channels) {
    zk_pdl_prologue();
    const int ch = blockIdx.x * blockDim.x + threadIdx.x;
    const int s = blockIdx.y;
    if (ch >= n_channels) return;
    const int64_t t0 = cu_seqlens[s];
    const int64_t len = cu_seqlens[s + 1] - t0;
    TX * st = conv_state + (int64_t) seq_slot[s] * ZK_CONV_STATE * n_channels;       // [3, C]
    TX old[ZK_CONV_STATE];
#pragma unroll
    for (int k = 0; k < ZK_CONV_STATE; ++k) old[k] = st[k * n_channels + ch];
#pragma unroll
    for (int k = 0; k < ZK_CONV_STATE; ++k) {
        const int64_t src = len - ZK_CONV_STATE + k;                                  // new x index
        st[k * n_channels + ch] = src >= 0 ? xbc[(t0 + src) * ld_x + ch] : old[len + k];
    }
}

// Decode-only steps (token s is sequence s's only token): conv and state shift in one pass, one thread
// per (sequence, channel): out = silu(bias + w . [state, x]); state <- [state[1], state[2], x].
static __global__ void causal_conv1d_decode_kernel(float * __restrict__ out, const float * __restrict__ xbc, int ld_x,
                                                   float * __restrict__ conv_state, const bf16 * __restrict__ w,
                                                   const bf16 * __restrict__ bias, const int32_t * __restrict__ seq_slot,
                                                   int n_channels) {
    zk_pdl_prologue();
    const int ch = blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t s = blockIdx.y;
    if (ch >= n_channels) return;
    float * st = conv_state + (int64_t) seq_slot[s] * ZK_CONV_STATE * n_channels;   // [3, C]
    const float x0 = st[ch], x1 = st[n_channels + ch], x2 = st[2 * n_channels + ch];
    const float x3 = xbc[s * ld_x + ch];                                            // xbc: [S, C]
    const uint2 wraw = *reinterpret_cast<const uint2 *>(w + (int64_t) ch * ZK_CONV_TAPS);  // w: [C, 4]
    const bf16 * w4 = reinterpret_cast<const bf16 *>(&wraw);
    const float acc = (bias ? zk_to_f32(bias[ch]) : 0.0f) + zk_to_f32(w4[0]) * x0 + zk_to_f32(w4[1]) * x1 +
                      zk_to_f32(w4[2]) * x2 + zk_to_f32(w4[3]) * x3;
    out[s * n_channels + ch] = zk_silu(acc);                                        // out: [S, C]
    st[ch] = x1;
    st[n_channels + ch] = x2;
    st[2 * n_channels + ch] = x3;
}

// ---- launchers ---------------------------------------------------------------------------------

template <typename TX, int V, bool UPDATE>
static void conv_tile_launch(TX * out, const TX * xbc, int ld_x, TX * conv_state, const bf16 * w, const bf16 * bias,
                             const int32_t * cu_seqlens, const int32_t * token_seq, const int32_t * seq_slot, int n_tokens,
                             int n_channels, cudaStream_t stream) {
    const int threads = V == 4 ? 64 : 128;
    const int groups = (n_channels + V - 1) / V;
    const dim3 grid((unsigned) ((groups + threads - 1) / threads),
                    (unsigned) ((n_tokens + ZK_CONV_TILE_TOKENS - 1) / ZK_CONV_TILE_TOKENS));
    zk_launch(causal_conv1d_tile_kernel<TX, V, UPDATE>, grid, threads, 0, stream, out, xbc, ld_x, conv_state, w, bias, cu_seqlens,
                                                                          token_seq, seq_slot, n_tokens, n_channels);
}

template <bool UPDATE, typename TX>
static void conv_tiled(TX * out, const TX * xbc, int ld_x, TX * conv_state, const bf16 * w, const bf16 * bias,
                       const int32_t * cu_seqlens, const int32_t * token_seq, const int32_t * seq_slot, int n_tokens,
                       int n_channels, cudaStream_t stream) {
    if (n_tokens <= 0 || n_channels <= 0) return;
    // 4 channels per thread: rows of 16 (fp32) or 8 (bf16) bytes, w rows of 8 bytes
    const uintptr_t xa = sizeof(TX) * 4;
    const bool vec = n_channels % 4 == 0 && ld_x % 4 == 0 && (uintptr_t) xbc % xa == 0 && (uintptr_t) out % xa == 0 &&
                     (uintptr_t) conv_state % xa == 0 && (uintptr_t) w % 8 == 0;
    if (vec) {
        conv_tile_launch<TX, 4, UPDATE>(out, xbc, ld_x, conv_state, w, bias, cu_seqlens, token_seq, seq_slot, n_tokens,
                                        n_channels, stream);
    } else {
        conv_tile_launch<TX, 1, UPDATE>(out, xbc, ld_x, conv_state, w, bias, cu_seqlens, token_seq, seq_slot, n_tokens,
                                        n_channels, stream);
    }
}

template <typename TX>
static void conv_varlen_launch(TX * out, const TX * xbc, int ld_x, const TX * conv_state, const bf16 * w, const bf16 * bias,
                               const int32_t * cu_seqlens, const int32_t * token_seq, const int32_t * seq_slot, int n_tokens,
                               int n_channels, cudaStream_t stream) {
    // NOTE: UPDATE = false never writes conv_state
    conv_tiled<false>(out, xbc, ld_x, const_cast<TX *>(conv_state), w, bias, cu_seqlens, token_seq, seq_slot, n_tokens,
                      n_channels, stream);
}

template <typename TX>
static void conv_state_update_launch(TX * conv_state, const TX * xbc, int ld_x, const int32_t * cu_seqlens,
                                     const int32_t * seq_slot, int n_seqs, int n_channels, cudaStream_t stream) {
    if (n_seqs <= 0) return;
    dim3 grid((n_channels + 127) / 128, n_seqs);
    zk_launch(causal_conv1d_state_update_kernel<TX>, grid, 128, 0, stream, conv_state, xbc, ld_x, cu_seqlens,
                                                                seq_slot, n_channels);
}

void causal_conv1d_varlen(bf16 * out, const bf16 * xbc, int ld_x, const bf16 * conv_state,
                          const bf16 * w, const bf16 * bias, const int32_t * cu_seqlens,
                          const int32_t * token_seq, const int32_t * seq_slot, int n_tokens,
                          int n_channels, cudaStream_t stream) {
    conv_varlen_launch(out, xbc, ld_x, conv_state, w, bias, cu_seqlens, token_seq, seq_slot, n_tokens, n_channels, stream);
}

void causal_conv1d_state_update(bf16 * conv_state, const bf16 * xbc, int ld_x,
                                const int32_t * cu_seqlens, const int32_t * seq_slot, int n_seqs,
                                int n_channels, cudaStream_t stream) {
    conv_state_update_launch(conv_state, xbc, ld_x, cu_seqlens, seq_slot, n_seqs, n_channels, stream);
}

void causal_conv1d_varlen(float * out, const float * xbc, int ld_x, const float * conv_state,
                          const bf16 * w, const bf16 * bias, const int32_t * cu_seqlens,
                          const int32_t * token_seq, const int32_t * seq_slot, int n_tokens,
                          int n_channels, cudaStream_t stream) {
    conv_varlen_launch(out, xbc, ld_x, conv_state, w, bias, cu_seqlens, token_seq, seq_slot, n_tokens, n_channels, stream);
}

void causal_conv1d_state_update(float * conv_state, const float * xbc, int ld_x,
                                const int32_t * cu_seqlens, const int32_t * seq_slot, int n_seqs,
                                int n_channels, cudaStream_t stream) {
    conv_state_update_launch(conv_state, xbc, ld_x, cu_seqlens, seq_slot, n_seqs, n_channels, stream);
}

void causal_conv1d_varlen_update(float * out, const float * xbc, int ld_x, float * conv_state, const bf16 * w,
                                 const bf16 * bias, const int32_t * cu_seqlens, const int32_t * token_seq,
                                 const int32_t * seq_slot, int n_tokens, int n_channels, cudaStream_t stream) {
    conv_tiled<true>(out, xbc, ld_x, conv_state, w, bias, cu_seqlens, token_seq, seq_slot, n_tokens, n_channels, stream);
}

bool causal_conv1d_decode(float * out, const float * xbc, int ld_x, float * conv_state, const bf16 * w, const bf16 * bias,
                          const int32_t * seq_slot, int n_seqs, int n_channels, cudaStream_t stream) {
    if (((uintptr_t) w % 8) != 0) return false;
    if (n_seqs <= 0 || n_channels <= 0) return true;
    const dim3 grid((unsigned) ((n_channels + 255) / 256), (unsigned) n_seqs);
    zk_launch(causal_conv1d_decode_kernel, grid, 256, 0, stream, out, xbc, ld_x, conv_state, w, bias, seq_slot, n_channels);
    return true;
}
