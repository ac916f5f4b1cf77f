// Launchers of every zamba2 kernel family (one family per file in kernels/src/).
// Host-only header: includes no cuBLAS and compiles with any C++17 compiler that sees the CUDA
// runtime headers. All pointers are device pointers unless named *_host. Every launcher enqueues on
// `stream` and returns without synchronizing; launch errors surface through cudaGetLastError.
//
// Layout conventions (row-major, innermost dimension last):
//   T = tokens of one step (all sequences packed), S = sequences of the step,
//   cu_seqlens [S+1] token offsets of each sequence, token_seq [T] sequence index of each token.
#pragma once

#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

typedef __nv_bfloat16 bf16;

// Split GEMM inputs with an FP8 low part (the optional *_lo8 outputs below): hi = bf16(v) as usual and
// lo8 = e4m3_satfinite((v - hi) * ZK_LO_FP8_SCALE) (zamba2-fp8.h), one byte per element, same [rows, n] layout
// as hi, so hi.W (bf16) + lo8.W (FP8) / ZK_LO_FP8_SCALE ~ v.W. The remainder is at most 2^-8 |v|, so |v| up
// to ~112 maps below e4m3's 448; larger values saturate at 448, which leaves that element no worse than
// unsplit bf16 (hi alone is within 2^-8 |v|; the saturated lo still points the right way and undershoots).
#include "zamba2-fp8.h"

// ---- rms-norm.cu -------------------------------------------------------------------------------
// y[t] = rmsnorm(concat(a[t] + b[t], c[t])) * w        (b, c and sum_out optional: nullptr)
// a, b: [T, n_a]; c: [T, n_c]; w: [n_a + n_c]; y: [T, n_a + n_c]; sum_out: [T, n_a] = a + b.
// The mean of squares and the scaling are fp32; y is rounded to bf16 once.
void rms_norm_fused(bf16 * y, bf16 * sum_out, const bf16 * a, const bf16 * b, const bf16 * c,
                    const bf16 * w, int n_rows, int n_a, int n_c, float eps, cudaStream_t stream);
// fp32 residual stream (a, b fp32; the sum is not rounded). y: [T, n] bf16; y_lo (optional): [T, n] the
// bf16 remainders v - bf16(v), so a GEMM over the stacked rows [y; y_lo] sees v to ~2^-17 (split input).
// y_lo8 (optional, [T, n] e4m3 bytes): write the remainders as FP8 (ZK_LO_FP8_SCALE) instead; y_lo is then
// not written. Rows of n % 8 == 0 (16-byte aligned pointers, 8-byte aligned y_lo8) take 16-byte stores.
void rms_norm_f32(bf16 * y, bf16 * y_lo, const float * a, const float * b, const bf16 * c, const bf16 * w,
                  int n_rows, int n_a, int n_c, float eps, cudaStream_t stream, uint8_t * y_lo8 = nullptr);

// ---- gated-rms-norm.cu -------------------------------------------------------------------------
// v = y * silu(z); per group of d/G channels: v / sqrt(mean(v^2) + eps) * w.
// y: [T, d] fp32 (scan output); z: [T, d] bf16 with row stride ld_z; w: [d]; out: [T, d] bf16.
void gated_rms_norm(bf16 * out, const float * y, const bf16 * z, int ld_z, const bf16 * w,
                    int n_rows, int d, int n_groups, float eps, cudaStream_t stream);
// fp32 z; out [T, d] bf16 and out_lo (optional) [T, d] the split remainders (see rms_norm_f32).
// out_lo8 (optional, [T, d] e4m3 bytes): the remainders as FP8 (see rms_norm_f32); out_lo is then not written.
void gated_rms_norm_f32(bf16 * out, bf16 * out_lo, const float * y, const float * z, int ld_z, const bf16 * w,
                        int n_rows, int d, int n_groups, float eps, cudaStream_t stream, uint8_t * out_lo8 = nullptr);

