// Internal layout of zamba2_engine, shared by zamba2-engine.cc (weights, pools) and
// zamba2-forward.cc (the step). Not part of the public surface.
#pragma once

#include <unordered_map>
#include <vector>

#include "../include/zamba2-fp8.h"
#include "../include/zamba2-gemm.h"
#include "../include/zamba2-kernels.h"
#include "zamba2-engine.h"

struct zamba2_tensor {
    void * ptr = nullptr;
    size_t numel = 0;
    bool f32 = false;
    bool loaded = false;
    uint8_t * fp8 = nullptr;  // e4m3 copy W / fp8_scale for the lo term of large steps (lo_fp8 weights only)
    float fp8_scale = 0.0f;
};

// The FP8 copy of a bf16 weight (see zamba2-fp8.h), looked up by the bf16 pointer.
struct zamba2_fp8_weight {
    const uint8_t * q = nullptr;
    float scale = 0.0f;
};

struct zamba2_layer_ptrs {
    const bf16 *input_norm, *in_proj, *conv_w, *conv_b, *norm, *out_proj, *linear;
    const float *dt_bias, *a_log, *d;
};

struct zamba2_block_ptrs {
    const bf16 *input_norm, *q, *k, *v, *o, *pre_ff_norm, *gate_up, *down;
};

struct zamba2_adapter_ptrs {
    const bf16 *q0, *q1, *k0, *k1, *v0, *v1, *gu0, *gu1;  // nullptr when absent
};

// Per hybrid invocation, the weights the fused decode path reads instead of the block's (zamba2-decode-weights.cc):
// q/k/v/gate_up with the invocation's LoRA adapters merged in, and W_linear . W_down. nullptr: not made.
struct zamba2_decode_weights {
    bf16 *q = nullptr, *k = nullptr, *v = nullptr, *gate_up = nullptr, *down_linear = nullptr;
};

// Scratch activations, sized for cfg.max_tokens tokens (T). Activations are fp32; GEMM inputs are bf16,
// most of them split ([2T, K]: hi rows then lo rows, see rms_norm_f32) so the GEMM sees fp32-accurate
// inputs; the split GEMM's [2T, N] fp32 output lands in `ysplit` and is summed by combine_halves.
#define ZK_SKINNY_WORK_FLOATS ((int64_t) 1 << 21)
#define ZK_SKINNY_COUNTERS 8192

#define ZK_FUSE_MAX_M 8  // rows of the fused decode path (skinny_gemm's computed-input modes)

struct zamba2_scratch {
    float *x, *tr, *zx, *xbc, *q, *k, *vv, *attf, *a, *gu, *y;   // fp32 activations
    bf16 *u, *u2, *v, *att, *vn;                                 // split GEMM inputs [2T, K]
    bf16 *e, *act, *m, *lora;                                    // bf16: embeddings (exact), unsplit GEMM inputs
    uint8_t *lo8;                                                // [T, max K] e4m3 lo rows of a split input (lo_fp8)
    const bf16 *lo_rows_for;                                     // the split input whose bf16 lo rows match lo8
    float *ysplit;                                               // [2T, max N] split GEMM output
    float *lora3;                                                // [64, 3r] LoRA intermediates of skinny steps
    float *skinny_work;                                          // split-K partial tiles of skinny_gemm
    int32_t *skinny_counters;                                    // its per-tile counters (zeroed at allocation)
    float *gsq;        // [ZK_FUSE_MAX_M, d_inner] chunk sums of g^2 from the gated state step
    float *hl;         // [max_tokens, H] rows picked for logits
    bf16 *hn;          // [max_tokens, H] normalized
    float *logits;     // [max_tokens, V]
    int32_t *argmax;   // [max_tokens]
    float *max_logit, *lse;
    int32_t *packed;   // device copy of the packed step input
    size_t packed_cap;
};

// GPU sampling of a step (zamba2-sampling.cc): the staged input of the next step and its buffers.
struct zamba2_sampling_state {
    int32_t * h_in = nullptr;   // pinned copy of the staged input (words; layout: zamba2-engine.h)
    size_t h_in_cap = 0;
    size_t n_words = 0;         // staged length; 0 = nothing staged
    int n_rows = 0;             // rows of the staged input
    int n_done = 0;             // rows sampled by the last step (outputs in h_out)
    int32_t * d_in = nullptr;   // device copy of the input
    size_t d_in_cap = 0;
    float * work = nullptr;     // [max_seqs, V] processed logits
    int32_t * d_out = nullptr;  // [max_seqs * (2 + 2 * ZK_SAMPLE_MAX_TOP)] token, logprob, top ids, top logprobs
    int32_t * h_out = nullptr;  // pinned, same size
};

