// Engine benchmark on random weights with the dims of a Zamba2 preset (no checkpoint upload):
// prefill latency at 512/2048 tokens, decode tokens/s at batch 1/16/64/256 after 128-token prompts,
// batch-1 decode against the weight-bandwidth bound, and a mixed step (63 decodes + a 128-token prompt, as a server
// under load runs). Prints a table last.
// Usage: bench-engine [1.2b|2.7b|7b] [bandwidth_GBps=4300]
// Env: ZAMBA2_BENCH_PREFILL="512,2048", ZAMBA2_BENCH_BATCHES="1,16,64,256" and ZAMBA2_BENCH_MIXED="64" pick the rows
// ("" or "none": no rows of that kind), e.g. for a short run under ncu.
// Built with -DZK_TIMELINE (`build.sh --timeline`: kernels/build-tl/bench-engine), it also records the kernel timeline
// of 4 decode steps per batch into $ZAMBA2_TIMELINE_DIR/timeline-b<batch>.csv (kernels/dev/timeline_summary.py).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "../engine/zamba2-engine.h"
#include "zamba2-timeline.cuh"

static std::vector<int> env_list(const char * name, std::vector<int> dflt) {
    const char * v = std::getenv(name);
    if (!v) return dflt;
    std::vector<int> out;
    for (const char * p = v; *p;) {
        char * end = nullptr;
        const long n = std::strtol(p, &end, 10);
        if (end == p) { ++p; continue; }
        if (n > 0) out.push_back((int) n);
        p = end;
    }
    return out;
}

static zamba2_config preset(const std::string & name) {
    zamba2_config c;
    c.vocab = 32000;
    c.heads = 32;
    c.mamba_head_dim = 64;
    c.adapter_rank = 128;
    c.use_mlp_adapter = true;
    c.use_conv_bias = true;
    if (name == "1.2b") {
        c.hidden = 2048; c.n_layers = 38; c.hybrid_layer_ids = {5, 11, 17, 23, 29, 35}; c.n_mem_blocks = 1;
        c.d_state = 128; c.ngroups = 1; c.use_rope = true; c.use_attn_adapter = true;
    } else if (name == "2.7b") {
        c.hidden = 2560; c.n_layers = 54; c.hybrid_layer_ids = {6, 12, 18, 24, 30, 36, 42, 47, 51}; c.n_mem_blocks = 2;
        c.d_state = 64; c.ngroups = 1; c.use_rope = false; c.use_attn_adapter = false;
    } else {
        c.hidden = 3584; c.n_layers = 81; c.hybrid_layer_ids = {6, 11, 17, 23, 29, 35, 41, 47, 53, 59, 65, 71, 77};
        c.n_mem_blocks = 2; c.d_state = 64; c.ngroups = 2; c.use_rope = true; c.use_attn_adapter = false;
    }
    for (size_t h = 0; h < c.hybrid_layer_ids.size(); ++h) c.hybrid_block_ids.push_back((int) h % c.n_mem_blocks);
    c.head_dim = 2 * c.hidden / c.heads;
    c.kv_channels = c.hidden / c.heads;
    c.ffn = 4 * c.hidden;
    c.d_inner = 2 * c.hidden;
    c.n_mamba_heads = c.d_inner / c.mamba_head_dim;
    c.max_tokens = 2048;
    c.max_seqs = 256;
    c.max_model_len = 4096;
    return c;
}

struct bench_seq {
    int slot;
    int pos = 0;
    std::vector<int> pages;
};

struct packer {
    const zamba2_config & c;
    int next_page = 0;
    std::mt19937 rng{1234};
    explicit packer(const zamba2_config & cfg) : c(cfg) {}
    // One step: seq i computes n_tok[i] tokens; every seq samples; reset the slots of seqs at pos 0.
    std::vector<int32_t> pack(std::vector<bench_seq *> seqs, const std::vector<int> & n_tok) {
        const int S = (int) seqs.size();
        int T = 0, W = 0;
        for (int i = 0; i < S; ++i) {
            T += n_tok[i];
            bench_seq & s = *seqs[i];
            while ((int) s.pages.size() * 16 < s.pos + n_tok[i]) s.pages.push_back(next_page++);
            W = std::max(W, (int) s.pages.size());
        }
        std::vector<int32_t> tokens, positions, token_seq, kv_index, cu{0}, slot, bt, out_rows, reset;
        for (int i = 0; i < S; ++i) {
            bench_seq & s = *seqs[i];
            if (s.pos == 0) reset.push_back(s.slot);
            for (int j = 0; j < n_tok[i]; ++j) {
                const int p = s.pos + j;
                tokens.push_back((int32_t) (rng() % c.vocab));
                positions.push_back(p);
                token_seq.push_back(i);
                kv_index.push_back(s.pages[p / 16] * 16 + p % 16);
            }
            cu.push_back(cu.back() + n_tok[i]);
            slot.push_back(s.slot);
            for (int k = 0; k < W; ++k) bt.push_back(k < (int) s.pages.size() ? s.pages[k] : -1);
            out_rows.push_back(cu.back() - 1);
            s.pos += n_tok[i];
        }
        std::vector<int32_t> p = {S, T, S, (int32_t) reset.size(), 0, W, 0, 0};
        for (auto * v : {&tokens, &positions, &token_seq, &kv_index, &cu, &slot, &bt, &out_rows, &reset}) {
            p.insert(p.end(), v->begin(), v->end());
        }
        return p;
    }
};