// ---- causal-conv1d.cu --------------------------------------------------------------------------
// Depthwise causal conv of width 4 over the packed varlen batch, starting from each sequence's
// conv state (the 3 previous pre-conv inputs, oldest first), followed by SiLU.
// xbc: [T, C] with row stride ld_x; conv_state: [slots, 3, C] (this layer's pool);
// w: [C, 4] (tap 3 multiplies the current token); bias: [C] or nullptr; out: [T, C].
void causal_conv1d_varlen(bf16 * out, const bf16 * xbc, int ld_x, const bf16 * conv_state,
                          const bf16 * w, const bf16 * bias, const int32_t * cu_seqlens,
                          const int32_t * token_seq, const int32_t * seq_slot, int n_tokens,
                          int n_channels, cudaStream_t stream);
// Shift each sequence's last 3 pre-conv inputs into its conv state. Enqueue after the conv.
void causal_conv1d_state_update(bf16 * conv_state, const bf16 * xbc, int ld_x,
                                const int32_t * cu_seqlens, const int32_t * seq_slot, int n_seqs,
                                int n_channels, cudaStream_t stream);
// fp32 activations and conv state (same semantics).
void causal_conv1d_varlen(float * out, const float * xbc, int ld_x, const float * conv_state,
                          const bf16 * w, const bf16 * bias, const int32_t * cu_seqlens,
                          const int32_t * token_seq, const int32_t * seq_slot, int n_tokens,
                          int n_channels, cudaStream_t stream);
void causal_conv1d_state_update(float * conv_state, const float * xbc, int ld_x,
                                const int32_t * cu_seqlens, const int32_t * seq_slot, int n_seqs,
                                int n_channels, cudaStream_t stream);

// Conv and state write-back in one launch (fp32): the same result as causal_conv1d_varlen followed by
// causal_conv1d_state_update, for any ragged batch (sequences shorter than the conv width included). Tokens
// of a sequence are consecutive (cu_seqlens), slots distinct; conv_state is read and then overwritten.
void causal_conv1d_varlen_update(float * out, const float * xbc, int ld_x, float * conv_state, const bf16 * w,
                                 const bf16 * bias, const int32_t * cu_seqlens, const int32_t * token_seq,
                                 const int32_t * seq_slot, int n_tokens, int n_channels, cudaStream_t stream);

// Decode-only steps (sequence s has exactly token s): the conv and the state shift in one kernel.
// Returns false (enqueues nothing) when w is not 8-byte aligned.
bool causal_conv1d_decode(float * out, const float * xbc, int ld_x, float * conv_state, const bf16 * w, const bf16 * bias,
                          const int32_t * seq_slot, int n_seqs, int n_channels, cudaStream_t stream);

// ---- mamba2-scan.cu ----------------------------------------------------------------------------
// Selective-state recurrence over the packed varlen batch (prefill chunks and decodes alike):
//   dt = softplus(dt_raw + dt_bias), dA = exp(dt * A), A = -exp(A_log)
//   S = dA * S + dt * x (outer) B_g;  y = S . C_g + D * x      (S: [P, N] per head, fp32)
// xbc: [T, d + 2GN] post-conv (x | B | C); dt_raw: [T, nh] row stride ld_dt; y: [T, d] fp32;
// ssm_state: [slots, nh, P, N] fp32 (this layer's pool), read as the initial state, written back.
void mamba2_scan_varlen(float * y, float * ssm_state, const bf16 * xbc, int ld_xbc,
                        const bf16 * dt_raw, int ld_dt, const float * dt_bias, const float * a_log,
                        const float * d_skip, const int32_t * cu_seqlens, const int32_t * seq_slot,
                        int n_seqs, int n_heads, int head_dim, int n_groups, int d_state,
                        cudaStream_t stream);
void mamba2_scan_varlen(float * y, float * ssm_state, const float * xbc, int ld_xbc,
                        const float * dt_raw, int ld_dt, const float * dt_bias, const float * a_log,
                        const float * d_skip, const int32_t * cu_seqlens, const int32_t * seq_slot,
                        int n_seqs, int n_heads, int head_dim, int n_groups, int d_state,
                        cudaStream_t stream);

// Decode-only variant (every sequence exactly one token) with 16-byte state traffic. Returns false
// (enqueues nothing) when d_state is not 4 x a power of two <= 128 or ld_xbc / d are not multiples of 4.
bool mamba2_state_step(float * y, float * ssm_state, const bf16 * xbc, int ld_xbc, const bf16 * dt_raw, int ld_dt,
                       const float * dt_bias, const float * a_log, const float * d_skip, const int32_t * cu_seqlens,
                       const int32_t * seq_slot, int n_seqs, int n_heads, int head_dim, int n_groups, int d_state,
                       cudaStream_t stream);