struct zamba2_engine {
    zamba2_config cfg;
    int device = 0;  // CUDA device of every allocation and launch (cfg.device_index)
    zamba2_sampling_state sampling;
    std::vector<zamba2_weight_spec> specs;
    std::unordered_map<std::string, zamba2_tensor> weights;
    std::vector<zamba2_layer_ptrs> layers;
    std::vector<zamba2_block_ptrs> blocks;
    std::vector<zamba2_adapter_ptrs> adapters;
    std::vector<zamba2_decode_weights> decode_w;  // per hybrid invocation; empty: none made
    bool merge_decode = true;                     // make them (ZAMBA2_DECODE_MERGE=0: no; off when they do not fit)
    const bf16 *embed = nullptr, *final_norm = nullptr, *lm_head = nullptr;
    std::unordered_map<const bf16 *, zamba2_fp8_weight> fp8_of;  // built by zamba2_resolve_weights
    bool resolved = false;

    // pools
    int slot_count = 0, page_count = 0;
    float * conv_pool = nullptr;  // [layers, slots, 3, conv_dim] fp32 (holds fp32 in_proj outputs)
    float * ssm_pool = nullptr;   // [layers, slots, nh, P, N]
    bf16 * kv_pool = nullptr;     // [n_hybrid, 2, pages, heads, 16, D]

    zamba2_scratch s{};
    cudaStream_t stream = nullptr;
    cudaEvent_t ev_start = nullptr, ev_stop = nullptr;
    gemm_context * gemm = nullptr;
    // pinned host staging for the step input and outputs
    int32_t * h_packed = nullptr;
    size_t h_packed_cap = 0;
    void * h_out = nullptr;
    size_t device_bytes = 0;

    // CUDA graphs of decode-only steps, keyed by (S, O): captured on a shape's second sighting
    std::unordered_map<uint64_t, cudaGraphExec_t> graphs;
    std::unordered_map<uint64_t, int> graph_seen;
    bool graphs_enabled = true;
    // GEMM inputs split into bf16 hi + lo rows (fp32-accurate GEMMs; ZAMBA2_SPLIT_GEMM=0 turns it off)
    bool split_inputs = true;
    // GEMMs of steps with at most this many tokens go through skinny_gemm (tensor cores, weights read once,
    // fp32-exact inputs without combine_halves); larger steps through cuBLASLt. ZAMBA2_SKINNY_MAX_M (0..64).
    // 8 since run 7: same speed as cuBLASLt at b1 (2.57 vs 2.55 ms), slower from 16 rows up (b16 3.83 vs
    // 3.49 ms), and more exact (golden b 6.9e-3 vs 1.1e-2).
    int skinny_max_m = 8;
    // Steps of at least lo_fp8_min_t tokens compute split GEMMs as hi . W (bf16) + lo8 . W8 (FP8, see
    // zamba2-fp8.h): compute-bound there, so the lo term costs half. Below it the weights' extra FP8 read
    // would cost more than it saves. Needs FP8 tensor cores (sm_89+); ZAMBA2_LO_FP8=0 turns it off.
    bool lo_fp8 = true;
    int lo_fp8_min_t = 256;
    // ZAMBA2_SPLIT_Z=0: in_proj's z rows (the gate, d_inner of them) skip the lo term on FP8 steps
    bool split_z = true;
    // decode-only steps update the SSM state with mamba2_state_step (default; ZAMBA2_DECODE_STEP=0: the scan)
    bool use_decode_step = true;
    // decode steps of <= ZK_FUSE_MAX_M sequences run zamba2-decode-fused.cc (ZAMBA2_FUSE_DECODE=0: off)
    bool fuse_decode = true;
    // skinny_gemm issues no weight load before its PDL wait (ZAMBA2_SKINNY_PRELOAD=0; for measuring)
    bool skinny_late_weights = false;
    // skinny_gemm loads x from global memory in its main loop instead of staging it (ZAMBA2_SKINNY_STAGE=0)
    bool skinny_no_stage = false;
    // skinny_gemm preloads one weight group before its PDL wait, not two (ZAMBA2_SKINNY_GROUP2=0)
    bool skinny_no_second_group = false;
    // K slices per skinny_gemm tile (ZAMBA2_SKINNY_SPLIT_K; 0: chosen per shape)
    int skinny_split_k = 0;
    bool skinny_no_half_tiles = false;  // ZAMBA2_SKINNY_HALF=0: split-K 16-feature tiles instead of half tiles
    bool skinny_no_cross_preload = false;  // ZAMBA2_SKINNY_CROSS=0: no item issues its CTA's next item's first weights
    bool skinny_no_conv_stage = false;  // ZAMBA2_SKINNY_CONV_STAGE=0: the conv epilogue loads its operands at the end
    // batch-1 decode runs each stretch of Mamba2 layers between hybrid layers as one persistent launch
    // (zamba2-decode-persistent.cc; run 100: 1.39 against the fused per-layer kernels' 1.51 ms per b1 step);
    // ZAMBA2_PERSIST=0: off
    bool persist_decode = true;
    bool persist_refused = false;  // a launch was refused: the per-layer kernels from then on (mamba_run_persistent)
    bool persist_down = true;  // ZAMBA2_PERSIST_DOWN; off from a refusal of the launch with the down phase on
    int persist_max_runs = 1 << 20;  // ZAMBA2_PERSIST_RUNS: only the first N runs of layers (measuring)
    // the launches' shared-memory carveout preference (zk_smem_carveout, set per step): ZAMBA2_SMEM_CARVEOUT=P for
    // every step; default none, and 50 on decode-only steps with the persistent decode (the GEMVs after it get
    // their L1 back)
    int carveout_all = -1, carveout_decode = -1;
    std::vector<mamba2_persist_layer> persist_layers;  // [n_layers]: device addresses of weights and pools per layer
    unsigned * persist_sync = nullptr;                // device [2 (hybrid layers + 1)]: barrier counters per run
    // ZAMBA2_SSD=1: steps with prefill chunks run the chunked SSD scan (mamba2_ssd_varlen)
    bool use_ssd = false;
    int ssd_max_chunks = 0;
    int ssd_n_chunks = 0;          // chunks of the current step (0: this step uses the sequential scan)
    // Steps with prefill chunks: the sequences with one token in the step (decodes) take the state step instead of a
    // 64-token SSD chunk each (ZAMBA2_MIXED_STEP=0: SSD chunks for them too). ssd_n_one: their count this step.
    bool ssd_one_by_step = false;
    int ssd_n_one = 0;
    float * ssd_states = nullptr;  // [max_chunks, G, 64, 64]: C.B^T per chunk and group
    float * ssd_dt = nullptr;      // [max_chunks, nh, 64]
    float * ssd_lam = nullptr;     // [max_chunks, nh, 64]
    // device: t0[max_chunks] len[max_chunks] seq_chunk0[max_seqs] seq_nchunks[max_seqs], then the one-token
    // sequences' token rows [max_seqs] and slots [max_seqs]
    int32_t * ssd_chunks = nullptr;
    int32_t * h_ssd_chunks = nullptr;  // pinned staging of the same

