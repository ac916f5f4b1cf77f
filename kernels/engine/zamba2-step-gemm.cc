// The GEMM paths of one engine step: skinny_gemm for small steps, cuBLASLt otherwise, split (hi + lo) inputs
// in bf16 or with an FP8 lo term, LoRA pairs. Declared in zamba2-forward.h.
#include "zamba2-forward.h"

#include "../include/zamba2-launch.cuh"

skinny_gemm_args skinny_args(zamba2_engine * e, skinny_x_mode mode, const void * x, const bf16 * x_lo, int ld_x, int K, int M,
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
    a.late_weights = e->skinny_late_weights;
    a.no_stage = e->skinny_no_stage;
    a.no_second_group = e->skinny_no_second_group;
    a.split_k = e->skinny_split_k;
    a.no_half_tiles = e->skinny_no_half_tiles;
    a.no_conv_stage = e->skinny_no_conv_stage;
    a.no_cross_preload = e->skinny_no_cross_preload;
    return a;
}

int engine_gemm(zamba2_engine * e, void * y, gemm_out_type y_type, int ld_y, const bf16 * x, int ld_x,
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

// Steps that compute the lo term of split inputs in FP8 (large steps, see zamba2-fp8.h): their producers
// (norms, split_rows_bf16) write hi rows plus lo8 = s.lo8 instead of bf16 lo rows.
bool lo_fp8_step(const zamba2_engine * e, int T) {
    return e->lo_fp8 && e->split_inputs && T >= e->lo_fp8_min_t && !skinny_step(e, T);
}


// On an FP8 step, fills the bf16 lo rows of x2 from s.lo8 for the GEMMs that need the [hi; lo] form (LoRA, a
// shape without an FP8 algorithm). Once per producer: s.lo_rows_for remembers which input has them.
static void need_lo_rows(zamba2_engine * e, const bf16 * x2, int T, int K) {
    if (e->s.lo_rows_for == x2) return;
    fp8_lo_to_bf16(const_cast<bf16 *>(x2) + (size_t) T * K, e->s.lo8, T, K, e->stream);  // x2 lo rows: [T, K]
    e->s.lo_rows_for = x2;
}

// y [M, N] fp32 (+)= x . w^T (+ (x . w0^T) . w1^T) through skinny_gemm, x as xs describes it; LoRA in two
// launches (lora3 [M, r] = x . w0^T, then main + lora3 . w1^T as the second operand).
enum skinny_lora_outcome { SKINNY_LORA_DONE, SKINNY_LORA_REFUSED, SKINNY_LORA_REFUSED_AFTER_LORA };
static skinny_lora_outcome skinny_lora_launch(zamba2_engine * e, const skinny_gemm_args & xs, float * y, int ld_y,
                                              const bf16 * w, int N, bool accumulate, const bf16 * w0, const bf16 * w1) {
    const int r = e->cfg.adapter_rank;
    if (w0) {
        skinny_gemm_args a0 = xs;
        a0.accumulate = false;
        a0.seg[0] = {w0, nullptr, nullptr, e->s.lora3, r, r};  // lora3: [M, r]
        a0.n_seg = 1;
        if (!skinny_gemm(a0, e->stream)) return SKINNY_LORA_REFUSED;
    }
    skinny_gemm_args a = xs;
    a.accumulate = accumulate;
    a.seg[0] = {w, w0 ? w1 : nullptr, w0 ? e->s.lora3 : nullptr, y, N, ld_y};  // y: [M, N]
    a.n_seg = 1;
    a.ld_x2 = r;
    a.K2 = r;
    if (skinny_gemm(a, e->stream)) return SKINNY_LORA_DONE;
    return w0 ? SKINNY_LORA_REFUSED_AFTER_LORA : SKINNY_LORA_REFUSED;
}

// y [T, N] fp32 (+)= x . w^T for a split input x2 = [hi; lo] ([2T, K] bf16). Three forms:
//  - skinny steps: one skinny_gemm reading hi and lo in registers (W read once);
//  - FP8 steps (lo_fp8_weight): hi . w^T in bf16 into y, then lo8 . w8^T in FP8 added to columns [lo_n0, N)
//    (lo_n0 > 0 leaves the first columns with the hi term only: in_proj's z rows with ZAMBA2_SPLIT_Z=0);
//  - otherwise one cuBLASLt GEMM over the 2T rows into ysplit (W read once), halves summed by combine_halves.
// With a LoRA pair (w0 [r, K], w1 [N, r]), x2 . w0^T . w1^T is added for both halves.
std::string split_gemm(zamba2_engine * e, float * y, int ld_y, const bf16 * x2, const bf16 * w, int T, int N, int K,
                              bool accumulate, const bf16 * w0, const bf16 * w1, int lo_n0) {
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
        switch (skinny_lora_launch(e, skinny_args(e, mode, x2, x_lo, K, K, T, false), y, ld_y, w, N, accumulate, w0, w1)) {
            case SKINNY_LORA_DONE: return "";
            case SKINNY_LORA_REFUSED_AFTER_LORA: return "skinny_gemm refused a LoRA shape after its first half ran";
            case SKINNY_LORA_REFUSED: break;  // nothing enqueued: the general path below
        }
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
bf16 * lo_rows(const zamba2_engine * e, bf16 * hi, size_t n_elems, int T) {
    return e->split_inputs && !lo_fp8_step(e, T) ? hi + n_elems : nullptr;
}

// The lo8 output of a split input's producer on FP8 steps (nullptr otherwise); s.lo8 then holds this input's lo.
uint8_t * produced_lo8(zamba2_engine * e, int T) {
    if (!lo_fp8_step(e, T)) return nullptr;
    e->s.lo_rows_for = nullptr;  // the bf16 lo rows of any earlier input no longer match s.lo8
    return e->s.lo8;
}

// q, k, v ([T, 2H] each) of a skinny step in two launches: lora3 [T, 3r] = x . [q0; k0; v0]^T, then
// out_i = x . w_i^T + lora3[:, i r : (i+1) r] . w1_i^T (three segments); x as xs describes it (x_mode, x, x_lo,
// ld_x, K = 2H, M = T, norm). False: not a skinny step or a shape skinny_gemm refuses (the caller runs the
// general path, which recomputes lora3).
bool skinny_qkv(zamba2_engine * e, const skinny_gemm_args & xs, float * const outs[3], const bf16 * const w_main[3],
                const bf16 * const w0[3], const bf16 * const w1[3]) {
    const zamba2_config & c = e->cfg;
    zamba2_scratch & s = e->s;
    const int H2 = 2 * c.hidden, r = c.adapter_rank;
    if (!skinny_step(e, xs.M)) return false;
    const bool lora = w0[0] && w0[1] && w0[2];
    if (!lora && (w0[0] || w0[1] || w0[2])) return false;
    skinny_gemm_args a = xs;
    a.n_seg = 3;
    a.ld_x2 = 3 * r;
    a.K2 = r;
    for (int i = 0; i < 3; ++i) a.seg[i] = {w_main[i], lora ? w1[i] : nullptr, lora ? s.lora3 + i * r : nullptr, outs[i], H2, H2};
    if (lora) {
        skinny_gemm_args a0 = xs;
        a0.n_seg = 3;
        for (int i = 0; i < 3; ++i) a0.seg[i] = {w0[i], nullptr, nullptr, s.lora3 + i * r, r, 3 * r};  // lora3: [T, 3r]
        if (r % 8 != 0) return false;  // the second launch's rank rule (K2 = r), checked before enqueuing the first
        if (!skinny_gemm(a0, e->stream)) return false;
    }
    return skinny_gemm(a, e->stream);
}

// y [M, N] fp32 (+)= x . w^T (+ (x . w0^T) . w1^T) through skinny_gemm only, x as xs describes it; LoRA in
// two launches (lora3 [M, r], then main + second operand). For the fused decode path, whose inputs exist only
// as skinny_gemm computes them: a refusal is an error.
std::string skinny_gemm_lora(zamba2_engine * e, const skinny_gemm_args & xs, float * y, int ld_y, const bf16 * w, int N,
                             bool accumulate, const bf16 * w0, const bf16 * w1) {
    switch (skinny_lora_launch(e, xs, y, ld_y, w, N, accumulate, w0, w1)) {
        case SKINNY_LORA_DONE: return "";
        case SKINNY_LORA_REFUSED_AFTER_LORA: return "skinny_gemm refused a fused input";
        default: return w0 ? "skinny_gemm refused a fused LoRA input" : "skinny_gemm refused a fused input";
    }
}