bool mamba2_state_step(float * y, float * ssm_state, const float * xbc, int ld_xbc, const float * dt_raw, int ld_dt,
                       const float * dt_bias, const float * a_log, const float * d_skip, const int32_t * cu_seqlens,
                       const int32_t * seq_slot, int n_seqs, int n_heads, int head_dim, int n_groups, int d_state,
                       cudaStream_t stream);

// The fp32 step with the gate of the mixer's gated norm applied, for decode steps whose out_proj reads
// SKINNY_X_GATED_NORM: y = (C.S + D x) * silu(z), z: [T, d] fp32 (row stride ld_z), and gsq [T, d / chunk]
// the sums of y^2 over chunks of chunk = mamba2_state_step_chunk(head_dim, d_state) columns (fixed order:
// deterministic). Returns false (enqueues nothing) also when chunk <= 0 or d is not a multiple of it.
int mamba2_state_step_chunk(int head_dim, int d_state);
// Process-wide (set by the engine's switches; default off here): the gated step lets its dependent (out_proj) launch
// before its PDL wait instead of after it, so out_proj's CTAs take the slots in_proj's CTAs free and preload earlier.
bool & zk_state_step_early_trigger();
bool mamba2_state_step_gated(float * y, float * gsq, const float * z, int ld_z, float * ssm_state, const float * xbc,
                             int ld_xbc, const float * dt_raw, int ld_dt, const float * dt_bias, const float * a_log,
                             const float * d_skip, const int32_t * cu_seqlens, const int32_t * seq_slot, int n_seqs,
                             int n_heads, int head_dim, int n_groups, int d_state, cudaStream_t stream);

// ---- a run of Mamba2 layers of a batch-1 decode step in one persistent launch (mamba2-decode-persistent.cu) ----
// Per layer: in_proj on rmsnorm(x (+ tr on the first layer)), the conv (state updated), the state step with the
// gate, out_proj on the gated norm accumulated into x; one CTA per SM streams its weight rows through shared memory.
// Every pointer 16-byte aligned (cudaMalloc's are): the weights go by bulk copies, the norms and conv weights by
// 8-byte loads.
struct mamba2_persist_layer {
    const bf16 *in_proj, *out_proj;        // [d + cd + nh, H], [H, d]
    const bf16 *input_norm, *conv_w, *conv_b, *norm;  // [H], [cd, 4], [cd] (may be null), [d]
    const float *dt_bias, *a_log, *d_skip;  // [nh]
    float *conv_state, *ssm_state;          // this layer's pools: [slots, 3, cd], [slots, nh, P, N] fp32
};
struct mamba2_persist_args {
    const mamba2_persist_layer * layers;  // host array [n_layers], in order: copied into the launch's parameters
    int n_layers;
    float * x;                 // [H] the residual stream, updated in place
    float * tr;                // [H] added to the first layer's mixer input (a hybrid layer), or null
    float * zx;                // [d + cd + nh] scratch: in_proj's z and dt rows (its xBC rows are not written)
    float * xbc;               // [cd] scratch: the conv's outputs
    float * y;                 // [d] scratch: the gated state step's output
    float * gsq;               // [nh * 4] scratch: sums of y^2 per state unit
    unsigned * sync;           // [2] grid-barrier counters of this launch site, zero between launches (the launch resets them)
    const int32_t * seq_slot;  // [1] the sequence's state slot
    int hidden, n_heads, head_dim, n_groups, d_state;
    float eps, gated_eps;      // input rmsnorm, gated norm
    // Optional phase trace (null: none): [gridDim][n_layers][PERSIST_TRACE_FIELDS] globaltimer ns (the bench)
    unsigned long long * trace;
    // Optional (null: none): the hybrid block's last GEMV first, tr = down_w . bf16(gelu(gu[:F]) * gu[F:]) written to
    // tr (skinny_gemm's SKINNY_X_GELU_MUL input), so that the first layer's weights stream right behind its rows
    const bf16 * down_w;       // [H, F] (the block's down and W_linear merged)
    const float * gu;          // [2F] gate | up, fp32
    int ffn;                   // F
};
constexpr int PERSIST_TRACE_FIELDS = 16;  // start, C, in_proj, A, state, B, out_proj, full waits, empty waits, issued,
                                          // out_proj's input staged, then thread 0 past in_proj's slots, past its
                                          // block barrier, the same for out_proj, the next layer's loads issued
