// The layers of the Zamba2 forward (spec §3) for any step: the shared attention + MLP block and the Mamba2
// layer, through the general GEMM paths (zamba2-step-gemm.cc). Decode steps of few sequences take
// zamba2-decode-fused.cc instead.
#include <cmath>

#include "zamba2-forward.h"

// The shared attention + MLP block at hybrid invocation h; leaves Tr = block output . W_linear^T in s.tr.
// fused (fused_decode_step): the two norms and the GELU run inside the GEMVs that consume them.
std::string shared_block(zamba2_engine * e, const step_view & v, int h, const zamba2_layer_ptrs & lw, bool fused,
                         const bf16 ** deferred_down) {
    const zamba2_config & c = e->cfg;
    zamba2_scratch & s = e->s;
    const int T = v.T, H = c.hidden, H2 = 2 * c.hidden, F = c.ffn;
    const zamba2_block_ptrs & bw = e->blocks[c.hybrid_block_ids[h]];
    const zamba2_adapter_ptrs & aw = e->adapters[h];
    cudaStream_t st = e->stream;
    // the fused path reads the invocation's merged weights when they were made (zamba2-decode-weights.cc)
    const zamba2_decode_weights * dw = fused && (size_t) h < e->decode_w.size() ? &e->decode_w[h] : nullptr;
    const bool merged_qkv = dw && dw->q;
    float * outs[3] = {s.q, s.k, s.vv};
    const bf16 * w_main[3] = {bw.q, bw.k, bw.v};
    const bf16 * w0[3] = {aw.q0, aw.k0, aw.v0};
    const bf16 * w1[3] = {aw.q1, aw.k1, aw.v1};
    if (merged_qkv) {
        const bf16 * merged[3] = {dw->q, dw->k, dw->v};
        for (int i = 0; i < 3; ++i) {
            w_main[i] = merged[i];
            w0[i] = w1[i] = nullptr;
        }
    }
    if (fused) {  // norm(X | E) computed by the q/k/v GEMVs as they load it
        if (!skinny_qkv(e, fused_block_input(e, v, bw), outs, w_main, w0, w1)) return "fused decode: skinny_gemm refused q/k/v";
    } else {
        rms_norm_f32(s.u2, lo_rows(e, s.u2, (size_t) T * H2, T), s.x, nullptr, s.e, bw.input_norm, T, H, H, c.eps, st,
                     produced_lo8(e, T));                                                   // u2: [2T, 2H] split norm(X | E)
        zamba2_prof_mark(e, PROF_NORM);
        const skinny_x_mode mode = e->split_inputs ? SKINNY_X_SPLIT : SKINNY_X_BF16;
        const bf16 * x_lo = e->split_inputs ? s.u2 + (size_t) T * H2 : nullptr;           // u2: [2T, 2H] split
        if (!skinny_qkv(e, skinny_args(e, mode, s.u2, x_lo, H2, H2, T, false), outs, w_main, w0, w1)) {
            for (int i = 0; i < 3; ++i) ZF_SPLIT(outs[i], H2, s.u2, w_main[i], T, H2, H2, false, w0[i], w1[i]);  // [T, 2H]
        }
    }
    zamba2_prof_mark(e, PROF_GEMM);
    bf16 * k_pool = e->kv_pool + (size_t) h * 2 * e->kv_layer_elems();                  // [pages, heads, 16, D]
    bf16 * v_pool = k_pool + e->kv_layer_elems();
    const float scale = 1.0f / std::sqrt((float) c.kv_channels);
    // decode steps: the attention kernel applies the rotary embedding and writes this step's k, v into the pools
    const bool decoded = T == v.S && paged_attention_decode(s.attf, s.q, k_pool, v_pool, v.block_tables, v.W, v.positions, T,
                                                            c.heads, c.head_dim, scale, st, s.k, s.vv, v.kv_index,
                                                            c.use_rope ? c.rope_theta : 0.0f);  // attf: [T, 2H]
    if (!decoded) {
        if (c.use_rope) {
            rope_neox_qk_inplace(s.q, s.k, v.positions, T, c.heads, c.head_dim, c.rope_theta, st);  // q, k: [T, heads, D]
        }
        kv_cache_write(k_pool, v_pool, s.k, s.vv, v.kv_index, T, c.heads, c.head_dim, st);
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
    if (fused) {  // pre-FF norm inside gate_up, GELU(g) * u inside down
        const std::string err = fused_block_mlp(e, v, bw, aw, dw, deferred_down);          // m [T, H] or tr
        if (!err.empty()) return err;
        if (dw && dw->down_linear) {  // down already wrote tr = act . (W_linear . W_down)^T
            zamba2_prof_mark(e, PROF_GEMM);
            return "";
        }
    } else {
        rms_norm_f32(s.vn, lo_rows(e, s.vn, (size_t) T * H, T), s.a, nullptr, nullptr, bw.pre_ff_norm, T, H, 0, c.eps, st,
                     produced_lo8(e, T));                                                   // vn: [2T, H]
        zamba2_prof_mark(e, PROF_NORM);
        ZF_SPLIT(s.gu, 2 * F, s.vn, bw.gate_up, T, 2 * F, H, false, aw.gu0, aw.gu1);      // gu: [T, 2F]
        zamba2_prof_mark(e, PROF_GEMM);
        gelu_mul(s.act, s.gu, T, F, st);                                                   // act: [T, F]
        zamba2_prof_mark(e, PROF_ELEM);
        ZF_GEMM(s.m, GEMM_OUT_BF16, H, s.act, F, bw.down, T, H, F, 0.0f, st);             // m: [T, H]
    }
    ZF_GEMM(s.tr, GEMM_OUT_F32, H, s.m, H, lw.linear, T, H, H, 0.0f, st);                 // tr: [T, H]
    zamba2_prof_mark(e, PROF_GEMM);
    return "";
}

// Mamba2 layer L: u = rmsnorm(x (+ Tr on hybrid layers)) (split), then the mixer on u, added into the fp32
// residual stream s.x.
std::string mamba_layer(zamba2_engine * e, const step_view & v, int L, bool hybrid) {
    const zamba2_config & c = e->cfg;
    zamba2_scratch & s = e->s;
    const zamba2_layer_ptrs & lw = e->layers[L];
    const int T = v.T, H = c.hidden, d = c.d_inner, ipo = c.in_proj_out(), cd = c.conv_dim();
    cudaStream_t st = e->stream;
    // NOTE: Tr enters only the mixer input, never the residual stream (spec §3 step 11)
    rms_norm_f32(s.u, lo_rows(e, s.u, (size_t) T * H, T), s.x, hybrid ? s.tr : nullptr, nullptr, lw.input_norm, T, H, 0,
                 c.eps, st, produced_lo8(e, T));                                           // u: [2T, H]
    zamba2_prof_mark(e, PROF_NORM);
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
    const int32_t * ck = e->ssd_chunks;  // t0 | len | seq_chunk0 | seq_nchunks | one_t | one_slot
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
    if (chunked && e->ssd_n_one > 0) {  // the step's one-token sequences (no SSD chunk): token rows and slots listed
        const int32_t * one_t = ck + 2 * cmax + 2 * c.max_seqs, * one_slot = one_t + c.max_seqs;
        if (!mamba2_state_step(s.y, ssm_state, s.xbc, cd, s.zx + d + cd, ipo, lw.dt_bias, lw.a_log, lw.d, one_t, one_slot,
                               e->ssd_n_one, c.n_mamba_heads, c.mamba_head_dim, c.ngroups, c.d_state, st)) {  // y: [T, d]
            return "mixed step: the state step refused the one-token sequences";  // ssd_one_by_step checked its dims
        }
    }
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
