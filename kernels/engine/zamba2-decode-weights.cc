// The fused decode path's own weights per hybrid invocation h (zamba2_decode_weights), made at weight resolution:
//
//   q, k, v, gate_up:  W + w1 . w0   the block weight with invocation h's LoRA adapter merged in
//   down_linear:       W_linear . W_down   the invocation's output projection folded into the block's down
//
// Why: at batch 1 a decode step is a chain of latency-bound GEMVs. The adapters cost two extra launches per
// invocation (x . w0^T for q/k/v and for gate_up) and the fold one more (the 8 MB W_linear GEMV of the 1.2B),
// 18 launches per 1.2B step, for weights the step reads anyway. The price is GPU memory (1.2B: 1.2 GB for six
// invocations; 7B: ~8 GB), so they are only made when they fit beside a reserve, and one bf16 rounding: the
// merged weight is rounded once instead of the adapter's product being rounded separately (the goldens measure it).
// Larger steps keep the block weights and adapters: they have FP8 copies for the lo term (zamba2-fp8-copies.cc).
// ZAMBA2_DECODE_MERGE=0 turns this off. The buffers are allocated once and refilled on every resolution, so
// captured decode graphs keep valid pointers when a weight is uploaded again.
#include <cstdio>

#include "zamba2-engine-internal.h"

#define ZD_CUDA(call)                                                                              \
    do {                                                                                           \
        cudaError_t err_ = (call);                                                                 \
        if (err_ != cudaSuccess) return std::string(#call ": ") + cudaGetErrorString(err_);        \
    } while (0)

namespace {

struct decode_weight_plan {
    bool attn = false, mlp = false;  // adapters present for every invocation
    size_t bytes = 0;                // all invocations
};

decode_weight_plan plan_decode_weights(const zamba2_engine * e) {
    const zamba2_config & c = e->cfg;
    const size_t H = c.hidden, H2 = 2 * c.hidden, F = c.ffn;
    decode_weight_plan p;
    p.attn = c.use_attn_adapter && c.adapter_rank > 0;
    p.mlp = c.use_mlp_adapter && c.adapter_rank > 0;
    const size_t per = (p.attn ? 3 * H2 * H2 : 0) + (p.mlp ? 2 * F * H : 0) + H * F;  // elements per invocation
    p.bytes = per * c.hybrid_layer_ids.size() * sizeof(bf16);
    return p;
}

// The same reserve as the FP8 copies (zamba2_query_free_memory) left free after the buffers.
bool decode_weights_fit(size_t bytes) {
    zamba2_free_memory m;
    if (!zamba2_query_free_memory(m)) return false;  // no answer: the plain path needs nothing extra
    if (bytes + m.reserve_bytes <= m.free_bytes) return true;
    std::fprintf(stderr,
                 "zamba2 cuda: decode runs the shared block with separate adapters: its merged weights (%.2f GB) "
                 "would leave less than %.2f GB of the %.2f GB free\n",
                 bytes / 1e9, m.reserve_bytes / 1e9, m.free_bytes / 1e9);
    return false;
}

std::string alloc_decode(zamba2_engine * e, bf16 ** p, size_t n) {
    ZD_CUDA(cudaMalloc(reinterpret_cast<void **>(p), n * sizeof(bf16)));
    e->device_bytes += n * sizeof(bf16);
    return "";
}

}  // namespace

void zamba2_free_decode_weights(zamba2_engine * e) {
    for (zamba2_decode_weights & d : e->decode_w) {
        for (bf16 * p : {d.q, d.k, d.v, d.gate_up, d.down_linear}) if (p) cudaFree(p);
    }
    e->decode_w.clear();
}

std::string zamba2_make_decode_weights(zamba2_engine * e) {
    const zamba2_config & c = e->cfg;
    const int H = c.hidden, H2 = 2 * c.hidden, F = c.ffn, r = c.adapter_rank;
    const size_t n_inv = c.hybrid_layer_ids.size();
    if (!e->merge_decode || n_inv == 0) return "";
    const decode_weight_plan plan = plan_decode_weights(e);
    if (e->decode_w.empty()) {  // first resolution: allocate (or stay without them)
        if (!decode_weights_fit(plan.bytes)) {
            e->merge_decode = false;
            return "";
        }
        e->decode_w.resize(n_inv);
        for (zamba2_decode_weights & d : e->decode_w) {
            std::string err;
            if (plan.attn) {
                for (bf16 ** p : {&d.q, &d.k, &d.v}) if (err.empty()) err = alloc_decode(e, p, (size_t) H2 * H2);
            }
            if (err.empty() && plan.mlp) err = alloc_decode(e, &d.gate_up, (size_t) 2 * F * H);
            if (err.empty()) err = alloc_decode(e, &d.down_linear, (size_t) H * F);
            if (!err.empty()) {
                zamba2_free_decode_weights(e);
                e->merge_decode = false;
                cudaGetLastError();
                std::fprintf(stderr, "zamba2 cuda: decode weights not allocated (%s): separate adapters\n", err.c_str());
                return "";
            }
        }
    }
    cudaStream_t st = e->stream;
    for (size_t h = 0; h < n_inv; ++h) {
        zamba2_decode_weights & d = e->decode_w[h];
        const zamba2_block_ptrs & bw = e->blocks[c.hybrid_block_ids[h]];
        const zamba2_adapter_ptrs & aw = e->adapters[h];
        const zamba2_layer_ptrs & lw = e->layers[c.hybrid_layer_ids[h]];
        bool ok = true;
        if (d.q) {  // q/k/v: [2H, 2H] + w1 [2H, r] . w0 [r, 2H]
            ok = ok && weight_merge_bf16(d.q, bw.q, aw.q1, aw.q0, H2, r, H2, st);
            ok = ok && weight_merge_bf16(d.k, bw.k, aw.k1, aw.k0, H2, r, H2, st);
            ok = ok && weight_merge_bf16(d.v, bw.v, aw.v1, aw.v0, H2, r, H2, st);
        }
        if (d.gate_up) ok = ok && weight_merge_bf16(d.gate_up, bw.gate_up, aw.gu1, aw.gu0, 2 * F, r, H, st);  // [2F, H]
        ok = ok && weight_merge_bf16(d.down_linear, nullptr, lw.linear, bw.down, H, H, F, st);  // [H, H] . [H, F]
        if (!ok) return "decode weights: an adapter or weight is missing";
    }
    ZD_CUDA(cudaGetLastError());
    ZD_CUDA(cudaStreamSynchronize(st));
    return "";
}