constexpr int PERSIST_MAX_LAYERS = 32;  // layers of one run (their pointers travel in the launch's parameters)
// Enqueues the run; false (nothing enqueued) below compute capability 9.0, or for dims it does not take.
bool mamba2_decode_persistent(const mamba2_persist_args & a, cudaStream_t stream);
// Why the last call returned false ("" after one that enqueued).
const char * mamba2_decode_persistent_refusal();

// ---- mamba2-ssd.cu ----------------------------------------------------------------------------
// Chunked (SSD) form of mamba2_scan_varlen for prefill, on tensor cores (bf16 mma with fp32 operands split
// into hi + lo: ~1e-5 relative to the float64 recurrence). The caller cuts every sequence into chunks of
// at most ZK_SSD_CHUNK_TOKENS (64) tokens: chunk c covers tokens [chunk_t0[c], + chunk_len[c]) of one
// sequence; sequence s owns chunks [seq_chunk0[s], + seq_nchunks[s]) in order (every sequence at least
// one). ssm_state [slots, nh, P, N] is read as the initial state and holds the final state afterwards
// (also used in place between the chunks of a launch). Scratch, contents opaque and not kept between
// calls: cb_buf [n_chunks, G, 64, 64] f32 (C·B^T per chunk and group: 16 KB per chunk for G = 1),
// dt_buf and lam_buf [n_chunks, nh, 64] f32. Enqueues a 4-byte memset of dt_buf, a prep kernel and the
// chunk kernel (on sm_90 launched as the prep kernel's programmatic dependent).
// Returns false (enqueues nothing) when head_dim > 64, d_state > 128 or nh % G != 0.
#define ZK_SSD_CHUNK_TOKENS 64
bool mamba2_ssd_varlen(float * y, float * ssm_state, float * cb_buf, float * dt_buf, float * lam_buf,
                       const bf16 * xbc, int ld_xbc, const bf16 * dt_raw, int ld_dt, const float * dt_bias,
                       const float * a_log, const float * d_skip, const int32_t * chunk_t0, const int32_t * chunk_len,
                       const int32_t * seq_chunk0, const int32_t * seq_nchunks, const int32_t * seq_slot, int n_chunks,
                       int n_seqs, int n_heads, int head_dim, int n_groups, int d_state, cudaStream_t stream);
bool mamba2_ssd_varlen(float * y, float * ssm_state, float * cb_buf, float * dt_buf, float * lam_buf,
                       const float * xbc, int ld_xbc, const float * dt_raw, int ld_dt, const float * dt_bias,
                       const float * a_log, const float * d_skip, const int32_t * chunk_t0, const int32_t * chunk_len,
                       const int32_t * seq_chunk0, const int32_t * seq_nchunks, const int32_t * seq_slot, int n_chunks,
                       int n_seqs, int n_heads, int head_dim, int n_groups, int d_state, cudaStream_t stream);
// Test/bench hook (kernels/tests/test-ssd-tc.cu): mode 0 default, 1 chain polls without sleep, 2 no chain
// wait (wrong results: timing only), 3 prep kernel only; prof (device, 10 u64, nullptr: off) gets the
// per-phase ns sums over CTAs [0..6], the CTA count [7], first start [8] (atomicMin), last end [9].
void mamba2_ssd_debug(int mode, unsigned long long * prof);
// Test/bench hook: variant 0 default, 1 the chunk kernel without programmatic dependent launch.
void mamba2_ssd_debug_variant(int variant);

// ---- rotary.cu ---------------------------------------------------------------------------------
// NeoX rope over the full head dim, in place: x: [T, n_heads, head_dim], positions: [T].
void rope_neox_inplace(bf16 * x, const int32_t * positions, int n_tokens, int n_heads, int head_dim,
                       float theta, cudaStream_t stream);
void rope_neox_inplace(float * x, const int32_t * positions, int n_tokens, int n_heads, int head_dim,
                       float theta, cudaStream_t stream);