    // ZAMBA2_PROFILE=1: an event after each op, GPU time summed per op category (graphs off)
    bool profiling = false;
    std::vector<cudaEvent_t> prof_events;
    std::vector<int> prof_cats;
    size_t prof_used = 0;
    double prof_ms[16] = {};
    int prof_steps = 0;

    size_t conv_layer_elems() const { return (size_t) slot_count * 3 * cfg.conv_dim(); }
    size_t ssm_layer_elems() const {
        return (size_t) slot_count * cfg.n_mamba_heads * cfg.mamba_head_dim * cfg.d_state;
    }
    size_t kv_layer_elems() const { return (size_t) page_count * cfg.heads * 16 * cfg.head_dim; }
};

std::string zamba2_resolve_weights(zamba2_engine * e);

// zamba2-switches.cc: sets e's switches (and the process-wide PDL switch) from the ZAMBA2_* environment variables.
void zamba2_read_switches(zamba2_engine * e);

// zamba2-sampling.cc. init/free: buffers at create/destroy. enqueue: after the forward (outside any
// CUDA graph, the parameters change every step), uploads the staged input, runs sample_rows over the
// step's logits rows [0, n_out_rows) and queues the copy back; consumes the staged input.
// collect: after the stream sync, fills out.sampled_* (cleared when nothing was sampled).
std::string zamba2_sampling_init(zamba2_engine * e);
void zamba2_sampling_free(zamba2_engine * e);
std::string zamba2_sampling_enqueue(zamba2_engine * e, int n_out_rows);
void zamba2_sampling_collect(zamba2_engine * e, zamba2_step_output & out);

enum zamba2_prof_cat { PROF_GEMM, PROF_NORM, PROF_CONV, PROF_SCAN, PROF_ATTN, PROF_ELEM, PROF_LOGITS, PROF_COPY, PROF_N };
// Records an event closing an op of category `cat` (no-op unless profiling).
void zamba2_prof_mark(zamba2_engine * e, int cat);

// ---- zamba2-decode-weights.cc ----
// At weight resolution: (re)computes e->decode_w (allocated on the first call when memory allows); "" or the error.
std::string zamba2_make_decode_weights(zamba2_engine * e);
void zamba2_free_decode_weights(zamba2_engine * e);
// The persistent decode's per-layer array (after the weights and the pools; "" or the error) and its release.
std::string zamba2_make_persist(zamba2_engine * e);
void zamba2_free_persist(zamba2_engine * e);

// Free device memory and the reserve an optional allocation (FP8 copies, decode weights) must leave for scratch,
// pools and graphs: max(2 GiB, 10% of the device). False when the driver cannot tell (the caller picks its answer).
struct zamba2_free_memory {
    size_t free_bytes = 0, reserve_bytes = 0;
};
bool zamba2_query_free_memory(zamba2_free_memory & m);

// ---- zamba2-fp8-copies.cc ----
// Weights multiplied by split inputs: they get an FP8 copy (zamba2_tensor::fp8) when lo_fp8 is on.
bool zamba2_wants_fp8(const std::string & name);
// Whether the copies fit in GPU memory beside the weights and a reserve (called before allocation).
bool zamba2_fp8_copies_fit(const zamba2_engine * e);
// t.fp8 = e4m3(W / scale), scale = max|W| / 448, from the uploaded bf16 weight ("" or the error).
std::string zamba2_make_fp8_copy(zamba2_engine * e, zamba2_tensor & t);
