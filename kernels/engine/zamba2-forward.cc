// One engine step: the Zamba2 forward pass (spec §3) over a packed varlen batch, then logits and
// greedy picks for the requested rows. All work is enqueued on the engine's stream; the call
// returns after the outputs are on the host.
#include <cmath>
#include <cstring>

#include "zamba2-forward.h"

#include "../include/zamba2-launch.cuh"

#define ZF_CUDA(call)                                                                              \
    do {                                                                                           \
        cudaError_t err_ = (call);                                                                 \
        if (err_ != cudaSuccess) return std::string(#call ": ") + cudaGetErrorString(err_);        \
    } while (0)

// Offsets of the packed arrays (same order on host and device).
static size_t step_layout(const int32_t * hdr, size_t off[9]) {
    const size_t S = hdr[0], T = hdr[1], O = hdr[2], R = hdr[3], W = hdr[5];
    const size_t len[9] = {T, T, T, T, S + 1, S, S * W, O, R};
    size_t at = 8;
    for (int i = 0; i < 9; ++i) { off[i] = at; at += len[i]; }
    return at;
}

static step_view make_view(const int32_t * base, const int32_t * hdr, const size_t off[9]) {
    return {hdr[0], hdr[1], hdr[2], hdr[3], hdr[4], hdr[5],
            base + off[0], base + off[1], base + off[2], base + off[3], base + off[4],
            base + off[5], base + off[6], base + off[7], base + off[8]};
}

static std::string check_step(const zamba2_engine * e, const int32_t * p, size_t len, size_t need) {
    const zamba2_config & c = e->cfg;
    if (len < 8 || need != len) return "step: packed input has the wrong length";
    const int S = p[0], T = p[1], O = p[2], R = p[3], W = p[5];
    if (S < 0 || S > c.max_seqs) return "step: too many sequences";
    if (T < 0 || T > c.max_tokens) return "step: too many tokens";
    if (O < 0 || O > c.max_tokens || R < 0 || R > e->slot_count) return "step: bad output/reset counts";
    if (W < 0 || W > c.max_pages_per_seq()) return "step: block table too wide";
    size_t off[9];
    step_layout(p, off);
    const step_view v = make_view(p, p, off);
    if (v.cu_seqlens[0] != 0 || v.cu_seqlens[S] != T) return "step: cu_seqlens do not cover the tokens";
    for (int s = 0; s < S; ++s) {
        if (v.cu_seqlens[s + 1] < v.cu_seqlens[s]) return "step: cu_seqlens not ascending";
        if (v.seq_slot[s] < 0 || v.seq_slot[s] >= e->slot_count) return "step: slot out of range";
    }
    const long long kv_cap = (long long) e->page_count * 16;
    for (int t = 0; t < T; ++t) {
        if (v.tokens[t] < 0 || v.tokens[t] >= c.vocab) return "step: token id out of range";
        if (v.positions[t] < 0 || v.positions[t] >= c.max_model_len) return "step: position out of range";
        if (v.token_seq[t] < 0 || v.token_seq[t] >= S) return "step: token_seq out of range";
        if (!c.hybrid_layer_ids.empty() && (v.kv_index[t] < 0 || v.kv_index[t] >= kv_cap)) return "step: kv index out of range";
        if (v.positions[t] / 16 >= W && !c.hybrid_layer_ids.empty()) return "step: position beyond block table";
    }
    if (!c.hybrid_layer_ids.empty()) {
        for (size_t i = 0; i < (size_t) S * W; ++i) {
            if (v.block_tables[i] < -1 || v.block_tables[i] >= e->page_count) return "step: page id out of range";
        }
    }
    for (int i = 0; i < O; ++i) if (v.out_rows[i] < 0 || v.out_rows[i] >= T) return "step: output row out of range";
    for (int i = 0; i < R; ++i) if (v.reset_slots[i] < 0 || v.reset_slots[i] >= e->slot_count) return "step: reset slot out of range";
    return "";
}

// Enqueues the whole forward (layers, final norm, logits, argmax) for the packed batch `v`.
static std::string enqueue_forward(zamba2_engine * e, const step_view & v) {
    const zamba2_config & c = e->cfg;
    zamba2_scratch & s = e->s;
    cudaStream_t st = e->stream;
    std::string err;
    zamba2_prof_mark(e, -1);
    const int T = v.T, H = c.hidden;
    if (T > 0) {
        embedding_gather(s.e, e->embed, v.tokens, T, H, st);                              // e: [T, H] bf16 (exact)
        embedding_gather(s.x, e->embed, v.tokens, T, H, st);                              // x: [T, H] fp32
        zamba2_prof_mark(e, PROF_ELEM);
        const bool fused = fused_decode_step(e, v);
        const bool persist = persistent_decode_step(e, v, fused);
        const std::vector<int> & hyb = c.hybrid_layer_ids;
        size_t h = 0;
        for (int L = 0, run = 0; L < c.n_layers;) {
            const zamba2_layer_ptrs & lw = e->layers[L];
            const bool hybrid = h < hyb.size() && hyb[h] == L;
            const bf16 * down = nullptr;  // the block's last GEMV, left to the persistent launch
            if (hybrid) {
                err = shared_block(e, v, (int) h, lw, fused, persist && e->persist_down ? &down : nullptr);
                if (!err.empty()) return err;
                ++h;
            }
            if (persist) {  // layers up to the next hybrid layer in one launch
                const int L1 = h < hyb.size() ? hyb[h] : c.n_layers;
                const bool ran = mamba_run_persistent(e, v, L, L1, hybrid, run++, down, err);
                if (!err.empty()) return err;
                if (ran) {
                    L = L1;
                    continue;
                }
            }
            err = fused ? mamba_layer_fused(e, v, L, hybrid) : mamba_layer(e, v, L, hybrid);
            if (!err.empty()) return err;
            ++L;
        }
    }
    const int O = v.O;
    if (O > 0) {
        gather_rows(s.hl, s.x, v.out_rows, O, H, st);                                       // hl: [O, H]
        rms_norm_f32(s.hn, nullptr, s.hl, nullptr, nullptr, e->final_norm, O, H, 0, c.eps, st);  // hn: [O, H]
        ZF_GEMM(s.logits, GEMM_OUT_F32, c.vocab, s.hn, H, e->lm_head, O, c.vocab, H, 0.0f, st);  // logits: [O, V]
        logits_argmax_lse(s.argmax, s.max_logit, s.lse, s.logits, O, c.vocab, st);
        zamba2_prof_mark(e, PROF_LOGITS);
    }
    return "";
}

// Decode-only steps (one token per sequence) replay a CUDA graph per (S, O) after the first
// sighting of that shape; everything else runs eagerly. The graph reads the same device buffers
// (packed input at fixed offsets for the shape, pools, scratch), so only the H2D copy changes.
static std::string run_forward(zamba2_engine * e, const step_view & v) {
    zk_smem_carveout() = v.T > 0 && v.T == v.S ? e->carveout_decode : e->carveout_all;  // this thread's launches
    const bool decode_only = v.T > 0 && v.T == v.S && e->graphs_enabled;
    if (!decode_only) return enqueue_forward(e, v);
    const uint64_t key = ((uint64_t) v.S << 32) | (uint32_t) v.O;
    auto it = e->graphs.find(key);
    if (it == e->graphs.end()) {
        if (e->graph_seen[key]++ == 0) return enqueue_forward(e, v);  // first sighting: warms GEMM plans
        cudaGraph_t graph = nullptr;
        ZF_CUDA(cudaStreamBeginCapture(e->stream, cudaStreamCaptureModeThreadLocal));
        std::string err = enqueue_forward(e, v);
        const cudaError_t cap = cudaStreamEndCapture(e->stream, &graph);
        if (!err.empty()) { if (graph) cudaGraphDestroy(graph); return err; }
        if (cap != cudaSuccess) return std::string("graph capture: ") + cudaGetErrorString(cap);
        cudaGraphExec_t exec = nullptr;
        const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
        cudaGraphDestroy(graph);
        if (inst != cudaSuccess) return std::string("graph instantiate: ") + cudaGetErrorString(inst);
        it = e->graphs.emplace(key, exec).first;
    }
    ZF_CUDA(cudaGraphLaunch(it->second, e->stream));
    return "";
}

std::string zamba2_engine_step(zamba2_engine * e, const int32_t * packed, size_t packed_len, zamba2_step_output & out) {
    if (!e->conv_pool) return "step before initCache";
    if (!e->resolved) {
        const std::string err = zamba2_resolve_weights(e);
        if (!err.empty()) return err;
    }
    if (e->persist_decode && e->persist_layers.empty()) {
        const std::string err = zamba2_make_persist(e);
        if (!err.empty()) return err;
    }
    size_t off[9];
    if (packed_len < 8) return "step: packed input too short";
    const size_t need = step_layout(packed, off);
    std::string err = check_step(e, packed, packed_len, need);
    if (!err.empty()) return err;
    if (need > e->h_packed_cap) return "step: packed input over capacity";
    const zamba2_config & c = e->cfg;
    zamba2_scratch & s = e->s;
    cudaStream_t st = e->stream;
    size_t need_dev = need;
    int32_t * hp = e->h_packed;
    if (e->graphs_enabled && packed[1] > 0 && packed[1] == packed[0]) {
        // decode-only: widen block tables to the full width (graph offsets then depend on S, O only)
        const int S = packed[0], W = packed[5], Wf = c.max_pages_per_seq();
        std::memcpy(hp, packed, off[6] * sizeof(int32_t));
        hp[5] = Wf;
        for (int i = 0; i < S; ++i) {
            for (int k = 0; k < Wf; ++k) hp[off[6] + (size_t) i * Wf + k] = k < W ? packed[off[6] + (size_t) i * W + k] : -1;
        }
        size_t woff[9];
        need_dev = step_layout(hp, woff);
        std::memcpy(hp + woff[7], packed + off[7], (need - off[7]) * sizeof(int32_t));
        std::memcpy(off, woff, sizeof(woff));
    } else {
        std::memcpy(hp, packed, need * sizeof(int32_t));
    }
    const step_view hv = make_view(hp, hp, off);
    const step_view v = make_view(s.packed, hp, off);  // device pointers, host-read counts

    ZF_CUDA(cudaEventRecord(e->ev_start, st));
    // SSD chunk lists for steps that carry prefill chunks (ZAMBA2_SSD=1); decode-only steps keep the scan. With
    // ssd_one_by_step, the sequences of one token (decodes, a prompt's last token) get no chunk: they go to a list of
    // their own (token row, slot) for the state step, which updates a slot's state for one token ~3x cheaper.
    e->ssd_n_chunks = 0;
    e->ssd_n_one = 0;
    if (e->use_ssd && hv.T > hv.S) {
        const int cmax = e->ssd_max_chunks, smax = c.max_seqs;
        int32_t * hc = e->h_ssd_chunks;  // t0[cmax] len[cmax] seq_chunk0[smax] seq_nchunks[smax] one_t[smax] one_slot[smax]
        int32_t * one_t = hc + 2 * (size_t) cmax + 2 * (size_t) smax, * one_slot = one_t + smax;
        int n = 0, n_one = 0;
        for (int q = 0; q < hv.S && n >= 0; ++q) {
            const int t0 = hv.cu_seqlens[q], len = hv.cu_seqlens[q + 1] - t0;
            hc[2 * cmax + q] = n;
            if (len == 1 && e->ssd_one_by_step) {
                hc[2 * cmax + smax + q] = 0;
                one_t[n_one] = t0;
                one_slot[n_one++] = hv.seq_slot[q];
                continue;
            }
            for (int o = 0; o < len; o += 64) {
                if (n == cmax) { n = -1; break; }
                hc[n] = t0 + o;
                hc[cmax + n] = len - o < 64 ? len - o : 64;
                ++n;
            }
            if (n >= 0) hc[2 * cmax + smax + q] = n - hc[2 * cmax + q];
        }
        if (n > 0) {
            ZF_CUDA(cudaMemcpyAsync(e->ssd_chunks, hc, (2 * (size_t) cmax + 4 * (size_t) smax) * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, st));
            e->ssd_n_chunks = n;
            e->ssd_n_one = n_one;
        }
    }
    ZF_CUDA(cudaMemcpyAsync(s.packed, hp, need_dev * sizeof(int32_t), cudaMemcpyHostToDevice, st));
    for (int i = 0; i < hv.R; ++i) {  // new sequences start from zero state (KV pages need no reset)
        const int slot = hv.reset_slots[i];
        const size_t conv_slot = (size_t) 3 * c.conv_dim(), ssm_slot = e->ssm_layer_elems() / e->slot_count;
        for (int L = 0; L < c.n_layers; ++L) {
            ZF_CUDA(cudaMemsetAsync(e->conv_pool + L * e->conv_layer_elems() + slot * conv_slot, 0, conv_slot * sizeof(float), st));
            ZF_CUDA(cudaMemsetAsync(e->ssm_pool + L * e->ssm_layer_elems() + slot * ssm_slot, 0, ssm_slot * 4, st));
        }
    }
    err = run_forward(e, v);
    if (!err.empty()) return err;
    const int O = v.O;
    ZF_CUDA(cudaGetLastError());
    err = zamba2_sampling_enqueue(e, O);  // staged GPU sampling rows (outside the graph: params change per step)
    if (!err.empty()) return err;
    float * h_out = static_cast<float *>(e->h_out);
    int32_t * h_argmax = reinterpret_cast<int32_t *>(h_out);
    float * h_max = h_out + c.max_tokens;
    float * h_lse = h_out + 2 * (size_t) c.max_tokens;
    float * h_logits = h_out + 3 * (size_t) c.max_tokens;
    if (O > 0) {
        ZF_CUDA(cudaMemcpyAsync(h_argmax, s.argmax, O * sizeof(int32_t), cudaMemcpyDeviceToHost, st));
        ZF_CUDA(cudaMemcpyAsync(h_max, s.max_logit, O * sizeof(float), cudaMemcpyDeviceToHost, st));
        ZF_CUDA(cudaMemcpyAsync(h_lse, s.lse, O * sizeof(float), cudaMemcpyDeviceToHost, st));
        if (v.want_logits) {
            ZF_CUDA(cudaMemcpyAsync(h_logits, s.logits, (size_t) O * c.vocab * sizeof(float), cudaMemcpyDeviceToHost, st));
        }
    }
    ZF_CUDA(cudaEventRecord(e->ev_stop, st));
    ZF_CUDA(cudaStreamSynchronize(st));
    float ms = 0;
    cudaEventElapsedTime(&ms, e->ev_start, e->ev_stop);
    if (e->profiling && e->prof_used > 0) {
        for (size_t i = 1; i < e->prof_used; ++i) {
            float d = 0;
            cudaEventElapsedTime(&d, e->prof_events[i - 1], e->prof_events[i]);
            if (e->prof_cats[i] >= 0) e->prof_ms[e->prof_cats[i]] += d;
        }
        e->prof_used = 0;
        e->prof_steps++;
    }
    out.compute_ms = ms;
    out.argmax.assign(h_argmax, h_argmax + O);
    out.max_logit.assign(h_max, h_max + O);
    out.lse.assign(h_lse, h_lse + O);
    if (v.want_logits && O > 0) out.logits.assign(h_logits, h_logits + (size_t) O * c.vocab);
    else out.logits.clear();
    zamba2_sampling_collect(e, out);
    return "";
}