// q and k ([T, n_heads, head_dim] fp32 each) in one launch: the angles are computed once per (token, i).
void rope_neox_qk_inplace(float * q, float * k, const int32_t * positions, int n_tokens, int n_heads, int head_dim,
                          float theta, cudaStream_t stream);

// ---- paged-attention.cu ------------------------------------------------------------------------
// KV pool of one attention layer: k_pool, v_pool: [pages, n_heads, ZK_PAGE_TOKENS, head_dim].
#define ZK_PAGE_TOKENS 16
// Write this step's k, v ([T, n_heads, head_dim]) at kv_index[t] = page * 16 + offset.
void kv_cache_write(bf16 * k_pool, bf16 * v_pool, const bf16 * k, const bf16 * v,
                    const int32_t * kv_index, int n_tokens, int n_heads, int head_dim,
                    cudaStream_t stream);
void kv_cache_write(bf16 * k_pool, bf16 * v_pool, const float * k, const float * v,
                    const int32_t * kv_index, int n_tokens, int n_heads, int head_dim,
                    cudaStream_t stream);
// Causal attention of every token over its sequence's keys at positions [0, positions[t]], read
// from the paged pool (so a prefill chunk sees earlier chunks). q, out: [T, n_heads, head_dim];
// block_tables: [S, max_pages] page ids. multi_query: 4 consecutive queries of a sequence share
// each K/V load (prefill); tokens must be grouped by sequence with consecutive positions.
void paged_attention(bf16 * out, const bf16 * q, const bf16 * k_pool, const bf16 * v_pool,
                     const int32_t * block_tables, int max_pages, const int32_t * token_seq,
                     const int32_t * positions, int n_tokens, int n_heads, int head_dim,
                     float scale, bool multi_query, cudaStream_t stream);
// fp32 queries and output (the pool stays bf16). With cu_seqlens [S+1] (device) and n_seqs = S given,
// multi_query batches whose head_dim the tensor-core kernel supports go to attention_prefill_tc
// (unless env ZAMBA2_ATTN_TC=0); without them, or otherwise, the CUDA-core kernel above runs.
void paged_attention(float * out, const float * q, const bf16 * k_pool, const bf16 * v_pool,
                     const int32_t * block_tables, int max_pages, const int32_t * token_seq,
                     const int32_t * positions, int n_tokens, int n_heads, int head_dim,
                     float scale, bool multi_query, cudaStream_t stream,
                     const int32_t * cu_seqlens = nullptr, int n_seqs = 0);

// ---- attention-prefill-tc.cu -------------------------------------------------------------------
// Tensor-core (mma.sync bf16, fp32 accumulate) causal attention over the paged pool for prefill:
// the same function as paged_attention(float *) above. q and P are split into bf16 hi + lo (two MMAs
// each), so the result is fp32-accurate (~1e-5 rel). One CTA per (64-query tile of one sequence, head):
// tiles are cut per sequence from cu_seqlens [S+1] (device), so any mix of prefill chunks (positions
// need not start at 0) and decode tokens works; tokens of a sequence are consecutive with consecutive
// positions. head_dim in {64, 80, 96, 128, 160, 192, 224, 256}. Returns false (enqueues nothing) when
// head_dim is unsupported or cu_seqlens is null / n_seqs <= 0. Dynamic shared memory: (128 + 4 BK) x
// (head_dim + 8) x 2 B, BK = 64 keys for head_dim <= 128 else 32 (104 KB at 128, 119 KB at 224).
bool attention_prefill_tc_supported(int head_dim);
bool attention_prefill_tc(float * out, const float * q, const bf16 * k_pool, const bf16 * v_pool,
                          const int32_t * block_tables, int max_pages, const int32_t * cu_seqlens, int n_seqs,
                          const int32_t * positions, int n_tokens, int n_heads, int head_dim, float scale,
                          cudaStream_t stream);
// env ZAMBA2_ATTN_TC != "0", read once.
bool attention_prefill_tc_enabled();

// ---- elementwise.cu ----------------------------------------------------------------------------
// out[t] = table[ids[t]]: table [V, H], out [T, H].
void embedding_gather(bf16 * out, const bf16 * table, const int32_t * ids, int n_tokens, int hidden,
                      cudaStream_t stream);
