// Decode steps of at most ZK_FUSE_MAX_M sequences: every layer with the small kernels folded into the GEMVs.
//
// At batch 1 a Mamba2 layer was six kernels (rmsnorm, in_proj, conv, state step, gated norm, out_proj) of which
// four are latency-bound single-wave launches (~2.5-5 us each on the H200, ~15 us of a ~31 us layer). Here:
//   in_proj:  skinny_gemm SKINNY_X_RMSNORM (each CTA reduces the <= 8 rows of x (+ Tr) itself, then normalizes
//             while it loads) with the conv epilogue (the depthwise conv of the xBC columns and the conv-state
//             update, per output channel: no other thread touches that channel);
//   state:    mamba2_state_step_gated: y * silu(z) and the chunk sums of its squares;
//   out_proj: skinny_gemm SKINNY_X_GATED_NORM (group scales from the chunk sums), accumulated into s.x.
// The shared block's input norm rides in its q/k/v GEMVs (norm(X | E)), the pre-FF norm in gate_up, and
// GELU(g) * u in down. Every fused input is the same fp32 value the separate kernels produce, split into
// bf16 hi + lo the same way, so the results differ from the unfused path only by the order of the norms' sums.
#include "zamba2-forward.h"

bool fused_decode_step(const zamba2_engine * e, const step_view & v) {
    const zamba2_config & c = e->cfg;
    if (!e->fuse_decode || !e->split_inputs || !e->use_decode_step) return false;
    if (v.T < 1 || v.T != v.S || v.T > ZK_FUSE_MAX_M || !skinny_step(e, v.T)) return false;
    const int chunk = mamba2_state_step_chunk(c.mamba_head_dim, c.d_state);
    if (chunk <= 0 || c.ngroups < 1 || c.ngroups > 8 || c.d_inner % c.ngroups != 0) return false;
    const int group = c.d_inner / c.ngroups;
    const int r = c.adapter_rank;
    return c.d_inner % chunk == 0 && group % chunk == 0 && group % 8 == 0 && c.hidden % 8 == 0 && c.ffn % 8 == 0 &&
           (r == 0 || r % 8 == 0);
}

// The rmsnorm input of a GEMV: s = x [T, k1] fp32 (+ add) | tail [T, K - k1] bf16, times norm weight w [K].
static skinny_gemm_args rms_input(zamba2_engine * e, const float * x, const float * add, const bf16 * tail, int k1, int K,
                                  const bf16 * w, int T) {
    skinny_gemm_args a = skinny_args(e, SKINNY_X_RMSNORM, x, nullptr, k1, K, T, false);
    a.norm.w = w;
    a.norm.eps = e->cfg.eps;
    a.norm.add = add;
    a.norm.tail = tail;
    a.norm.k1 = k1;
    a.norm.ld_tail = K - k1;
    return a;
}

skinny_gemm_args fused_block_input(zamba2_engine * e, const step_view & v, const zamba2_block_ptrs & bw) {
    const int H = e->cfg.hidden;
    return rms_input(e, e->s.x, nullptr, e->s.e, H, 2 * H, bw.input_norm, v.T);  // norm(X | E): [T, 2H]
}

std::string fused_block_down(zamba2_engine * e, const step_view & v, const bf16 * down_linear) {
    const zamba2_config & c = e->cfg;
    skinny_gemm_args dn = skinny_args(e, SKINNY_X_GELU_MUL, e->s.gu, nullptr, 2 * c.ffn, c.ffn, v.T, false);  // [T, F]
    dn.seg[0] = {down_linear, nullptr, nullptr, e->s.tr, c.hidden, c.hidden};                     // tr: [T, H] fp32
    dn.n_seg = 1;
    if (!skinny_gemm(dn, e->stream)) return "fused decode: skinny_gemm refused down";
    return "";
}

