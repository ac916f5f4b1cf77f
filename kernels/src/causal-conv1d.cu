// Depthwise causal conv1d (width 4) + SiLU over a packed varlen batch, with per-slot conv state.
//   c_t = bias + sum_{k=0..3} w[k] * x_{t-3+k};   out_t = silu(c_t)
// where x_{j} for j < 0 comes from the sequence's conv state (state[3 + j], oldest first).
// The state is bf16: it holds pre-conv inputs, which are bf16 GEMM outputs, so storing them is exact.
#include "zamba2-common.cuh"

#define ZK_CONV_TAPS 4
#define ZK_CONV_STATE 3

// ---- kernels -----------------------------------------------------------------------------------

// One thread per (token, channel): four cached loads, no sequential dependency.
template <typename TX>
static __global__ void causal_conv1d_varlen_kernel(TX * __restrict__ out, const TX * __restrict__ xbc,
                                                   int ld_x, const TX * __restrict__ conv_state,
                                                   const bf16 * __restrict__ w, const bf16 * __restrict__ bias,
                                                   const int32_t * __restrict__ cu_seqlens,
                                                   const int32_t * __restrict__ token_seq,
                                                   const int32_t * __restrict__ seq_slot, int n_channels) {
    const int ch = blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t t = blockIdx.y;
    if (ch >= n_channels) return;
    const int s = token_seq[t];
    const int64_t t0 = cu_seqlens[s];
    const int64_t j = t - t0;                                         // index inside the sequence
    const TX * st = conv_state + (int64_t) seq_slot[s] * ZK_CONV_STATE * n_channels;    // [3, C]
    float acc = bias ? zk_to_f32(bias[ch]) : 0.0f;
#pragma unroll
    for (int k = 0; k < ZK_CONV_TAPS; ++k) {
        const int64_t src = j - (ZK_CONV_TAPS - 1) + k;
        const float xv = src >= 0 ? zk_to_f32(xbc[(t0 + src) * ld_x + ch])            // xbc: [T, C]
                                  : zk_to_f32(st[(ZK_CONV_STATE + src) * n_channels + ch]);
        acc += zk_to_f32(w[ch * ZK_CONV_TAPS + k]) * xv;                             // w: [C, 4]
    }
    zk_store(out + t * n_channels + ch, zk_silu(acc));                                // out: [T, C]
}

// One thread per (sequence, channel): reads the old state before writing it (no other thread
// touches this (slot, channel)).
template <typename TX>
static __global__ void causal_conv1d_state_update_kernel(TX * __restrict__ conv_state,
                                                         const TX * __restrict__ xbc, int ld_x,
                                                         const int32_t * __restrict__ cu_seqlens,
                                                         const int32_t * __restrict__ seq_slot,
                                                         int n_channels) {
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

template <typename TX>
static void conv_varlen_launch(TX * out, const TX * xbc, int ld_x, const TX * conv_state, const bf16 * w, const bf16 * bias,
                               const int32_t * cu_seqlens, const int32_t * token_seq, const int32_t * seq_slot, int n_tokens,
                               int n_channels, cudaStream_t stream) {
    if (n_tokens <= 0) return;
    dim3 grid((n_channels + 127) / 128, n_tokens);
    causal_conv1d_varlen_kernel<<<grid, 128, 0, stream>>>(out, xbc, ld_x, conv_state, w, bias,
                                                          cu_seqlens, token_seq, seq_slot, n_channels);
}

template <typename TX>
static void conv_state_update_launch(TX * conv_state, const TX * xbc, int ld_x, const int32_t * cu_seqlens,
                                     const int32_t * seq_slot, int n_seqs, int n_channels, cudaStream_t stream) {
    if (n_seqs <= 0) return;
    dim3 grid((n_channels + 127) / 128, n_seqs);
    causal_conv1d_state_update_kernel<<<grid, 128, 0, stream>>>(conv_state, xbc, ld_x, cu_seqlens,
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

bool causal_conv1d_decode(float * out, const float * xbc, int ld_x, float * conv_state, const bf16 * w, const bf16 * bias,
                          const int32_t * seq_slot, int n_seqs, int n_channels, cudaStream_t stream) {
    if (((uintptr_t) w % 8) != 0) return false;
    if (n_seqs <= 0 || n_channels <= 0) return true;
    const dim3 grid((unsigned) ((n_channels + 255) / 256), (unsigned) n_seqs);
    causal_conv1d_decode_kernel<<<grid, 256, 0, stream>>>(out, xbc, ld_x, conv_state, w, bias, seq_slot, n_channels);
    return true;
}