// out[t, f] = gelu_erf(gu[t, f]) * gu[t, F + f]: gu [T, 2F], out [T, F].
void gelu_mul(bf16 * out, const bf16 * gu, int n_rows, int ffn, cudaStream_t stream);
void gelu_mul(bf16 * out, const float * gu, int n_rows, int ffn, cudaStream_t stream);
// fp32 embedding rows (the fp32 residual stream starts as the embeddings).
void embedding_gather(float * out, const bf16 * table, const int32_t * ids, int n_tokens, int hidden,
                      cudaStream_t stream);
void gather_rows(float * out, const float * in, const int32_t * rows, int n, int n_cols, cudaStream_t stream);
// Split GEMM input of an fp32 activation: out [2n, cols] = [bf16(in); bf16(in - bf16(in))]. With out_lo8
// ([n, cols] e4m3 bytes) out holds only the hi rows [n, cols] and the remainders go to out_lo8 as FP8
// (ZK_LO_FP8_SCALE). 16-byte loads and stores when n * cols % 8 == 0 and the pointers allow.
void split_rows_bf16(bf16 * out, const float * in, int n_rows, int n_cols, cudaStream_t stream,
                     uint8_t * out_lo8 = nullptr);
// y[r, :] = (accumulate ? y[r, :] : 0) + Y[r, :] + Y[n + r, :]: Y [2n, cols] is a split GEMM's output.
void combine_halves(float * y, int ld_y, const float * Y, int n_rows, int n_cols, bool accumulate, cudaStream_t stream);
// out[i] = in[rows[i]]: in [*, n_cols], out [n, n_cols].
void gather_rows(bf16 * out, const bf16 * in, const int32_t * rows, int n, int n_cols,
                 cudaStream_t stream);
// Fill with uniform values in [offset - scale, offset + scale] from a counter hash (benchmarks).
void fill_random_bf16(bf16 * x, int64_t n, uint64_t seed, float scale, float offset,
                      cudaStream_t stream);
void fill_random_f32(float * x, int64_t n, uint64_t seed, float scale, float offset,
                     cudaStream_t stream);

// ---- attention-decode.cu -----------------------------------------------------------------------
// Decode-only attention: token t is sequence t's only query (at positions[t]); q, out: [S, heads, D] fp32;
// keys/values from the paged pool as paged_attention. Returns false (enqueues nothing) when head_dim is not
// a multiple of 8 or above 256. k_new, v_new ([S, heads, D] fp32, with kv_index): this step's keys and values,
// written into the pools first as kv_cache_write does (then no separate kv_cache_write launch). rope_theta > 0
// (needs k_new): q and k_new are rotated here as rope_neox_qk_inplace would (same bits; q and k_new are not
// modified), so a decode step needs no rope launch.
bool paged_attention_decode(float * out, const float * q, bf16 * k_pool, bf16 * v_pool, const int32_t * block_tables,
                            int max_pages, const int32_t * positions, int n_seqs, int n_heads, int head_dim, float scale,
                            cudaStream_t stream, const float * k_new = nullptr, const float * v_new = nullptr,
                            const int32_t * kv_index = nullptr, float rope_theta = 0.0f);