std::string fused_block_mlp(zamba2_engine * e, const step_view & v, const zamba2_block_ptrs & bw, const zamba2_adapter_ptrs & aw,
                            const zamba2_decode_weights * dw, const bf16 ** deferred_down) {
    const zamba2_config & c = e->cfg;
    zamba2_scratch & s = e->s;
    const int T = v.T, H = c.hidden, F = c.ffn;
    const skinny_gemm_args gu = rms_input(e, s.a, nullptr, nullptr, H, H, bw.pre_ff_norm, T);  // norm(a): [T, H]
    const bool merged_gu = dw && dw->gate_up;
    std::string err = skinny_gemm_lora(e, gu, s.gu, 2 * F, merged_gu ? dw->gate_up : bw.gate_up, 2 * F, false,
                                       merged_gu ? nullptr : aw.gu0, merged_gu ? nullptr : aw.gu1);  // gu: [T, 2F]
    if (!err.empty()) return err;
    zamba2_prof_mark(e, PROF_GEMM);
    if (dw && dw->down_linear) {  // tr = bf16(gelu(g) * u) . (W_linear . W_down)^T: [T, H] fp32
        if (deferred_down) {      // the caller's persistent launch runs it (mamba_run_persistent)
            *deferred_down = dw->down_linear;
            return "";
        }
        return fused_block_down(e, v, dw->down_linear);
    }
    skinny_gemm_args dn = skinny_args(e, SKINNY_X_GELU_MUL, s.gu, nullptr, 2 * F, F, T, false);  // bf16(gelu(g) * u): [T, F]
    dn.y_f32 = false;
    dn.seg[0] = {bw.down, nullptr, nullptr, s.m, H, H};                                         // m: [T, H] bf16
    dn.n_seg = 1;
    if (!skinny_gemm(dn, e->stream)) return "fused decode: skinny_gemm refused down";
    return "";
}

std::string mamba_layer_fused(zamba2_engine * e, const step_view & v, int L, bool hybrid) {
    const zamba2_config & c = e->cfg;
    zamba2_scratch & s = e->s;
    const zamba2_layer_ptrs & lw = e->layers[L];
    const int T = v.T, H = c.hidden, d = c.d_inner, ipo = c.in_proj_out(), cd = c.conv_dim();
    cudaStream_t st = e->stream;
    float * conv_state = e->conv_pool + (size_t) L * e->conv_layer_elems();               // [slots, 3, cd]
    float * ssm_state = e->ssm_pool + (size_t) L * e->ssm_layer_elems();                  // [slots, nh, P, N]

    // zx [T, ipo] = norm(x (+ Tr)) . in_proj^T; xbc [T, cd] = silu(conv(zx[:, d : d + cd])), conv_state updated
    // NOTE: Tr enters only the mixer input, never the residual stream (spec §3 step 11)
    skinny_gemm_args in = rms_input(e, s.x, hybrid ? s.tr : nullptr, nullptr, H, H, lw.input_norm, T);
    in.seg[0] = {lw.in_proj, nullptr, nullptr, s.zx, ipo, ipo};
    in.n_seg = 1;
    in.conv = {s.xbc, conv_state, lw.conv_w, lw.conv_b, v.seq_slot, d, cd};
    if (!skinny_gemm(in, st)) return "fused decode: skinny_gemm refused in_proj";
    zamba2_prof_mark(e, PROF_GEMM);

    // y [T, d] = (C.S + D x) * silu(z), gsq [T, d / chunk]
    if (!mamba2_state_step_gated(s.y, s.gsq, s.zx, ipo, ssm_state, s.xbc, cd, s.zx + d + cd, ipo, lw.dt_bias, lw.a_log, lw.d,
                                 v.cu_seqlens, v.seq_slot, v.S, c.n_mamba_heads, c.mamba_head_dim, c.ngroups, c.d_state, st)) {
        return "fused decode: mamba2_state_step_gated refused the dims";
    }
    zamba2_prof_mark(e, PROF_SCAN);

    // x += gated_norm(y) . out_proj^T
    const int chunk = mamba2_state_step_chunk(c.mamba_head_dim, c.d_state);
    skinny_gemm_args out = skinny_args(e, SKINNY_X_GATED_NORM, s.y, nullptr, d, d, T, true);
    out.norm.w = lw.norm;
    out.norm.eps = 1e-5f;  // the gated norm's eps (as the unfused path)
    out.norm.gsq = s.gsq;
    out.norm.chunk = chunk;
    out.norm.group = d / c.ngroups;
    out.norm.ld_gsq = d / chunk;
    out.seg[0] = {lw.out_proj, nullptr, nullptr, s.x, H, H};                                // x: [T, H]
    out.n_seg = 1;
    if (!skinny_gemm(out, st)) return "fused decode: skinny_gemm refused out_proj";
    zamba2_prof_mark(e, PROF_GEMM);
    return "";
}
