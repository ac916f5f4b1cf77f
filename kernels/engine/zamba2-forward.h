// Inside one engine step (zamba2-forward.cc and the files it calls into): the step's device view, the GEMM
// paths every layer uses (zamba2-step-gemm.cc) and the layers (zamba2-layers.cc: any step; zamba2-decode-fused.cc:
// decode steps of <= 8 sequences with the norms, the conv and the activation fused into the GEMVs).
#pragma once

#include <string>

#include "zamba2-engine-internal.h"

struct step_view {
    int S, T, O, R, want_logits, W;
    const int32_t *tokens, *positions, *token_seq, *kv_index, *cu_seqlens, *seq_slot, *block_tables, *out_rows,
        *reset_slots;
};

// ---- zamba2-step-gemm.cc ----------------------------------------------------------------------

// Steps of at most skinny_max_m tokens (decodes, small chunks) run every GEMM through skinny_gemm
// (tensor cores, weights read once); larger ones, and any shape it refuses, through cuBLASLt.
inline bool skinny_step(const zamba2_engine * e, int T) { return T <= e->skinny_max_m; }

// skinny_gemm arguments with the engine's scratch and switches; seg / n_seg left to the caller.
skinny_gemm_args skinny_args(zamba2_engine * e, skinny_x_mode mode, const void * x, const bf16 * x_lo, int ld_x, int K, int M,
                             bool accumulate);

// y (+)= x . w^T (beta 0 or 1) through skinny_gemm when it takes the step, else cuBLASLt; nonzero: failed.
int engine_gemm(zamba2_engine * e, void * y, gemm_out_type y_type, int ld_y, const bf16 * x, int ld_x, const bf16 * w, int M,
                int N, int K, float beta, cudaStream_t st);

#define ZF_GEMM(...)                                                                               \
    do {                                                                                           \
        if (engine_gemm(e, __VA_ARGS__) != 0) return std::string("gemm: ") + gemm_last_error(e->gemm); \
    } while (0)

// Steps that compute the lo term of split inputs in FP8 (large steps, see zamba2-fp8.h).
bool lo_fp8_step(const zamba2_engine * e, int T);

// y [T, N] fp32 (+)= x2 . w^T for a split input x2 = [hi; lo] (see the definition for the three forms), with an
// optional LoRA pair (w0 [r, K], w1 [N, r]); lo_n0 > 0 leaves columns [0, lo_n0) with the hi term on FP8 steps.
std::string split_gemm(zamba2_engine * e, float * y, int ld_y, const bf16 * x2, const bf16 * w, int T, int N, int K,
                       bool accumulate, const bf16 * w0 = nullptr, const bf16 * w1 = nullptr, int lo_n0 = 0);

// Where a split input's bf16 lo rows go (nullptr: not written).
bf16 * lo_rows(const zamba2_engine * e, bf16 * hi, size_t n_elems, int T);

// The lo8 output of a split input's producer on FP8 steps (nullptr otherwise).
uint8_t * produced_lo8(zamba2_engine * e, int T);

#define ZF_SPLIT(...)                                                                              \
    do {                                                                                           \
        std::string err_ = split_gemm(e, __VA_ARGS__);                                             \
        if (!err_.empty()) return err_;                                                            \
    } while (0)

// q, k, v of a skinny step from the input xs (skinny_args' x fields + mode) in two launches (LoRA, then main);
// false: not a skinny step or a shape skinny_gemm refuses.
bool skinny_qkv(zamba2_engine * e, const skinny_gemm_args & xs, float * const outs[3], const bf16 * const w_main[3],
                const bf16 * const w0[3], const bf16 * const w1[3]);

// y (+)= x . w^T with an optional LoRA pair, through skinny_gemm only (the fused decode path); "" or the error.
std::string skinny_gemm_lora(zamba2_engine * e, const skinny_gemm_args & xs, float * y, int ld_y, const bf16 * w, int N,
                             bool accumulate, const bf16 * w0 = nullptr, const bf16 * w1 = nullptr);

// ---- zamba2-layers.cc (any step) ---------------------------------------------------------------

// The shared attention + MLP block at hybrid invocation h; leaves Tr = block output . W_linear^T in s.tr.
// fused: a fused_decode_step (the norms and the GELU inside the GEMVs, zamba2-decode-fused.cc).
// deferred_down (fused steps; may be null): where the invocation's merged down GEMV (down_linear) is left to the caller
// instead of launched: *deferred_down = its weights (mamba_run_persistent runs it), else untouched.
std::string shared_block(zamba2_engine * e, const step_view & v, int h, const zamba2_layer_ptrs & lw, bool fused,
                         const bf16 ** deferred_down = nullptr);
// rmsnorm of the residual stream (+ Tr on hybrid layers), then the Mamba2 mixer of layer L, added into s.x.
std::string mamba_layer(zamba2_engine * e, const step_view & v, int L, bool hybrid);

// ---- zamba2-decode-fused.cc (decode steps of <= ZK_FUSE_MAX_M sequences) -------------------------

// Whether this step runs fused: decode-only, <= ZK_FUSE_MAX_M sequences, skinny, split inputs, the state
// step on, ZAMBA2_FUSE_DECODE not 0, and dims the computed-input modes take.
bool fused_decode_step(const zamba2_engine * e, const step_view & v);
// The q/k/v input of the shared block: norm(X | E) as skinny_gemm computes it while loading.
skinny_gemm_args fused_block_input(zamba2_engine * e, const step_view & v, const zamba2_block_ptrs & bw);
// The shared block's MLP up to m [T, H] bf16: gate_up (+ LoRA) on the pre-FF norm of s.a, down on GELU(g) * u.
// With the invocation's decode weights dw (may be null): gate_up merged, and down_linear writing tr [T, H] fp32
// directly (no W_linear GEMV after it), or left to the caller (deferred_down, as shared_block's).
std::string fused_block_mlp(zamba2_engine * e, const step_view & v, const zamba2_block_ptrs & bw, const zamba2_adapter_ptrs & aw,
                            const zamba2_decode_weights * dw, const bf16 ** deferred_down);
// tr [T, H] fp32 = bf16(gelu(g) * u) . down_linear^T from s.gu: the MLP's last GEMV with merged weights.
std::string fused_block_down(zamba2_engine * e, const step_view & v, const bf16 * down_linear);
// The Mamba2 layer L in three kernels: in_proj (norm in, conv out), the gated state step, out_proj (gated norm in).
std::string mamba_layer_fused(zamba2_engine * e, const step_view & v, int L, bool hybrid);

// ---- zamba2-decode-persistent.cc (batch-1 decode steps) ------------------------------------------

// Whether this step runs its Mamba2 layers as persistent launches: a fused decode step of one sequence with the
// per-layer array made (ZAMBA2_PERSIST not 0).
bool persistent_decode_step(const zamba2_engine * e, const step_view & v, bool fused);
// Layers [L0, L1) (no hybrid layer after L0) in one launch, with the counters of launch site `run`; false when the
// kernel does not take the device or the dims (nothing enqueued: run the layers one by one). down_w (may be null):
// the hybrid block's deferred down GEMV (shared_block), run first in the same launch; where that launch is refused,
// run here as its own kernel either way, so tr is complete when this returns.
bool mamba_run_persistent(zamba2_engine * e, const step_view & v, int L0, int L1, bool hybrid, int run, const bf16 * down_w,
                          std::string & err);