// ---- skinny-gemm.cu ----------------------------------------------------------------------------
// Decode-sized GEMMs on tensor cores (M <= 64 token rows, weights read once):
//   y[M, N] (+)= x[M, K] . w[N, K]^T (+ x2[M, K2] . w2[N, K2]^T)
// Segments: up to 3 weight matrices sharing x and K in one launch (q/k/v, LoRA w0s), each with its own
// output and optional second operand (LoRA: x2 fp32 rows of stride ld_x2, w2 [N, K2]).
// Returns false (enqueues nothing) when unsupported: M > 64, K or ld_x not a multiple of 8, pointers not
// 16-byte aligned, K2 not a multiple of 8 or ld_x2 not of 4. The caller then uses cuBLASLt.
enum skinny_x_mode {
    SKINNY_X_BF16 = 0,   // x: bf16 [M, K]
    SKINNY_X_SPLIT = 1,  // x: bf16 hi [M, K] and x_lo: bf16 lo [M, K] (stride ld_x); the input is hi + lo
    SKINNY_X_F32 = 2,    // x: fp32 [M, K], split into hi + lo in registers
    // The input computed from its producer's output as it is loaded (M <= 8 only: each CTA reduces the rows
    // itself), so a decode step needs no separate norm / activation kernel. Split into hi + lo like F32.
    SKINNY_X_RMSNORM = 3,     // s = x fp32 [M, k1] (+ norm.add) | norm.tail bf16 [M, K - k1];
                              //   input = s / sqrt(mean(s^2) + eps) * norm.w   (rms_norm_f32's math)
    SKINNY_X_GATED_NORM = 4,  // g = x fp32 [M, K] (already y * silu(z): mamba2_state_step's gated form);
                              //   per group of norm.group columns: g / sqrt(sum(group's norm.gsq) / group + eps) * norm.w
    SKINNY_X_GELU_MUL = 5,    // x = gu fp32 [M, 2K]: input = bf16(gelu(gu[:, k]) * gu[:, K + k])  (gelu_mul's math, bf16)
};
// The source of SKINNY_X_RMSNORM / SKINNY_X_GATED_NORM inputs.
struct skinny_x_norm {
    const bf16 * w;     // [K] norm weight
    float eps;
    const float * add;  // RMSNORM: fp32 [M, k1] (row stride ld_x) added to x's columns, or nullptr
    const bf16 * tail;  // RMSNORM: bf16 [M, K - k1] (row stride ld_tail): columns k1.. of the input, or nullptr (k1 = K)
    int k1, ld_tail;
    const float * gsq;  // GATED_NORM: [M, K / chunk] sums of g^2 over chunks of `chunk` columns (row stride ld_gsq)
    int chunk, group, ld_gsq;
};
// Decode steps (row m = sequence m): output columns [col0, col0 + n) of segment 0 are the pre-conv xBC of the
// Mamba2 mixer; the kernel also applies causal_conv1d_decode to them (out, state update), so no conv launch.
struct skinny_conv_epilogue {
    float * out;               // [M, n] conv + SiLU output (nullptr: no epilogue)
    float * state;             // [slots, 3, n] this layer's conv pool
    const bf16 * w, * bias;    // [n, 4], [n] (bias may be nullptr)
    const int32_t * seq_slot;  // [M]
    int col0, n;
};
#define ZK_SKINNY_MAX_M 64
#define ZK_SKINNY_MAX_SEGMENTS 3
// How the work items (16 output features x one K slice) map onto CTAs.
enum skinny_schedule {
    SKINNY_SCHEDULE_DEFAULT = 0,     // the measured best: PERSISTENT (ZK_BENCH_SKINNY=1 in the kernel tests)
    SKINNY_SCHEDULE_GRID = 1,        // one CTA per work item (the path before the streaming work)
    SKINNY_SCHEDULE_PERSISTENT = 2,  // at most one resident wave of CTAs, each looping over items
};
struct skinny_segment {
    const bf16 * w;          // [n, K]
    const bf16 * w2;         // [n, K2] or nullptr
    const float * x2;        // [M, K2] rows of stride ld_x2 (with w2)
    void * y;                // [M, n] rows of stride ld_y, fp32 or bf16 (y_f32)
    int n, ld_y;
};
struct skinny_gemm_args {
    skinny_segment seg[ZK_SKINNY_MAX_SEGMENTS];
    int n_seg;
    skinny_x_mode x_mode;
    const void * x;
    const bf16 * x_lo;
    int ld_x, K;
    int ld_x2, K2;
    int M;
    bool y_f32, accumulate;  // accumulate: y += result (else y = result)
    // Optional split-K scratch (nullptr: one block per 16-feature tile): workspace_floats floats and
    // counter_count int counters, zeroed once at allocation (each launch leaves them zero again).
    float * workspace;
    int * counters;
    int64_t workspace_floats;
    int counter_count;
    // Weight streaming; zero-initialized = the measured defaults (the others serve benchmarks and tests;
    // none changes the summation order, so results are bitwise the same for the same K slicing).
    skinny_schedule schedule;
    int split_k;      // K slices per tile: 0 = chosen per shape; else at most this many (workspace allowing)
    bool late_weights;  // issue no W load before the PDL wait (the path before the preload; benchmarks)
    bool no_stage;      // M <= 8: load x from global memory in the main loop instead of staging it in shared memory
    bool no_second_group;  // M <= 8: preload only one group of weights before the PDL wait (not a second via cp.async)
    bool no_half_tiles;    // M <= 4, staged: keep 16-feature tiles with split-K where they need it (8-feature half
                           // tiles over both K halves otherwise: no partials, no counters; skinny-gemm-item.cuh)
    bool no_conv_stage;    // the conv epilogue loads its operands at the item's end (else copied when it starts)
    bool no_cross_preload;  // M <= 8: an item does not issue the CTA's next item's first weights before its finish
    skinny_x_norm norm;          // SKINNY_X_RMSNORM / SKINNY_X_GATED_NORM
    skinny_conv_epilogue conv;   // optional (conv.out); needs y_f32, !accumulate, x modes with M <= 8
    // Programmatic dependent launch (sm_90+, ignored below; the engine sets it from zk_pdl_enabled()): the
    // CTAs may be scheduled while the previous kernel in the stream still runs (once its CTAs have called
    // zk_pdl_trigger / zk_pdl_prologue) and wait for it to complete before they read x, x_lo, x2, y or touch
    // workspace and counters (only weights are read before). Valid inside stream capture. The kernel lets
    // its own dependent start at once (zk_pdl_trigger first: a GEMV often follows a GEMV, LoRA then main).
    bool pdl;
};
bool skinny_gemm(const skinny_gemm_args & a, cudaStream_t stream);

