// The Zamba2 forward pass on one GPU: weights, state/KV pools and one step over a packed varlen
// batch (decodes and prefill chunks together). Plain C++ over the kernel launchers and the GEMM
// wrapper; used by the Node-API addon (kernels/addon/) and the benchmark (kernels/bench/).
//
// Ownership: the engine owns every device byte (weights, pools, scratch). Callers own ids: which
// slot and which pages belong to a sequence (src/cache/). Call order, from one thread at a time:
//   zamba2_engine_create -> zamba2_engine_set_weight* (or _fill_random) -> zamba2_engine_init_cache
//   -> zamba2_engine_step* / zamba2_engine_copy_slot -> zamba2_engine_destroy
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

struct zamba2_config {
    int vocab = 0, hidden = 0, n_layers = 0;
    std::vector<int> hybrid_layer_ids;  // ascending layer ids of the hybrid layers
    std::vector<int> hybrid_block_ids;  // shared block used by hybrid invocation h
    int n_mem_blocks = 1;
    int heads = 0, head_dim = 0, kv_channels = 0, ffn = 0;
    int d_state = 0, ngroups = 1, n_mamba_heads = 0, mamba_head_dim = 0, d_inner = 0;
    int adapter_rank = 0;
    bool use_attn_adapter = false, use_mlp_adapter = true, use_rope = false, use_conv_bias = true;
    bool tie_embeddings = true;
    float rope_theta = 10000.0f, eps = 1e-5f;
    // step limits (scratch is sized from them once)
    int max_tokens = 2048, max_seqs = 256, max_model_len = 4096;
    // CUDA device of the engine (--data-parallel replicas use 0..N-1); checked against the device count
    int device_index = 0;

    int conv_dim() const { return d_inner + 2 * ngroups * d_state; }
    int in_proj_out() const { return 2 * d_inner + 2 * ngroups * d_state + n_mamba_heads; }
    int max_pages_per_seq() const { return (max_model_len + 15) / 16; }
    size_t state_slot_bytes() const;
    size_t kv_page_bytes() const;
};

struct zamba2_engine;

// A weight the engine expects: name, element count, stored as f32 (small per-head vectors) or bf16.
struct zamba2_weight_spec {
    std::string name;
    size_t numel;
    bool f32;
};

// Returns nullptr and sets *error on failure.
zamba2_engine * zamba2_engine_create(const zamba2_config & cfg, std::string * error);
void zamba2_engine_destroy(zamba2_engine * e);
const std::vector<zamba2_weight_spec> & zamba2_engine_weight_specs(const zamba2_engine * e);

// Upload one weight; src_dtype is 0 = bf16, 1 = f16, 2 = f32 (converted on the host). Returns "" or an error.
std::string zamba2_engine_set_weight(zamba2_engine * e, const std::string & name, int src_dtype, const void * data,
                                     size_t numel);
// Random weights for benchmarks (shapes of a real checkpoint, values that keep activations finite).
std::string zamba2_engine_fill_random(zamba2_engine * e, uint64_t seed);
// Names of weights never set ("" when all are).
std::string zamba2_engine_missing_weights(const zamba2_engine * e);

std::string zamba2_engine_init_cache(zamba2_engine * e, int slot_count, int page_count);
std::string zamba2_engine_copy_slot(zamba2_engine * e, int src, int dst);

// The packed step input (all int32, built by src/engine/cuda/step-packing.ts):
//   header [8]: n_seqs S, n_tokens T, n_out O, n_reset R, want_logits, bt_width W, 0, 0
//   tokens[T] positions[T] token_seq[T] kv_index[T] cu_seqlens[S+1] seq_slot[S]
//   block_tables[S*W] out_rows[O] reset_slots[R]
struct zamba2_step_output {
    std::vector<int32_t> argmax;       // [O]
    std::vector<float> max_logit;      // [O]
    std::vector<float> lse;            // [O]
    std::vector<float> logits;         // [O * V] when want_logits, else empty
    // GPU sampling of the staged rows (zamba2_engine_stage_sampling), N = its row count (else empty)
    std::vector<int32_t> sampled_token;     // [N]
    std::vector<float> sampled_logprob;     // [N] raw log-softmax of the token
    std::vector<int32_t> top_ids;           // [N * 20] first n_top of each row, then -1
    std::vector<float> top_logprobs;        // [N * 20]
    double compute_ms = 0;
};
std::string zamba2_engine_step(zamba2_engine * e, const int32_t * packed, size_t packed_len, zamba2_step_output & out);

// Sampling input of the next step (int32 words, built by src/engine/cuda/step-packing.ts):
//   header [4]: n_rows N, n_penalty P, n_bias B, 0
//   params [N x 24]  (struct zk_sample_params, include/zamba2-kernels.h; logits_row indexes out_rows)
//   bias [B x 4]     (struct zk_bias_entry)      penalties [P x 2] (struct zk_penalty_entry)
// Validated and copied; replaces anything staged before and is consumed by the next step (len 0:
// nothing). Call it before every step from the thread that runs the step.
std::string zamba2_engine_stage_sampling(zamba2_engine * e, const int32_t * words, size_t len);

// Makes the engine's device current on the calling thread (every thread that touches the engine:
// the engine functions call it themselves except zamba2_engine_step, whose caller does).
void zamba2_engine_use_device(const zamba2_engine * e);

// GPU time per op category summed since the last call (needs ZAMBA2_PROFILE=1 at creation); resets.
std::string zamba2_engine_profile_report(zamba2_engine * e);

// Device memory (bytes) in use by weights, pools and scratch.
size_t zamba2_engine_device_bytes(const zamba2_engine * e);
