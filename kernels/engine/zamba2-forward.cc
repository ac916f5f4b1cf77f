// One engine step: the Zamba2 forward pass (spec §3) over a packed varlen batch, then logits and
// greedy picks for the requested rows. All work is enqueued on the engine's stream; the call
// returns after the outputs are on the host.
#include <cmath>
#include <cstring>

#include "zamba2-engine-internal.h"

#include "../include/zamba2-launch.cuh"

#define ZF_CUDA(call)                                                                              \
    do {                                                                                           \
        cudaError_t err_ = (call);                                                                 \
        if (err_ != cudaSuccess) return std::string(#call ": ") + cudaGetErrorString(err_);        \
    } while (0)

// Steps of at most skinny_max_m tokens (decodes, small chunks) run every GEMM through skinny_gemm
// (tensor cores, weights read once); larger ones, and any shape it refuses, through cuBLASLt.
static bool skinny_step(const zamba2_engine * e, int T) { return T <= e->skinny_max_m; }

static skinny_gemm_args skinny_args(zamba2_engine * e, skinny_x_mode mode, const void * x, const bf16 * x_lo, int ld_x, int K, int M,
                                    bool accumulate) {
    skinny_gemm_args a{};
    a.x_mode = mode;
    a.x = x;
    a.x_lo = x_lo;
    a.ld_x = ld_x;
    a.K = K;
    a.M = M;
    a.y_f32 = true;
    a.accumulate = accumulate;
    a.workspace = e->s.skinny_work;
    a.workspace_floats = ZK_SKINNY_WORK_FLOATS;
    a.counters = e->s.skinny_counters;
    a.counter_count = ZK_SKINNY_COUNTERS;
    a.pdl = zk_pdl_enabled();  // its weight loads may start while the previous kernel finishes
    return a;
}

static int engine_gemm(zamba2_engine * e, void * y, gemm_out_type y_type, int ld_y, const bf16 * x, int ld_x,
                       const bf16 * w, int M, int N, int K, float beta, cudaStream_t st) {
    if (skinny_step(e, M) && (beta == 0.0f || beta == 1.0f)) {
        skinny_gemm_args a = skinny_args(e, SKINNY_X_BF16, x, nullptr, ld_x, K, M, beta == 1.0f);
        a.y_f32 = y_type == GEMM_OUT_F32;
        a.seg[0] = {w, nullptr, nullptr, y, N, ld_y};
        a.n_seg = 1;
        if (skinny_gemm(a, st)) return 0;
    }
    return gemm_bf16(e->gemm, y, y_type, ld_y, x, ld_x, w, M, N, K, beta, st);
}

#define ZF_GEMM(...)                                                                               \
    do {                                                                                           \
        if (engine_gemm(e, __VA_ARGS__) != 0) return std::string("gemm: ") + gemm_last_error(e->gemm); \
    } while (0)

struct step_view {
    int S, T, O, R, want_logits, W;
    const int32_t *tokens, *positions, *token_seq, *kv_index, *cu_seqlens, *seq_slot, *block_tables, *out_rows,
        *reset_slots;
};

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

// Steps that compute the lo term of split inputs in FP8 (large steps, see zamba2-fp8.h): their producers
// (norms, split_rows_bf16) write hi rows plus lo8 = s.lo8 instead of bf16 lo rows.
static bool lo_fp8_step(const zamba2_engine * e, int T) {
    return e->lo_fp8 && e->split_inputs && T >= e->lo_fp8_min_t && !skinny_step(e, T);
}


// On an FP8 step, fills the bf16 lo rows of x2 from s.lo8 for the GEMMs that need the [hi; lo] form (LoRA, a
// shape without an FP8 algorithm). Once per producer: s.lo_rows_for remembers which input has them.
static void need_lo_rows(zamba2_engine * e, const bf16 * x2, int T, int K) {
    if (e->s.lo_rows_for == x2) return;
    fp8_lo_to_bf16(const_cast<bf16 *>(x2) + (size_t) T * K, e->s.lo8, T, K, e->stream);  // x2 lo rows: [T, K]
    e->s.lo_rows_for = x2;
}

// y [T, N] fp32 (+)= x . w^T for a split input x2 = [hi; lo] ([2T, K] bf16). Three forms:
//  - skinny steps: one skinny_gemm reading hi and lo in registers (W read once);
//  - FP8 steps (lo_fp8_weight): hi . w^T in bf16 into y, then lo8 . w8^T in FP8 added to columns [lo_n0, N)
//    (lo_n0 > 0 leaves the first columns with the hi term only: in_proj's z rows with ZAMBA2_SPLIT_Z=0);
//  - otherwise one cuBLASLt GEMM over the 2T rows into ysplit (W read once), halves summed by combine_halves.
// With a LoRA pair (w0 [r, K], w1 [N, r]), x2 . w0^T . w1^T is added for both halves.
static std::string split_gemm(zamba2_engine * e, float * y, int ld_y, const bf16 * x2, const bf16 * w, int T, int N, int K,
                              bool accumulate, const bf16 * w0 = nullptr, const bf16 * w1 = nullptr, int lo_n0 = 0) {
    zamba2_scratch & s = e->s;
    const int r = e->cfg.adapter_rank;
    cudaStream_t st = e->stream;
    if (lo_fp8_step(e, T)) {  // x2: hi rows [T, K]; lo part in s.lo8 [T, K] e4m3
        auto it = e->fp8_of.find(w);
        const zamba2_fp8_weight * w8 = it == e->fp8_of.end() || K % 16 != 0 ? nullptr : &it->second;
        ZF_GEMM(y, GEMM_OUT_F32, ld_y, x2, K, w, T, N, K, accumulate ? 1.0f : 0.0f, st);  // y (+)= hi . w^T
        if (!w8 || gemm_fp8_accumulate(e->gemm, y + lo_n0, ld_y, s.lo8, K, w8->q + (size_t) lo_n0 * K, K, T, N - lo_n0,
                                       K, w8->scale / ZK_LO_FP8_SCALE, st) != 0) {        // y[:, lo_n0:] += lo . w^T
            // no FP8 copy or algorithm for this shape (cuBLASLt refuses before enqueuing): the lo rows in bf16
            need_lo_rows(e, x2, T, K);
            ZF_GEMM(y, GEMM_OUT_F32, ld_y, x2 + (size_t) T * K, K, w, T, N, K, 1.0f, st);
        }
        if (w0) {
            need_lo_rows(e, x2, T, K);
            ZF_GEMM(s.lora, GEMM_OUT_BF16, r, x2, K, w0, 2 * T, r, K, 0.0f, st);          // lora: [2T, r]
            ZF_GEMM(y, GEMM_OUT_F32, ld_y, s.lora, r, w1, T, N, r, 1.0f, st);             // y += lora_hi . w1^T
            ZF_GEMM(y, GEMM_OUT_F32, ld_y, s.lora + (size_t) T * r, r, w1, T, N, r, 1.0f, st);  // y += lora_lo . w1^T
        }
        return "";
    }
    if (skinny_step(e, T) && (!w0 || r % 8 == 0)) {
        // x2 = [hi; lo] read in place (lo rows start T * K later); LoRA: lora3 [T, r] = x . w0^T, then
        // y (+)= x . w^T + lora3 . w1^T in one launch
        const skinny_x_mode mode = e->split_inputs ? SKINNY_X_SPLIT : SKINNY_X_BF16;
        const bf16 * x_lo = e->split_inputs ? x2 + (size_t) T * K : nullptr;
        bool ok = true;
        if (w0) {
            skinny_gemm_args a0 = skinny_args(e, mode, x2, x_lo, K, K, T, false);
            a0.seg[0] = {w0, nullptr, nullptr, s.lora3, r, r};                            // lora3: [T, r]
            a0.n_seg = 1;
            ok = skinny_gemm(a0, st);
        }
        skinny_gemm_args a = skinny_args(e, mode, x2, x_lo, K, K, T, accumulate);
        a.seg[0] = {w, w0 ? w1 : nullptr, w0 ? s.lora3 : nullptr, y, N, ld_y};            // y: [T, N]
        a.n_seg = 1;
        a.ld_x2 = r;
        a.K2 = r;
        if (ok && skinny_gemm(a, st)) return "";
        if (w0 && ok) return "skinny_gemm refused a LoRA shape after its first half ran";
    }
    if (!e->split_inputs) {  // ZAMBA2_SPLIT_GEMM=0: hi rows only, straight into y
        ZF_GEMM(y, GEMM_OUT_F32, ld_y, x2, K, w, T, N, K, accumulate ? 1.0f : 0.0f, st);
        if (w0) {
            ZF_GEMM(s.lora, GEMM_OUT_BF16, r, x2, K, w0, T, r, K, 0.0f, st);
            ZF_GEMM(y, GEMM_OUT_F32, ld_y, s.lora, r, w1, T, N, r, 1.0f, st);
        }
        return "";
    }
    ZF_GEMM(s.ysplit, GEMM_OUT_F32, N, x2, K, w, 2 * T, N, K, 0.0f, st);                  // ysplit: [2T, N]
    if (w0) {
        ZF_GEMM(s.lora, GEMM_OUT_BF16, r, x2, K, w0, 2 * T, r, K, 0.0f, st);              // lora: [2T, r]
        ZF_GEMM(s.ysplit, GEMM_OUT_F32, N, s.lora, r, w1, 2 * T, N, r, 1.0f, st);         // ysplit += [2T, N]
    }
    combine_halves(y, ld_y, s.ysplit, T, N, accumulate, st);                              // y: [T, N]
    return "";
}

// Where a split input's bf16 lo rows go (nullptr: not written: ZAMBA2_SPLIT_GEMM=0, or an FP8 step, whose
// producers write produced_lo8 instead).
static bf16 * lo_rows(const zamba2_engine * e, bf16 * hi, size_t n_elems, int T) {
    return e->split_inputs && !lo_fp8_step(e, T) ? hi + n_elems : nullptr;
}

// The lo8 output of a split input's producer on FP8 steps (nullptr otherwise); s.lo8 then holds this input's lo.
static uint8_t * produced_lo8(zamba2_engine * e, int T) {
    if (!lo_fp8_step(e, T)) return nullptr;
    e->s.lo_rows_for = nullptr;  // the bf16 lo rows of any earlier input no longer match s.lo8
    return e->s.lo8;
}

#define ZF_SPLIT(...)                                                                              \
    do {                                                                                           \
        std::string err_ = split_gemm(e, __VA_ARGS__);                                             \
        if (!err_.empty()) return err_;                                                            \
    } while (0)

// q, k, v ([T, 2H] each) of a skinny step in two launches: lora3 [T, 3r] = u2 . [q0; k0; v0]^T, then
// out_i = u2 . w_i^T + lora3[:, i r : (i+1) r] . w1_i^T (three segments). False: not a skinny step or
// a shape skinny_gemm refuses before anything was enqueued (the caller runs the general path).
static bool skinny_qkv(zamba2_engine * e, int T, float * const outs[3], const bf16 * const w_main[3],
                       const bf16 * const w0[3], const bf16 * const w1[3]) {
    const zamba2_config & c = e->cfg;
    zamba2_scratch & s = e->s;
    const int H2 = 2 * c.hidden, r = c.adapter_rank;
    if (!skinny_step(e, T)) return false;
    const bool lora = w0[0] && w0[1] && w0[2];
    if (!lora && (w0[0] || w0[1] || w0[2])) return false;
    const skinny_x_mode mode = e->split_inputs ? SKINNY_X_SPLIT : SKINNY_X_BF16;
    const bf16 * x_lo = e->split_inputs ? s.u2 + (size_t) T * H2 : nullptr;               // u2: [2T, 2H] split
    skinny_gemm_args a = skinny_args(e, mode, s.u2, x_lo, H2, H2, T, false);
    a.n_seg = 3;
    a.ld_x2 = 3 * r;
    a.K2 = r;
    for (int i = 0; i < 3; ++i) a.seg[i] = {w_main[i], lora ? w1[i] : nullptr, lora ? s.lora3 + i * r : nullptr, outs[i], H2, H2};
    if (lora) {
        skinny_gemm_args a0 = skinny_args(e, mode, s.u2, x_lo, H2, H2, T, false);
        a0.n_seg = 3;
        for (int i = 0; i < 3; ++i) a0.seg[i] = {w0[i], nullptr, nullptr, s.lora3 + i * r, r, 3 * r};  // lora3: [T, 3r]
        // both launches must be accepted: check the second's rank rule (K2 = r) before enqueuing the first
        if (r % 8 != 0) return false;
        if (!skinny_gemm(a0, e->stream)) return false;
    }
    return skinny_gemm(a, e->stream);
}

// The shared attention + MLP block at hybrid invocation h; leaves Tr = block output . W_linear^T in s.tr.
static std::string shared_block(zamba2_engine * e, const step_view & v, int h, const zamba2_layer_ptrs & lw) {
    const zamba2_config & c = e->cfg;
    zamba2_scratch & s = e->s;
    const int T = v.T, H = c.hidden, H2 = 2 * c.hidden, F = c.ffn;
    const zamba2_block_ptrs & bw = e->blocks[c.hybrid_block_ids[h]];
    const zamba2_adapter_ptrs & aw = e->adapters[h];
    cudaStream_t st = e->stream;
    rms_norm_f32(s.u2, lo_rows(e, s.u2, (size_t) T * H2, T), s.x, nullptr, s.e, bw.input_norm, T, H, H, c.eps, st,
                 produced_lo8(e, T));                                                       // u2: [2T, 2H] split norm(X | E)
    zamba2_prof_mark(e, PROF_NORM);
    float * outs[3] = {s.q, s.k, s.vv};
    const bf16 * w_main[3] = {bw.q, bw.k, bw.v};
    const bf16 * w0[3] = {aw.q0, aw.k0, aw.v0};
    const bf16 * w1[3] = {aw.q1, aw.k1, aw.v1};
    if (!skinny_qkv(e, T, outs, w_main, w0, w1)) {
        for (int i = 0; i < 3; ++i) ZF_SPLIT(outs[i], H2, s.u2, w_main[i], T, H2, H2, false, w0[i], w1[i]);  // [T, 2H]
    }
    zamba2_prof_mark(e, PROF_GEMM);
    if (c.use_rope) {
        rope_neox_qk_inplace(s.q, s.k, v.positions, T, c.heads, c.head_dim, c.rope_theta, st);  // q, k: [T, heads, D]
    }
    bf16 * k_pool = e->kv_pool + (size_t) h * 2 * e->kv_layer_elems();                  // [pages, heads, 16, D]
    bf16 * v_pool = k_pool + e->kv_layer_elems();
    kv_cache_write(k_pool, v_pool, s.k, s.vv, v.kv_index, T, c.heads, c.head_dim, st);
    const float scale = 1.0f / std::sqrt((float) c.kv_channels);
    const bool decoded = T == v.S && paged_attention_decode(s.attf, s.q, k_pool, v_pool, v.block_tables, v.W, v.positions, T,
                                                            c.heads, c.head_dim, scale, st);  // attf: [T, 2H]
    if (!decoded) {
        paged_attention(s.attf, s.q, k_pool, v_pool, v.block_tables, v.W, v.token_seq, v.positions, T, c.heads,
                        c.head_dim, scale, /*multi_query=*/T > v.S, st, v.cu_seqlens, v.S);  // attf: [T, 2H]
    }
    zamba2_prof_mark(e, PROF_ATTN);
    skinny_gemm_args ao = skinny_args(e, SKINNY_X_F32, s.attf, nullptr, H2, H2, T, false);  // split in registers
    ao.seg[0] = {bw.o, nullptr, nullptr, s.a, H, H};                                       // a: [T, H] = attf . o^T
    ao.n_seg = 1;
    if (!(e->split_inputs && skinny_step(e, T) && skinny_gemm(ao, st))) {
        split_rows_bf16(s.att, s.attf, T, H2, st, produced_lo8(e, T));                     // att: [2T, 2H] (or hi + lo8)
        ZF_SPLIT(s.a, H, s.att, bw.o, T, H, H2, false);                                    // a: [T, H]
    }
    zamba2_prof_mark(e, PROF_GEMM);
    rms_norm_f32(s.vn, lo_rows(e, s.vn, (size_t) T * H, T), s.a, nullptr, nullptr, bw.pre_ff_norm, T, H, 0, c.eps, st,
                 produced_lo8(e, T));                                                       // vn: [2T, H]
    zamba2_prof_mark(e, PROF_NORM);
    ZF_SPLIT(s.gu, 2 * F, s.vn, bw.gate_up, T, 2 * F, H, false, aw.gu0, aw.gu1);          // gu: [T, 2F]
    zamba2_prof_mark(e, PROF_GEMM);
    gelu_mul(s.act, s.gu, T, F, st);                                                       // act: [T, F]
    zamba2_prof_mark(e, PROF_ELEM);
    ZF_GEMM(s.m, GEMM_OUT_BF16, H, s.act, F, bw.down, T, H, F, 0.0f, st);                 // m: [T, H]
    ZF_GEMM(s.tr, GEMM_OUT_F32, H, s.m, H, lw.linear, T, H, H, 0.0f, st);                 // tr: [T, H]
    zamba2_prof_mark(e, PROF_GEMM);
    return "";
}

// Mamba2 mixer of layer L on u = s.u (split); adds its output into the fp32 residual stream s.x.
static std::string mamba_mixer(zamba2_engine * e, const step_view & v, int L) {
    const zamba2_config & c = e->cfg;
    zamba2_scratch & s = e->s;
    const zamba2_layer_ptrs & lw = e->layers[L];
    const int T = v.T, H = c.hidden, d = c.d_inner, ipo = c.in_proj_out(), cd = c.conv_dim();
    cudaStream_t st = e->stream;
    ZF_SPLIT(s.zx, ipo, s.u, lw.in_proj, T, ipo, H, false, nullptr, nullptr, e->split_z ? 0 : d);  // zx: [T, 2d+2GN+nh]
    zamba2_prof_mark(e, PROF_GEMM);
    float * conv_state = e->conv_pool + (size_t) L * e->conv_layer_elems();               // [slots, 3, cd]
    float * ssm_state = e->ssm_pool + (size_t) L * e->ssm_layer_elems();                  // [slots, nh, P, N]
    if (!(T == v.S && causal_conv1d_decode(s.xbc, s.zx + d, ipo, conv_state, lw.conv_w, lw.conv_b, v.seq_slot, T, cd,
                                           st))) {                                         // xbc: [T, cd]
        causal_conv1d_varlen_update(s.xbc, s.zx + d, ipo, conv_state, lw.conv_w, lw.conv_b, v.cu_seqlens, v.token_seq,
                                    v.seq_slot, T, cd, st);                                // xbc: [T, cd], conv_state
    }
    zamba2_prof_mark(e, PROF_CONV);
    // decode-only steps may use the 16-byte-state kernel (ZAMBA2_DECODE_STEP)
    const int32_t * ck = e->ssd_chunks;  // t0 | len | seq_chunk0 | seq_nchunks
    const int cmax = e->ssd_max_chunks;
    const bool chunked = e->ssd_n_chunks > 0 &&
                         mamba2_ssd_varlen(s.y, ssm_state, e->ssd_states, e->ssd_dt, e->ssd_lam, s.xbc, cd, s.zx + d + cd,
                                           ipo, lw.dt_bias, lw.a_log, lw.d, ck, ck + cmax, ck + 2 * cmax,
                                           ck + 2 * cmax + c.max_seqs, v.seq_slot, e->ssd_n_chunks, v.S,
                                           c.n_mamba_heads, c.mamba_head_dim, c.ngroups, c.d_state, st);  // y: [T, d] f32
    const bool stepped = !chunked && e->use_decode_step && T == v.S &&
                         mamba2_state_step(s.y, ssm_state, s.xbc, cd, s.zx + d + cd, ipo, lw.dt_bias, lw.a_log, lw.d,
                                           v.cu_seqlens, v.seq_slot, v.S, c.n_mamba_heads, c.mamba_head_dim, c.ngroups,
                                           c.d_state, st);                                // y: [T, d] f32
    if (!stepped && !chunked) {
        mamba2_scan_varlen(s.y, ssm_state, s.xbc, cd, s.zx + d + cd, ipo, lw.dt_bias, lw.a_log, lw.d, v.cu_seqlens,
                           v.seq_slot, v.S, c.n_mamba_heads, c.mamba_head_dim, c.ngroups, c.d_state, st);  // y: [T, d] f32
    }
    zamba2_prof_mark(e, PROF_SCAN);
    gated_rms_norm_f32(s.v, lo_rows(e, s.v, (size_t) T * d, T), s.y, s.zx, ipo, lw.norm, T, d, c.ngroups, 1e-5f, st,
                       produced_lo8(e, T));                                                 // v: [2T, d]
    zamba2_prof_mark(e, PROF_NORM);
    ZF_SPLIT(s.x, H, s.v, lw.out_proj, T, H, d, true);                                     // x += [T, H]
    zamba2_prof_mark(e, PROF_GEMM);
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
        size_t h = 0;
        for (int L = 0; L < c.n_layers; ++L) {
            const zamba2_layer_ptrs & lw = e->layers[L];
            const bool hybrid = h < c.hybrid_layer_ids.size() && c.hybrid_layer_ids[h] == L;
            if (hybrid) {
                err = shared_block(e, v, (int) h, lw);
                if (!err.empty()) return err;
                ++h;
            }
            // NOTE: Tr enters only the mixer input, never the residual stream (spec §3 step 11)
            rms_norm_f32(s.u, lo_rows(e, s.u, (size_t) T * H, T), s.x, hybrid ? s.tr : nullptr, nullptr, lw.input_norm, T, H, 0,
                         c.eps, st, produced_lo8(e, T));                                   // u: [2T, H]
            zamba2_prof_mark(e, PROF_NORM);
            err = mamba_mixer(e, v, L);
            if (!err.empty()) return err;
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
    // SSD chunk lists for steps that carry prefill chunks (ZAMBA2_SSD=1); decode-only steps keep the scan
    e->ssd_n_chunks = 0;
    if (e->use_ssd && hv.T > hv.S) {
        const int cmax = e->ssd_max_chunks;
        int32_t * hc = e->h_ssd_chunks;
        int n = 0;
        for (int q = 0; q < hv.S && n >= 0; ++q) {
            const int t0 = hv.cu_seqlens[q], len = hv.cu_seqlens[q + 1] - t0;
            hc[2 * cmax + q] = n;
            for (int o = 0; o < len; o += 64) {
                if (n == cmax) { n = -1; break; }
                hc[n] = t0 + o;
                hc[cmax + n] = len - o < 64 ? len - o : 64;
                ++n;
            }
            if (n >= 0) hc[2 * cmax + c.max_seqs + q] = n - hc[2 * cmax + q];
        }
        if (n > 0) {
            ZF_CUDA(cudaMemcpyAsync(e->ssd_chunks, hc, (2 * (size_t) cmax + 2 * (size_t) c.max_seqs) * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, st));
            e->ssd_n_chunks = n;
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