// ---- weight-merge.cu ---------------------------------------------------------------------------
// out[N, K] = bf16(base[N, K] + P[N, J] . Q[J, K]) (base may be nullptr; fp32 accumulation), all row-major bf16:
// load-time weight products (a LoRA adapter merged into its weight, a projection folded into the one before it).
// Returns false (enqueues nothing) on a null output/operand or a non-positive size.
bool weight_merge_bf16(bf16 * out, const bf16 * base, const bf16 * P, const bf16 * Q, int N, int J, int K, cudaStream_t stream);

// ---- sampling.cu -------------------------------------------------------------------------------
// Per row of logits [n, V] fp32: argmax token, the max logit and log-sum-exp.
void logits_argmax_lse(int32_t * token, float * max_logit, float * lse, const float * logits,
                       int n_rows, int vocab, cudaStream_t stream);

// Sampling of one token per row with a request's parameters (semantics of src/engine/cpu/sampler.ts).
// Byte layout shared with src/engine/cuda/step-packing.ts (96 bytes = 24 int32 words per row).
#define ZK_SAMPLE_MAX_TOP 20
struct zk_sample_params {
    double temperature;         // <= 0: greedy (argmax of the processed logits)
    double top_p;               // >= 1: off
    double min_p;               // <= 0: off (relative to the most likely token)
    double presence_penalty;    // subtracted once per output token seen
    double frequency_penalty;   // subtracted per occurrence in the output
    double repetition_penalty;  // 1: off; over prompt + output tokens
    int32_t logits_row;         // row of `logits` this sample reads
    int32_t top_k;              // <= 0 or >= V: off
    uint32_t seed_lo, seed_hi;  // RNG key (64-bit), with `position`: u = uniformAt(seed, position)
    int32_t position;
    int32_t n_top;              // top-N logprobs to list, 0..ZK_SAMPLE_MAX_TOP
    int32_t penalty_start, penalty_count;  // entries of `penalties` (unique tokens)
    int32_t bias_start, bias_count;        // entries of `biases` (unique tokens)
    int32_t reserved[2];
};
// A token the sequence has seen (prompt or output) and how often it occurs in the output.
struct zk_penalty_entry { int32_t token; int32_t output_count; };
struct zk_bias_entry { int32_t token; int32_t reserved; double bias; };
static_assert(sizeof(zk_sample_params) == 96, "zk_sample_params layout is shared with step-packing.ts");
static_assert(sizeof(zk_bias_entry) == 16, "zk_bias_entry layout is shared with step-packing.ts");
// One block per params row: token [n], logprob [n] (raw log-softmax of the token), top_ids /
// top_logprobs [n, ZK_SAMPLE_MAX_TOP] (the first n_top filled, the rest -1 / -inf).
// work: [n, V] scratch (the processed logits). logits: [*, V] fp32, read only.
void sample_rows(int32_t * token, float * logprob, int32_t * top_ids, float * top_logprobs, float * work,
                 const float * logits, const zk_sample_params * params, const zk_penalty_entry * penalties,
                 const zk_bias_entry * biases, int n_rows, int vocab, cudaStream_t stream);
