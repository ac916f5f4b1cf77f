// The fused decode path against float64 references: skinny_gemm's computed-input modes (SKINNY_X_RMSNORM with
// an added stream and a bf16 tail, SKINNY_X_GATED_NORM from chunk sums, SKINNY_X_GELU_MUL), its conv epilogue
// (outputs and conv state against ref_causal_conv1d on the GEMM's own output), the weight preload before the
// PDL wait and the cross-item one (bitwise the same y as without them), the refusals, and mamba2_state_step_gated
// against the plain step (same state, y * silu(z), chunk sums of squares).
#include "test-harness.h"
#include "zamba2-common.cuh"

namespace {

// Each case runs with the input staged in shared memory (the default) and unstaged.
bool g_no_stage = false;
const char * stage_tag() { return g_no_stage ? " unstaged" : ""; }

struct fused_env {
    cudaStream_t stream = nullptr;  // a real stream: PDL launches need one
    dev_buf<float> work{(size_t) 1 << 20};
    dev_buf<int32_t> counters{4096};
    fused_env() {
        ZK_CHECK(cudaStreamCreate(&stream));
        ZK_CHECK(cudaMemset(counters.ptr, 0, 4096 * sizeof(int32_t)));
    }
    ~fused_env() { cudaStreamDestroy(stream); }
    void attach(skinny_gemm_args & a) {
        a.workspace = work.ptr;
        a.workspace_floats = (int64_t) work.n;
        a.counters = counters.ptr;
        a.counter_count = (int) counters.n;
    }
};

// Rows [M, ld] -> dense [M, n] from column col0.
vec cols(const vec & big, int M, int ld, int n, int col0 = 0) {
    vec out((size_t) M * n);
    for (int m = 0; m < M; ++m) for (int k = 0; k < n; ++k) out[(size_t) m * n + k] = big[(size_t) m * ld + col0 + k];
    return out;
}

std::string shape(int M, int N, int K) {
    return " M=" + std::to_string(M) + " [" + std::to_string(N) + "," + std::to_string(K) + "]";
}

// y = rmsnorm(x (+ add) | tail) . W^T, optionally with the conv epilogue on columns [col0, col0 + n_conv).
void test_rmsnorm(test_table & tab, test_rng & rng, fused_env & env, int M, int N, int K, int k1, bool add, int col0,
                  int n_conv, bool pdl) {
    const int ld_x = k1 + 8, ld_tail = K - k1 + 8;
    const vec x = rng.f32_values((size_t) M * ld_x, -2, 2);
    const vec xa = rng.f32_values((size_t) M * ld_x, -1, 1);
    const vec tail = rng.bf16_values((size_t) M * ld_tail, -2, 2);
    const vec nw = rng.bf16_values((size_t) K, 0.5, 1.5);
    const vec w = rng.bf16_values((size_t) N * K, -0.5, 0.5);
    dev_buf<float> dx(x.size()), dadd(xa.size()), dy((size_t) M * N);
    dev_buf<bf16> dtail(tail.size()), dnw(nw.size()), dw(w.size());
    dx.upload(x); dadd.upload(xa); dtail.upload(tail); dnw.upload(nw); dw.upload(w);
    // conv epilogue inputs: 10 slots, rows in distinct random slots
    const int slots = 10;
    vec state = rng.f32_values((size_t) slots * 3 * std::max(n_conv, 1), -1, 1);
    const vec cw = rng.bf16_values((size_t) std::max(n_conv, 1) * 4, -0.5, 0.5), cb = rng.bf16_values((size_t) std::max(n_conv, 1), -0.5, 0.5);
    ivec slot_of = {7, 2, 9, 0, 5, 1, 8, 3};
    slot_of.resize(M);
    dev_buf<float> dstate(state.size()), dconv((size_t) M * std::max(n_conv, 1));
    dev_buf<bf16> dcw(cw.size()), dcb(cb.size());
    dev_buf<int32_t> dslot(slot_of.size());
    dstate.upload(state); dcw.upload(cw); dcb.upload(cb); upload_ints(dslot, slot_of);

    skinny_gemm_args a{};
    a.x_mode = SKINNY_X_RMSNORM;
    a.x = dx.ptr;
    a.ld_x = ld_x;
    a.K = K;
    a.M = M;
    a.y_f32 = true;
    a.norm.w = dnw.ptr;
    a.norm.eps = 1e-5f;
    a.norm.add = add ? dadd.ptr : nullptr;
    a.norm.tail = k1 < K ? dtail.ptr : nullptr;
    a.norm.k1 = k1;
    a.norm.ld_tail = ld_tail;
    a.seg[0] = {dw.ptr, nullptr, nullptr, dy.ptr, N, N};
    a.n_seg = 1;
    if (n_conv > 0) a.conv = {dconv.ptr, dstate.ptr, dcw.ptr, dcb.ptr, dslot.ptr, col0, n_conv};
    a.pdl = pdl;
    a.no_stage = g_no_stage;
    env.attach(a);
    const bool ok = skinny_gemm(a, env.stream);
    ZK_LAUNCHED();
    const std::string name = std::string("fused rmsnorm") + stage_tag() + (add ? "+add" : "") + (k1 < K ? "|tail" : "") +
                             (n_conv ? " +conv" : "") + (pdl ? " pdl" : "") + shape(M, N, K);
    if (!ok) { tab.compare(name + " (refused)", {1.0}, {0.0}, 0.0); return; }
    const vec in = ref_rms_norm(cols(x, M, ld_x, k1), add ? cols(xa, M, ld_x, k1) : vec(), cols(tail, M, ld_tail, K - k1), nw,
                                M, k1, K - k1, 1e-5);
    const vec got = dy.download();
    tab.compare(name, got, ref_matmul_nt(in, w, vec(), M, N, K, 0.0), 3e-5);
    if (n_conv > 0) {  // the conv of the GEMM's own output: bitwise-close to causal_conv1d_decode
        ivec cu(M + 1);
        for (int m = 0; m <= M; ++m) cu[m] = m;
        const vec conv_ref = ref_causal_conv1d(cols(got, M, N, n_conv, col0), state, cw, cb, cu, slot_of, n_conv);
        tab.compare(name + " conv out", dconv.download(), conv_ref, TOL_F32);
        tab.compare(name + " conv state", dstate.download(), state, TOL_F32);
    }
}

// y [M, N] += gated_norm(g) . W^T: out_proj's arguments (g [M, K] fp32, gsq [M, ld_gsq] chunk sums, norm weight nw [K],
// W [N, K]), PDL on; the caller sets the staging variant.
skinny_gemm_args gated_args(const float * g, const float * gsq, int ld_gsq, const bf16 * nw, const bf16 * w, float * y, int M,
                            int N, int K, int group, int chunk) {
    skinny_gemm_args a{};
    a.x_mode = SKINNY_X_GATED_NORM;
    a.x = g;
    a.ld_x = K;
    a.K = K;
    a.M = M;
    a.y_f32 = true;
    a.accumulate = true;
    a.norm.w = nw;
    a.norm.eps = 1e-5f;
    a.norm.gsq = gsq;
    a.norm.chunk = chunk;
    a.norm.group = group;
    a.norm.ld_gsq = ld_gsq;
    a.seg[0] = {w, nullptr, nullptr, y, N, N};
    a.n_seg = 1;
    a.pdl = true;
    return a;
}

// x += gated_norm(g) . W^T with group scales from chunk sums of g^2 (what mamba2_state_step_gated writes).
void test_gated(test_table & tab, test_rng & rng, fused_env & env, int M, int N, int K, int groups, int chunk) {
    const int group = K / groups, n_chunks = K / chunk, ld_gsq = n_chunks + 3;
    const vec g = rng.f32_values((size_t) M * K, -2, 2);
    vec gsq((size_t) M * ld_gsq, 0.0);
    for (int m = 0; m < M; ++m) {
        for (int c = 0; c < n_chunks; ++c) {
            double t = 0;
            for (int k = c * chunk; k < (c + 1) * chunk; ++k) t += g[(size_t) m * K + k] * g[(size_t) m * K + k];
            gsq[(size_t) m * ld_gsq + c] = (double) (float) t;  // stored as fp32, as the kernel sees it
        }
    }
    const vec nw = rng.bf16_values((size_t) K, 0.5, 1.5), w = rng.bf16_values((size_t) N * K, -0.5, 0.5);
    const vec y0 = rng.f32_values((size_t) M * N, -1, 1);
    dev_buf<float> dg(g.size()), dgsq(gsq.size()), dy(y0.size());
    dev_buf<bf16> dnw(nw.size()), dw(w.size());
    dg.upload(g); dgsq.upload(gsq); dy.upload(y0); dnw.upload(nw); dw.upload(w);
    skinny_gemm_args a = gated_args(dg.ptr, dgsq.ptr, ld_gsq, dnw.ptr, dw.ptr, dy.ptr, M, N, K, group, chunk);
    a.no_stage = g_no_stage;
    env.attach(a);
    const bool ok = skinny_gemm(a, env.stream);
    ZK_LAUNCHED();
    const std::string name = std::string("fused") + stage_tag() + " gated norm G=" + std::to_string(groups) + " chunk " + std::to_string(chunk) + " +=" + shape(M, N, K);
    if (!ok) { tab.compare(name + " (refused)", {1.0}, {0.0}, 0.0); return; }
    vec in((size_t) M * K);
    for (int m = 0; m < M; ++m) {
        for (int q = 0; q < groups; ++q) {
            double t = 0;
            for (int c = q * group / chunk; c < (q + 1) * group / chunk; ++c) t += gsq[(size_t) m * ld_gsq + c];
            const double inv = 1.0 / std::sqrt(t / group + 1e-5);
            for (int k = q * group; k < (q + 1) * group; ++k) in[(size_t) m * K + k] = g[(size_t) m * K + k] * inv * nw[k];
        }
    }
    tab.compare(name, dy.download(), ref_matmul_nt(in, w, y0, M, N, K, 1.0), 3e-5);
}

// y = bf16(gelu(g) * u) . W^T (the down projection), bf16 or fp32 output.
void test_gelu(test_table & tab, test_rng & rng, fused_env & env, int M, int N, int F, bool out_f32) {
    const vec gu = rng.f32_values((size_t) M * 2 * F, -3, 3), w = rng.bf16_values((size_t) N * F, -0.5, 0.5);
    dev_buf<float> dgu(gu.size()), dyf((size_t) M * N);
    dev_buf<bf16> dw(w.size()), dyb((size_t) M * N);
    dgu.upload(gu); dw.upload(w);
    skinny_gemm_args a{};
    a.x_mode = SKINNY_X_GELU_MUL;
    a.x = dgu.ptr;
    a.ld_x = 2 * F;
    a.K = F;
    a.M = M;
    a.y_f32 = out_f32;
    a.seg[0] = {dw.ptr, nullptr, nullptr, out_f32 ? (void *) dyf.ptr : (void *) dyb.ptr, N, N};
    a.n_seg = 1;
    a.pdl = true;
    a.no_stage = g_no_stage;
    env.attach(a);
    const bool ok = skinny_gemm(a, env.stream);
    ZK_LAUNCHED();
    const std::string name = std::string("fused") + stage_tag() + " gelu*u " + (out_f32 ? "f32" : "bf16") + shape(M, N, F);
    if (!ok) { tab.compare(name + " (refused)", {1.0}, {0.0}, 0.0); return; }
    vec in = ref_gelu_mul(gu, M, F);
    for (auto & v : in) v = (double) __bfloat162float(__float2bfloat16_rn((float) v));  // the input is bf16, as gelu_mul's
    const vec ref = ref_matmul_nt(in, w, vec(), M, N, F, 0.0);
    tab.compare(name, out_f32 ? dyf.download() : dyb.download(), ref, out_f32 ? 1e-4 : TOL_BF16);
}

// Neither the preload of the first weights before the PDL wait, nor the cross-item preload of the next item's, nor
// the staging changes a bit of y for the same K slicing.
void test_preload_bitwise(test_table & tab, test_rng & rng, fused_env & env, skinny_x_mode mode, int M, int N, int K) {
    const vec x = rng.f32_values((size_t) M * K, -2, 2), w = rng.bf16_values((size_t) N * K, -0.5, 0.5);
    const vec nw = rng.bf16_values((size_t) K, 0.5, 1.5);
    dev_buf<float> dx(x.size()), dy((size_t) M * N);
    dev_buf<bf16> dw(w.size()), dnw(nw.size());
    dx.upload(x); dw.upload(w); dnw.upload(nw);
    vec got[5];
    for (int run = 0; run < 5; ++run) {  // default, late weights, unstaged, no second group, no cross-item preload
        skinny_gemm_args a{};
        a.x_mode = mode;
        a.x = dx.ptr;
        a.ld_x = K;
        a.K = K;
        a.M = M;
        a.y_f32 = true;
        a.norm.w = dnw.ptr;
        a.norm.eps = 1e-5f;
        a.norm.k1 = K;
        a.seg[0] = {dw.ptr, nullptr, nullptr, dy.ptr, N, N};
        a.n_seg = 1;
        a.pdl = true;
        a.late_weights = run == 1;
        a.no_stage = run == 2;
        a.split_k = 2;  // the same K slicing for every run
        a.no_second_group = run == 3;
        a.no_cross_preload = run == 4;
        dy.poison();
        env.attach(a);
        const bool ok = skinny_gemm(a, env.stream);
        ZK_LAUNCHED();
        if (!ok) { tab.compare("preload bitwise (refused)", {1.0}, {0.0}, 0.0); return; }
        got[run] = dy.download();
    }
    const std::string tag = std::string(mode == SKINNY_X_F32 ? "f32" : "rmsnorm") + shape(M, N, K);
    tab.compare("preload = late weights, bitwise, " + tag, got[0], got[1], 0.0);
    tab.compare("staged = unstaged, bitwise, " + tag, got[0], got[2], 0.0);
    tab.compare("second group = none, bitwise, " + tag, got[0], got[3], 0.0);
    tab.compare("cross-item preload = none, bitwise, " + tag, got[0], got[4], 0.0);
}

void test_refusals(test_table & tab, fused_env & env) {
    dev_buf<float> dx(4096), dy(4096);
    dev_buf<bf16> dw(4096), dnw(64);
    skinny_gemm_args a{};
    a.x_mode = SKINNY_X_RMSNORM;
    a.x = dx.ptr;
    a.ld_x = 64;
    a.K = 64;
    a.M = 9;  // computed inputs take at most 8 rows
    a.y_f32 = true;
    a.norm.w = dnw.ptr;
    a.norm.k1 = 64;
    a.seg[0] = {dw.ptr, nullptr, nullptr, dy.ptr, 16, 16};
    a.n_seg = 1;
    env.attach(a);
    const bool m9 = skinny_gemm(a, env.stream);
    a.M = 2;
    a.norm.k1 = 60;  // not a multiple of 8
    const bool k1 = skinny_gemm(a, env.stream);
    a.norm.k1 = 64;
    a.accumulate = true;  // the conv epilogue needs y = result
    a.conv = {dy.ptr, dy.ptr, dw.ptr, nullptr, reinterpret_cast<const int32_t *>(dx.ptr), 0, 16};
    const bool conv_acc = skinny_gemm(a, env.stream);
    a.x_mode = SKINNY_X_GATED_NORM;  // gsq missing
    a.accumulate = false;
    a.conv = {};
    const bool no_gsq = skinny_gemm(a, env.stream);
    ZK_LAUNCHED();
    tab.compare_ints("fused modes refuse M 9, k1 % 8, conv +=, no gsq", {m9, k1, conv_acc, no_gsq}, {0, 0, 0, 0});
}

// mamba2_state_step_gated = mamba2_state_step with y * silu(z), plus chunk sums of y^2; same state.
void test_state_step_gated(test_table & tab, test_rng & rng, int nh, int P, int G, int N, int S) {
    const int d = nh * P, ld = d + 2 * G * N + 8, ld_dt = nh + 5, ld_z = d + 16, slots = S + 2;
    const vec xbc = rng.f32_values((size_t) S * ld, -1, 1), dt = rng.f32_values((size_t) S * ld_dt, -2, 2);
    const vec z = rng.f32_values((size_t) S * ld_z, -3, 3);
    const vec bias = rng.f32_values(nh, -1, 1), alog = rng.f32_values(nh, -1, 1), dsk = rng.f32_values(nh, -1, 1);
    const vec state = rng.f32_values((size_t) slots * nh * P * N, -1, 1);
    ivec cu(S + 1), slot_of(S);
    for (int s = 0; s <= S; ++s) cu[s] = s;
    for (int s = 0; s < S; ++s) slot_of[s] = (s * 3 + 1) % slots;
    dev_buf<float> dx(xbc.size()), ddt(dt.size()), dz(z.size()), db(nh), da(nh), dd(nh);
    dev_buf<float> st1(state.size()), st2(state.size()), y1((size_t) S * d), y2((size_t) S * d);
    const int chunk = mamba2_state_step_chunk(P, N);
    dev_buf<float> gsq((size_t) S * std::max(1, d / std::max(chunk, 1)));
    dev_buf<int32_t> dcu(cu.size()), dslot(slot_of.size());
    dx.upload(xbc); ddt.upload(dt); dz.upload(z); db.upload(bias); da.upload(alog); dd.upload(dsk);
    st1.upload(state); st2.upload(state); upload_ints(dcu, cu); upload_ints(dslot, slot_of);
    const bool ok1 = mamba2_state_step(y1.ptr, st1.ptr, dx.ptr, ld, ddt.ptr, ld_dt, db.ptr, da.ptr, dd.ptr, dcu.ptr, dslot.ptr, S,
                                       nh, P, G, N, 0);
    const bool ok2 = mamba2_state_step_gated(y2.ptr, gsq.ptr, dz.ptr, ld_z, st2.ptr, dx.ptr, ld, ddt.ptr, ld_dt, db.ptr, da.ptr,
                                             dd.ptr, dcu.ptr, dslot.ptr, S, nh, P, G, N, 0);
    ZK_LAUNCHED();
    const std::string tag = "state step gated nh=" + std::to_string(nh) + " P=" + std::to_string(P) + " N=" + std::to_string(N) +
                            " S=" + std::to_string(S);
    if (!ok1 || !ok2) { tab.compare(tag + " (refused)", {1.0}, {0.0}, 0.0); return; }
    const vec plain = y1.download(), gated = y2.download();
    vec ref((size_t) S * d), sums((size_t) S * (d / chunk), 0.0);
    for (int s = 0; s < S; ++s) {
        for (int c = 0; c < d; ++c) {
            const double zz = z[(size_t) s * ld_z + c];
            ref[(size_t) s * d + c] = plain[(size_t) s * d + c] * (zz / (1.0 + std::exp(-zz)));
            sums[(size_t) s * (d / chunk) + c / chunk] += gated[(size_t) s * d + c] * gated[(size_t) s * d + c];
        }
    }
    tab.compare(tag + " y*silu(z)", gated, ref, TOL_F32);
    tab.compare(tag + " chunk sums", gsq.download(), sums, TOL_F32);
    tab.compare(tag + " state = plain step", st2.download(), st1.download(), 0.0);
}

// The decode chain state step -> out_proj under PDL, the step triggering before its wait (the engine's default:
// out_proj's CTAs start and preload while in_proj and the step still run), against plain launches: the same bits.
// Two layers back to back, each with its own state pool as in the engine (a layer's state is read before the
// step's wait: only that layer's step, one step earlier, writes it).
void test_state_out_proj_pdl(test_table & tab, test_rng & rng, fused_env & env) {
    const int nh = 8, P = 64, G = 1, N = 128, S = 1, d = nh * P, ld = d + 2 * G * N, H = 200;
    const int chunk = mamba2_state_step_chunk(P, N);
    const vec xbc = rng.f32_values((size_t) S * ld, -1, 1), dt = rng.f32_values((size_t) S * nh, -2, 2);
    const vec z = rng.f32_values((size_t) S * d, -3, 3), state = rng.f32_values((size_t) 2 * 2 * nh * P * N, -1, 1);
    const vec bias = rng.f32_values(nh, -1, 1), alog = rng.f32_values(nh, -1, 1), dsk = rng.f32_values(nh, -1, 1);
    const vec nw = rng.bf16_values((size_t) d, 0.5, 1.5), w = rng.bf16_values((size_t) H * d, -0.5, 0.5);
    const vec x0 = rng.f32_values((size_t) S * H, -1, 1);
    dev_buf<float> dx(xbc.size()), ddt(dt.size()), dz(z.size()), db(nh), da(nh), dd(nh), dst(state.size());
    dev_buf<float> dy((size_t) S * d), dgsq((size_t) S * (d / chunk)), dres(x0.size());
    dev_buf<bf16> dnw(nw.size()), dw(w.size());
    dev_buf<int32_t> dcu(2), dslot(1);
    dx.upload(xbc); ddt.upload(dt); dz.upload(z); db.upload(bias); da.upload(alog); dd.upload(dsk);
    dnw.upload(nw); dw.upload(w);
    upload_ints(dcu, {0, 1}); upload_ints(dslot, {1});
    const bool pdl_was = zk_pdl_enabled(), early_was = zk_state_step_early_trigger();
    vec got[2];
    bool ok = true;
    for (int run = 0; run < 2; ++run) {  // 0: plain launches; 1: PDL with the early trigger
        zk_pdl_enabled() = run == 1;
        zk_state_step_early_trigger() = run == 1;
        dst.upload(state);
        dres.upload(x0);
        for (int layer = 0; layer < 2; ++layer) {  // the same weights twice; the second reads the first's residual
            float * pool = dst.ptr + (size_t) layer * 2 * nh * P * N;  // [2 slots, nh, P, N] per layer
            ok = ok && mamba2_state_step_gated(dy.ptr, dgsq.ptr, dz.ptr, d, pool, dx.ptr, ld, ddt.ptr, nh, db.ptr, da.ptr, dd.ptr,
                                               dcu.ptr, dslot.ptr, S, nh, P, G, N, env.stream);
            skinny_gemm_args a = gated_args(dy.ptr, dgsq.ptr, d / chunk, dnw.ptr, dw.ptr, dres.ptr, S, H, d, d, chunk);
            a.pdl = run == 1;
            env.attach(a);
            ok = ok && skinny_gemm(a, env.stream);
        }
        ZK_CHECK(cudaStreamSynchronize(env.stream));
        ZK_LAUNCHED();
        got[run] = dres.download();
    }
    zk_pdl_enabled() = pdl_was;
    zk_state_step_early_trigger() = early_was;
    if (!ok) { tab.compare("state step -> out_proj, PDL early trigger (refused)", {1.0}, {0.0}, 0.0); return; }
    tab.compare("state step -> out_proj, PDL early trigger = plain launches, bitwise", got[1], got[0], 0.0);
}

void test_skinny_fused(test_table & tab, test_rng & rng) {
    fused_env env;
    for (int variant = 0; variant < 2; ++variant)
    for (int M : {1, 3, 8}) {
        g_no_stage = variant == 1;
        test_rmsnorm(tab, rng, env, M, 40, 264, 136, false, 0, 0, false);    // norm(x | tail)
        test_rmsnorm(tab, rng, env, M, 333, 1024, 1024, true, 0, 0, true);  // norm(x + add), split-K
        test_rmsnorm(tab, rng, env, M, 88, 256, 256, true, 24, 45, true);    // with the conv epilogue
        test_gated(tab, rng, env, M, 72, 512, 1, 32);
        test_gated(tab, rng, env, M, 200, 1024, 4, 64);
        test_gelu(tab, rng, env, M, 48, 328, false);
        test_gelu(tab, rng, env, M, 130, 1024, true);
    }
    g_no_stage = false;
    test_rmsnorm(tab, rng, env, 1, 8512, 2048, 2048, true, 4096, 4352, true);  // 1.2B in_proj at b1
    test_gated(tab, rng, env, 1, 2048, 4096, 1, 32);                           // 1.2B out_proj at b1
    test_preload_bitwise(tab, rng, env, SKINNY_X_F32, 1, 2048, 4096);
    test_preload_bitwise(tab, rng, env, SKINNY_X_RMSNORM, 4, 700, 2048);
    test_preload_bitwise(tab, rng, env, SKINNY_X_F32, 1, 16000, 1024);     // ~8 items per CTA (split-K 2)
    test_preload_bitwise(tab, rng, env, SKINNY_X_RMSNORM, 4, 8512, 2048);  // ~4 items per CTA (M 4: both stagings
                                                                           // reduce in the same order)
    test_refusals(tab, env);
    test_state_step_gated(tab, rng, 8, 64, 1, 128, 3);
    test_state_step_gated(tab, rng, 6, 64, 2, 64, 2);
    test_state_step_gated(tab, rng, 8, 32, 1, 16, 5);   // a block spans 8 heads
    test_state_out_proj_pdl(tab, rng, env);
}

}  // namespace

ZK_REGISTER_TEST(test_skinny_fused);