static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

static void die(const std::string & err) {
    std::fprintf(stderr, "bench-engine: %s\n", err.c_str());
    std::exit(1);
}

static double run_step(zamba2_engine * e, const std::vector<int32_t> & p) {
    zamba2_step_output out;
    const std::string err = zamba2_engine_step(e, p.data(), p.size(), out);
    if (!err.empty()) die(err);
    return out.compute_ms;
}

int main(int argc, char ** argv) {
    const std::string name = argc > 1 ? argv[1] : "1.2b";
    const double bw_gbps = argc > 2 ? std::atof(argv[2]) : 4300.0;
    const zamba2_config c = preset(name);
    std::string err;
    zamba2_engine * e = zamba2_engine_create(c, &err);
    if (!e) die(err);
    size_t weight_bytes = 0, block_bytes = 0;
    for (const auto & s : zamba2_engine_weight_specs(e)) {
        weight_bytes += s.numel * (s.f32 ? 4 : 2);
        if (s.name.rfind("blocks.", 0) == 0) block_bytes += s.numel * 2;
    }
    // A decode step reads every weight once, and each shared block once per invocation using it.
    const size_t read_bytes = weight_bytes + (c.hybrid_layer_ids.size() - c.n_mem_blocks) * (block_bytes / c.n_mem_blocks);
    const bool profiling = std::getenv("ZAMBA2_PROFILE") && std::getenv("ZAMBA2_PROFILE")[0] == '1';
    err = zamba2_engine_fill_random(e, 42);
    if (!err.empty()) die(err);
    const int n_slots = 260, n_pages = 260 * 16;
    err = zamba2_engine_init_cache(e, n_slots, n_pages);
    if (!err.empty()) die(err);
    std::printf("preset %s: weights %.3f GB (%.3f GB read per decode step), state slot %.1f MB, device %.2f GB%s\n",
                name.c_str(), weight_bytes / 1e9, read_bytes / 1e9, c.state_slot_bytes() / 1e6,
                zamba2_engine_device_bytes(e) / 1e9, profiling ? " [profiling: graphs off, event per op]" : "");
    packer pk(c);
    struct row { std::string what; double ms; double tok_s; std::string note; };
    std::vector<row> rows;
    int slot_next = 0;

    for (int len : env_list("ZAMBA2_BENCH_PREFILL", {512, 2048})) {
        std::vector<double> ms;
        for (int rep = 0; rep < 7; ++rep) {
            bench_seq s{slot_next % n_slots};
            pk.next_page = 0;
            ms.push_back(run_step(e, pk.pack({&s}, {len})));
        }
        ms.erase(ms.begin(), ms.begin() + 2);  // warm-up
        if (profiling) std::printf("profile prefill %d: %s\n", len, zamba2_engine_profile_report(e).c_str());
        rows.push_back({"prefill " + std::to_string(len) + " tok (b1)", median(ms), len / median(ms) * 1e3, "latency"});
    }
    for (int batch : env_list("ZAMBA2_BENCH_BATCHES", {1, 16, 64, 256})) {
        pk.next_page = 0;
        std::vector<bench_seq> seqs(batch);
        for (int i = 0; i < batch; ++i) seqs[i].slot = i;
        // 128-token prompts, 16 per step
        for (int i0 = 0; i0 < batch; i0 += 16) {
            std::vector<bench_seq *> ps;
            std::vector<int> nt;
            for (int i = i0; i < std::min(batch, i0 + 16); ++i) { ps.push_back(&seqs[i]); nt.push_back(128); }
            run_step(e, pk.pack(ps, nt));
        }
        std::vector<bench_seq *> all;
        for (auto & s : seqs) all.push_back(&s);
        std::vector<double> ms;
        zamba2_engine_profile_report(e);  // reset: measure decode steps only
        const int steps = batch >= 64 ? 24 : 48;
        for (int k = 0; k < steps; ++k) ms.push_back(run_step(e, pk.pack(all, std::vector<int>(batch, 1))));
        ms.erase(ms.begin(), ms.begin() + 4);
        const double m = median(ms);
#ifdef ZK_TIMELINE
        {
            zk_tl_buffer * tl = zk_timeline_start(1u << 18);
            for (int k = 0; k < 4; ++k) run_step(e, pk.pack(all, std::vector<int>(batch, 1)));
            const std::vector<zk_tl_record> recs = zk_timeline_take(tl);
            const char * dir = std::getenv("ZAMBA2_TIMELINE_DIR");
            const std::string path = std::string(dir ? dir : ".") + "/timeline-b" + std::to_string(batch) + ".csv";
            if (FILE * f = std::fopen(path.c_str(), "w")) {
                std::fprintf(f, "tag,grid,block,t_start,t_waited,t_end,t_mark0,t_mark1,t_waited_last\n");
                for (const auto & r : recs) {
                    std::fprintf(f, "%u,%u,%u,%llu,%llu,%llu,%llu,%llu,%llu\n", r.tag, r.grid, r.block,
                                 (unsigned long long) r.t_start, (unsigned long long) r.t_waited, (unsigned long long) r.t_end,
                                 (unsigned long long) r.t_mark[0], (unsigned long long) r.t_mark[1],
                                 (unsigned long long) r.t_waited_last);
                }
                std::fclose(f);
                std::printf("timeline: %zu CTA records -> %s\n", recs.size(), path.c_str());
            }
        }
#endif
        if (profiling) std::printf("profile decode b%d: %s\n", batch, zamba2_engine_profile_report(e).c_str());
        std::string note;
        if (batch == 1) {
            const double bound_ms = read_bytes / (bw_gbps * 1e9) * 1e3;
            char buf[96];
            std::snprintf(buf, sizeof(buf), "bound %.0f tok/s -> %.0f%%", 1e3 / bound_ms, 100.0 * bound_ms / m);
            note = buf;
        }
        rows.push_back({"decode b" + std::to_string(batch) + " (ctx 128+)", m, batch / m * 1e3, note});
    }
    // Mixed steps as a server under load runs them: batch - 1 sequences decoding (128+ tokens of context) and one new
    // sequence's 128-token prompt in the same step; tok/s counts both kinds of tokens.
    for (int batch : env_list("ZAMBA2_BENCH_MIXED", {64})) {
        if (batch < 2 || batch > n_slots) continue;
        pk.next_page = 0;
        std::vector<bench_seq> seqs(batch - 1);
        for (int i = 0; i < batch - 1; ++i) seqs[i].slot = i;
        for (int i0 = 0; i0 < batch - 1; i0 += 16) {
            std::vector<bench_seq *> ps;
            for (int i = i0; i < std::min(batch - 1, i0 + 16); ++i) ps.push_back(&seqs[i]);
            run_step(e, pk.pack(ps, std::vector<int>(ps.size(), 128)));
        }
        std::vector<double> ms;
        zamba2_engine_profile_report(e);  // reset: measure mixed steps only
        for (int k = 0; k < 16; ++k) {
            bench_seq fresh{batch - 1};
            std::vector<bench_seq *> ps;
            for (auto & s : seqs) ps.push_back(&s);
            ps.push_back(&fresh);
            std::vector<int> nt(batch - 1, 1);
            nt.push_back(128);
            ms.push_back(run_step(e, pk.pack(ps, nt)));
        }
        ms.erase(ms.begin(), ms.begin() + 3);
        if (profiling) std::printf("profile mixed b%d: %s\n", batch, zamba2_engine_profile_report(e).c_str());
        const double m = median(ms);
        rows.push_back({"mixed b" + std::to_string(batch) + " (+128 prefill)", m, (batch - 1 + 128) / m * 1e3,
                        std::to_string(batch - 1) + " decodes + 1 x 128-token prompt"});
    }
    std::printf("\n%-28s %10s %12s  %s\n", ("benchmark (" + name + ")").c_str(), "ms/step", "tok/s", "note");
    for (const auto & r : rows) std::printf("%-28s %10.3f %12.1f  %s\n", r.what.c_str(), r.ms, r.tok_s, r.note.c_str());
    zamba2_engine_destroy(e);
    return 0;
}
