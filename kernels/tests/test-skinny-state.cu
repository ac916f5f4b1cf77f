// skinny_gemm's state epilogue (in_proj of a decode step running each head's Mamba2 state step, kernels/src/
// skinny-gemm-state.cuh) against the separate path it replaces: the same in_proj with only the conv epilogue,
// then mamba2_state_step_gated. in_proj's outputs, the conv output and the conv state must be bitwise the same;
// y, the SSM state and the per-head sums of y^2 within fp32 rounding (the dot products are summed in another
// order). Dims: the golden fixtures' (P 16, and P 20 with 2 groups: heads straddle tiles), the 1.2B's head
// shape, split-K, several rows; each case is launched twice from the same inputs (the head counters must be
// back at zero) and the two launches must agree bitwise.
#include "test-harness.h"

namespace {

struct state_case {
    int M, H, nh, P, G, N, split_k;
};

void run_state_case(test_table & tab, test_rng & rng, const state_case & sc) {
    const int M = sc.M, H = sc.H, nh = sc.nh, P = sc.P, G = sc.G, N = sc.N;
    const int d = nh * P, GN = G * N, cd = d + 2 * GN, ipo = 2 * d + 2 * GN + nh, slots = M + 3;
    const vec x = rng.f32_values((size_t) M * H, -2, 2), nw = rng.bf16_values((size_t) H, 0.5, 1.5);
    const vec w = rng.bf16_values((size_t) ipo * H, -0.3, 0.3);
    const vec cw = rng.bf16_values((size_t) cd * 4, -0.5, 0.5), cb = rng.bf16_values((size_t) cd, -0.5, 0.5);
    const vec conv0 = rng.f32_values((size_t) slots * 3 * cd, -1, 1), ssm0 = rng.f32_values((size_t) slots * nh * P * N, -1, 1);
    const vec bias = rng.f32_values(nh, -1, 1), alog = rng.f32_values(nh, -1, 1), dsk = rng.f32_values(nh, -1, 1);
    ivec slot_of(M), cu(M + 1);
    for (int m = 0; m < M; ++m) slot_of[m] = (m * 5 + 2) % slots;
    for (int m = 0; m <= M; ++m) cu[m] = m;
    dev_buf<float> dx(x.size()), dbias(nh), dalog(nh), ddsk(nh);
    dev_buf<bf16> dnw(nw.size()), dw(w.size()), dcw(cw.size()), dcb(cb.size());
    dev_buf<int32_t> dslot(M), dcu(M + 1), heads(nh);
    dev_buf<float> work((size_t) 1 << 20);
    dev_buf<int32_t> counters(4096);
    dx.upload(x); dnw.upload(nw); dw.upload(w); dcw.upload(cw); dcb.upload(cb);
    dbias.upload(bias); dalog.upload(alog); ddsk.upload(dsk);
    upload_ints(dslot, slot_of); upload_ints(dcu, cu);
    ZK_CHECK(cudaMemset(heads.ptr, 0, nh * sizeof(int32_t)));
    ZK_CHECK(cudaMemset(counters.ptr, 0, 4096 * sizeof(int32_t)));
    cudaStream_t st;
    ZK_CHECK(cudaStreamCreate(&st));

    struct outputs { vec zx, xbc, conv, y, ssm, gsq; };
    // run 0: conv epilogue, then mamba2_state_step (y * silu(z) on the host: the gated kernel's chunking refuses some
    // of these dims); runs 1, 2: the state epilogue (the same inputs again)
    outputs got[3];
    for (int run = 0; run < 3; ++run) {
        dev_buf<float> zx((size_t) M * ipo), xbc((size_t) M * cd), conv(conv0.size()), ssm(ssm0.size()), y((size_t) M * d);
        dev_buf<float> gsq((size_t) M * d);
        conv.upload(conv0);
        ssm.upload(ssm0);
        y.poison();
        skinny_gemm_args a{};
        a.x_mode = SKINNY_X_RMSNORM;
        a.x = dx.ptr;
        a.ld_x = H;
        a.K = H;
        a.M = M;
        a.y_f32 = true;
        a.norm.w = dnw.ptr;
        a.norm.eps = 1e-5f;
        a.norm.k1 = H;
        a.seg[0] = {dw.ptr, nullptr, nullptr, zx.ptr, ipo, ipo};
        a.n_seg = 1;
        a.pdl = true;
        a.split_k = sc.split_k;
        a.workspace = work.ptr;
        a.workspace_floats = (int64_t) work.n;
        a.counters = counters.ptr;
        a.counter_count = (int) counters.n;
        a.conv = {xbc.ptr, conv.ptr, dcw.ptr, dcb.ptr, dslot.ptr, d, cd};
        if (run > 0) a.state = {y.ptr, gsq.ptr, ssm.ptr, dbias.ptr, dalog.ptr, ddsk.ptr, heads.ptr, d, nh, P, G, N};
        bool ok = skinny_gemm(a, st);
        if (run == 0) {
            ok = ok && mamba2_state_step(y.ptr, ssm.ptr, xbc.ptr, cd, zx.ptr + d + cd, ipo, dbias.ptr, dalog.ptr, ddsk.ptr,
                                         dcu.ptr, dslot.ptr, M, nh, P, G, N, st);
        }
        ZK_CHECK(cudaStreamSynchronize(st));
        ZK_LAUNCHED();
        const std::string tag = "state epilogue M=" + std::to_string(M) + " nh=" + std::to_string(nh) + " P=" +
                                std::to_string(P) + " G=" + std::to_string(G) + " N=" + std::to_string(N) +
                                (sc.split_k > 1 ? " split-K" : "");
        if (!ok) { tab.compare(tag + " (refused)", {1.0}, {0.0}, 0.0); ZK_CHECK(cudaStreamDestroy(st)); return; }
        got[run] = {zx.download(), xbc.download(), conv.download(), y.download(), ssm.download(), gsq.download()};
        if (run == 0) {  // y * silu(z) and its per-head sums of squares, from the separate path's y
            vec sums((size_t) M * nh, 0.0);
            for (int m = 0; m < M; ++m) {
                for (int c = 0; c < d; ++c) {
                    const double z = got[0].zx[(size_t) m * ipo + c];
                    double & yv = got[0].y[(size_t) m * d + c];
                    yv *= z / (1.0 + std::exp(-z));
                    sums[(size_t) m * nh + c / P] += yv * yv;
                }
            }
            got[0].gsq = sums;
        } else {
            got[run].gsq.resize((size_t) M * nh);
        }
        if (run == 2) {
            tab.compare(tag + " zx bitwise", got[1].zx, got[0].zx, 0.0);
            tab.compare(tag + " conv out bitwise", got[1].xbc, got[0].xbc, 0.0);
            tab.compare(tag + " conv state bitwise", got[1].conv, got[0].conv, 0.0);
            tab.compare(tag + " y", got[1].y, got[0].y, TOL_F32);
            tab.compare(tag + " ssm state", got[1].ssm, got[0].ssm, TOL_F32);
            tab.compare(tag + " per-head y^2", got[1].gsq, got[0].gsq, TOL_F32);
            tab.compare(tag + " relaunch bitwise", got[2].y, got[1].y, 0.0);
            tab.compare(tag + " relaunch state bitwise", got[2].ssm, got[1].ssm, 0.0);
            ivec zero(nh, 0), left(nh);
            std::vector<int32_t> h(nh);
            ZK_CHECK(cudaMemcpy(h.data(), heads.ptr, nh * sizeof(int32_t), cudaMemcpyDeviceToHost));
            for (int i = 0; i < nh; ++i) left[i] = h[i];
            tab.compare_ints(tag + " head counters back to 0", left, zero);
        }
    }
    ZK_CHECK(cudaStreamDestroy(st));
}

void test_skinny_state(test_table & tab, test_rng & rng) {
    run_state_case(tab, rng, {1, 32, 4, 16, 1, 16, 0});   // fixture a's mixer
    run_state_case(tab, rng, {3, 40, 4, 20, 2, 16, 0});   // fixture b's: P 20, 2 groups (heads straddle tiles)
    run_state_case(tab, rng, {8, 128, 8, 32, 1, 16, 0});  // the demo model's, 8 rows
    run_state_case(tab, rng, {1, 256, 64, 64, 1, 64, 0}); // the 1.2B's heads (K cut to 256)
    run_state_case(tab, rng, {2, 512, 16, 64, 2, 64, 2}); // split-K: only the slice that writes a tile counts it
    // refused: the state epilogue needs the conv epilogue
    dev_buf<float> dx(4096), dy(4096);
    dev_buf<bf16> dw(4096), dnw(64);
    dev_buf<int32_t> cnt(8);
    skinny_gemm_args a{};
    a.x_mode = SKINNY_X_RMSNORM;
    a.x = dx.ptr;
    a.ld_x = 64;
    a.K = 64;
    a.M = 1;
    a.y_f32 = true;
    a.norm.w = dnw.ptr;
    a.norm.k1 = 64;
    a.seg[0] = {dw.ptr, nullptr, nullptr, dy.ptr, 36, 36};
    a.n_seg = 1;
    a.state = {dy.ptr, dy.ptr, dy.ptr, dx.ptr, dx.ptr, dx.ptr, cnt.ptr, 16, 1, 16, 1, 4};
    const bool no_conv = skinny_gemm(a, 0);
    ZK_LAUNCHED();
    tab.compare_ints("state epilogue refused without the conv epilogue", {no_conv}, {0});
}

}  // namespace

ZK_REGISTER_TEST(test_skinny_state);
