// Batch-1 decode steps (the default since run 101; ZAMBA2_PERSIST=0: off; kernels/notes/runs-65-.md on): the Mamba2
// layers between two hybrid layers in one persistent launch (src/mamba2-decode-persistent.cu says why). The shared
// block still runs as the fused decode path's kernels, but for its last GEMV (down . W_linear merged), which the
// launch after it runs first (ZAMBA2_PERSIST_DOWN=0: its own kernel).
#include "zamba2-forward.h"

// The per-layer pointers (weights and this layer's pools; each launch copies its run's into its parameters) and the
// launch sites' barrier counters, made once the weights are resolved and the pools exist (outside any graph capture:
// the step calls it first).
std::string zamba2_make_persist(zamba2_engine * e) {
    if (!e->persist_decode || !e->persist_layers.empty() || !e->conv_pool) return "";
    const zamba2_config & c = e->cfg;
    std::vector<mamba2_persist_layer> host((size_t) c.n_layers);
    for (int L = 0; L < c.n_layers; ++L) {
        const zamba2_layer_ptrs & lw = e->layers[L];
        host[L] = {lw.in_proj, lw.out_proj, lw.input_norm, lw.conv_w, lw.conv_b, lw.norm, lw.dt_bias, lw.a_log, lw.d,
                   e->conv_pool + (size_t) L * e->conv_layer_elems(), e->ssm_pool + (size_t) L * e->ssm_layer_elems()};
    }
    const size_t n_sync = 2 * (c.hybrid_layer_ids.size() + 1);  // one counter pair per run of layers
    unsigned * sync = nullptr;
    if (cudaMalloc(&sync, n_sync * sizeof(unsigned)) != cudaSuccess) return "persistent decode: out of memory";
    if (cudaMemset(sync, 0, n_sync * sizeof(unsigned)) != cudaSuccess) {
        cudaFree(sync);
        return "persistent decode: upload failed";
    }
    e->persist_layers = std::move(host);
    e->persist_sync = sync;
    return "";
}

void zamba2_free_persist(zamba2_engine * e) {
    if (e->persist_sync) cudaFree(e->persist_sync);
    e->persist_layers.clear();
    e->persist_sync = nullptr;
}

bool persistent_decode_step(const zamba2_engine * e, const step_view & v, bool fused) {
    return fused && v.T == 1 && !e->persist_layers.empty() && !e->persist_refused;
}

bool mamba_run_persistent(zamba2_engine * e, const step_view & v, int L0, int L1, bool hybrid, int run, const bf16 * down_w,
                          std::string & err) {
    // A deferred down GEMV runs as its own kernel unless the launch below takes it (the layers then wait for tr).
    auto down_alone = [&]() {
        if (down_w) err = fused_block_down(e, v, down_w);
        down_w = nullptr;
        return err.empty();
    };
    if (run >= e->persist_max_runs || (down_w && !e->persist_down)) {
        if (!down_alone()) return false;
        if (run >= e->persist_max_runs) return false;
    }
    const zamba2_config & c = e->cfg;
    zamba2_scratch & s = e->s;
    mamba2_persist_args a{};
    a.layers = e->persist_layers.data() + L0;
    a.n_layers = L1 - L0;
    a.x = s.x;
    a.tr = hybrid ? s.tr : nullptr;  // Tr enters the mixer input only (spec §3 step 11)
    a.zx = s.zx;
    a.xbc = s.xbc;
    a.y = s.y;
    a.gsq = s.gsq;
    a.sync = e->persist_sync + 2 * run;
    a.seq_slot = v.seq_slot;
    a.hidden = c.hidden;
    a.n_heads = c.n_mamba_heads;
    a.head_dim = c.mamba_head_dim;
    a.n_groups = c.ngroups;
    a.d_state = c.d_state;
    a.eps = c.eps;
    a.gated_eps = 1e-5f;  // the gated norm's eps (as the other paths)
    if (down_w) {
        a.down_w = down_w;
        a.gu = s.gu;
        a.ffn = c.ffn;
        if (mamba2_decode_persistent(a, e->stream)) {
            zamba2_prof_mark(e, PROF_GEMM);
            return true;
        }
        // refused with the down phase (its dims, or the launch): the down GEMV alone, then the layers without it; a
        // dims refusal is the same on every step, so later steps stop asking
        e->persist_down = false;
        if (!down_alone()) return false;
        a.down_w = nullptr;
        a.gu = nullptr;
        a.ffn = 0;
    }
    if (!mamba2_decode_persistent(a, e->stream)) {
        // Refused: dims it does not take, or a launch the GPU cannot run (its CTAs not all resident, e.g. under an
        // MPS SM limit). This stretch runs the per-layer kernels, and so do all later steps: a shape's first step
        // runs eagerly (run_forward), so a refusal is met there and never inside a graph capture, where a failed
        // launch could invalidate the capture.
        e->persist_refused = true;
        return false;
    }
    zamba2_prof_mark(e, PROF_GEMM);
    return true;
}
