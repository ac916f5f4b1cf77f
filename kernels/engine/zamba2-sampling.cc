// GPU sampling of a step: the staged per-row parameters (zamba2_engine_stage_sampling) are uploaded
// after the forward pass, outside any CUDA graph (they change every step), sample_rows runs over the
// step's logits rows, and the tokens, logprobs and top-N lists come back with the step's outputs.
// The host keeps only what cannot live on the GPU: which tokens a sequence has seen (penalties).
#include <cmath>
#include <cstring>

#include "zamba2-engine-internal.h"

#define ZS_CUDA(call)                                                                              \
    do {                                                                                           \
        cudaError_t err_ = (call);                                                                 \
        if (err_ != cudaSuccess) return std::string(#call ": ") + cudaGetErrorString(err_);        \
    } while (0)

static constexpr size_t kHeaderWords = 4;
static constexpr size_t kParamWords = sizeof(zk_sample_params) / 4;
static constexpr size_t kBiasWords = sizeof(zk_bias_entry) / 4;
static constexpr size_t kPenaltyWords = sizeof(zk_penalty_entry) / 4;
static constexpr size_t kOutWordsPerRow = 2 + 2 * ZK_SAMPLE_MAX_TOP;

void zamba2_engine_use_device(const zamba2_engine * e) { cudaSetDevice(e->device); }

std::string zamba2_sampling_init(zamba2_engine * e) {
    zamba2_sampling_state & g = e->sampling;
    const size_t rows = e->cfg.max_seqs, V = e->cfg.vocab;
    ZS_CUDA(cudaMalloc(&g.work, rows * V * sizeof(float)));
    ZS_CUDA(cudaMalloc(&g.d_out, rows * kOutWordsPerRow * sizeof(int32_t)));
    ZS_CUDA(cudaMallocHost(&g.h_out, rows * kOutWordsPerRow * sizeof(int32_t)));
    e->device_bytes += rows * V * sizeof(float) + rows * kOutWordsPerRow * sizeof(int32_t);
    return "";
}

void zamba2_sampling_free(zamba2_engine * e) {
    zamba2_sampling_state & g = e->sampling;
    if (g.work) cudaFree(g.work);
    if (g.d_out) cudaFree(g.d_out);
    if (g.d_in) cudaFree(g.d_in);
    if (g.h_out) cudaFreeHost(g.h_out);
    if (g.h_in) cudaFreeHost(g.h_in);
    g = zamba2_sampling_state{};
}

std::string zamba2_engine_stage_sampling(zamba2_engine * e, const int32_t * words, size_t len) {
    zamba2_engine_use_device(e);
    zamba2_sampling_state & g = e->sampling;
    g.n_words = 0;
    g.n_rows = 0;
    if (len == 0) return "";
    if (len < kHeaderWords) return "sampling: input shorter than its header";
    const int64_t N = words[0], P = words[1], B = words[2];
    if (N < 0 || P < 0 || B < 0) return "sampling: negative counts";
    if (N > e->cfg.max_seqs) return "sampling: more rows than max sequences per step";
    const size_t need = kHeaderWords + (size_t) N * kParamWords + (size_t) B * kBiasWords + (size_t) P * kPenaltyWords;
    if (need != len) return "sampling: input length does not match its header";
    const auto * params = reinterpret_cast<const zk_sample_params *>(words + kHeaderWords);
    for (int64_t i = 0; i < N; ++i) {
        const zk_sample_params & p = params[i];
        if (p.penalty_start < 0 || p.penalty_count < 0 || (int64_t) p.penalty_start + p.penalty_count > P) return "sampling: penalty range out of bounds";
        if (p.bias_start < 0 || p.bias_count < 0 || (int64_t) p.bias_start + p.bias_count > B) return "sampling: bias range out of bounds";
        if (p.n_top < 0 || p.n_top > ZK_SAMPLE_MAX_TOP) return "sampling: top logprobs must be 0..20";
        if (!std::isfinite(p.temperature) || !std::isfinite(p.top_p) || !std::isfinite(p.min_p) ||
            !std::isfinite(p.repetition_penalty) || !(p.repetition_penalty > 0)) {
            return "sampling: temperature, top_p, min_p and repetition penalty must be finite (repetition > 0)";
        }
    }
    if (len > g.h_in_cap) {
        if (g.h_in) cudaFreeHost(g.h_in);
        g.h_in = nullptr;
        g.h_in_cap = 0;
        const size_t cap = len * 2;
        ZS_CUDA(cudaMallocHost(&g.h_in, cap * sizeof(int32_t)));
        g.h_in_cap = cap;
    }
    if (len > g.d_in_cap) {
        if (g.d_in) cudaFree(g.d_in);
        g.d_in = nullptr;
        g.d_in_cap = 0;
        const size_t cap = len * 2;
        ZS_CUDA(cudaMalloc(&g.d_in, cap * sizeof(int32_t)));
        g.d_in_cap = cap;
    }
    std::memcpy(g.h_in, words, len * sizeof(int32_t));
    g.n_words = len;
    g.n_rows = (int) N;
    return "";
}

std::string zamba2_sampling_enqueue(zamba2_engine * e, int n_out_rows) {
    zamba2_sampling_state & g = e->sampling;
    g.n_done = 0;
    const size_t n_words = g.n_words;
    const int N = g.n_rows;
    g.n_words = 0;  // consumed, whatever happens below
    g.n_rows = 0;
    if (n_words == 0 || N == 0) return "";
    const int32_t * h = g.h_in;
    const auto * params = reinterpret_cast<const zk_sample_params *>(h + kHeaderWords);
    for (int i = 0; i < N; ++i) {
        if (params[i].logits_row < 0 || params[i].logits_row >= n_out_rows) return "sampling: logits row out of the step's output rows";
    }
    const int B = h[2];
    int32_t * d = g.d_in;
    ZS_CUDA(cudaMemcpyAsync(d, h, n_words * sizeof(int32_t), cudaMemcpyHostToDevice, e->stream));
    const auto * d_params = reinterpret_cast<const zk_sample_params *>(d + kHeaderWords);
    const auto * d_bias = reinterpret_cast<const zk_bias_entry *>(d + kHeaderWords + (size_t) N * kParamWords);
    const auto * d_pen = reinterpret_cast<const zk_penalty_entry *>(d + kHeaderWords + (size_t) N * kParamWords + (size_t) B * kBiasWords);
    int32_t * out = g.d_out;
    sample_rows(out, reinterpret_cast<float *>(out + N), out + 2 * (size_t) N,
                reinterpret_cast<float *>(out + (2 + ZK_SAMPLE_MAX_TOP) * (size_t) N), g.work, e->s.logits, d_params, d_pen,
                d_bias, N, e->cfg.vocab, e->stream);
    ZS_CUDA(cudaGetLastError());
    zamba2_prof_mark(e, PROF_LOGITS);
    ZS_CUDA(cudaMemcpyAsync(g.h_out, out, (size_t) N * kOutWordsPerRow * sizeof(int32_t), cudaMemcpyDeviceToHost, e->stream));
    g.n_done = N;
    return "";
}

void zamba2_sampling_collect(zamba2_engine * e, zamba2_step_output & out) {
    zamba2_sampling_state & g = e->sampling;
    const size_t N = g.n_done;
    g.n_done = 0;
    const int32_t * h = g.h_out;
    const float * hf = reinterpret_cast<const float *>(h);
    out.sampled_token.assign(h, h + N);
    out.sampled_logprob.assign(hf + N, hf + 2 * N);
    out.top_ids.assign(h + 2 * N, h + (2 + ZK_SAMPLE_MAX_TOP) * N);
    out.top_logprobs.assign(hf + (2 + ZK_SAMPLE_MAX_TOP) * N, hf + kOutWordsPerRow * N);
}
