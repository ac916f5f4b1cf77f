// skinny_gemm (kernels/src/skinny-gemm.cu) against the float64 reference: every x mode, every row
// class (M 1..64 in NT = 1/2/4/8 tiles, M not a multiple of 8), N not a multiple of 16, K not a
// multiple of 32, x rows wider than K, accumulate and overwrite, bf16 and fp32 outputs, and the
// 3-segment LoRA form (second fp32 operand summed into the same outputs).
#include "test-harness.h"

namespace {

// Split-K scratch shared by every call (zeroed once, as the engine does; each launch leaves it zero).
struct skinny_scratch {
    dev_buf<float> work{(size_t) 1 << 20};
    dev_buf<int32_t> counters{4096};
    skinny_scratch() { ZK_CHECK(cudaMemset(counters.ptr, 0, 4096 * sizeof(int32_t))); }
    void attach(skinny_gemm_args & a) {
        a.workspace = work.ptr;
        a.workspace_floats = (int64_t) work.n;
        a.counters = counters.ptr;
        a.counter_count = (int) counters.n;
    }
};
skinny_scratch * g_scratch = nullptr;

struct host_split {
    vec hi, lo, sum;  // hi = bf16(v), lo = bf16(v - hi), sum = hi + lo (what the GPU sees)
};

host_split split_values(const vec & v) {
    host_split s{vec(v.size()), vec(v.size()), vec(v.size())};
    for (size_t i = 0; i < v.size(); ++i) {
        const float h = __bfloat162float(__float2bfloat16_rn((float) v[i]));
        const float l = __bfloat162float(__float2bfloat16_rn((float) v[i] - h));
        s.hi[i] = h;
        s.lo[i] = l;
        s.sum[i] = (double) h + (double) l;
    }
    return s;
}

// Rows [M, ld] -> dense [M, K].
vec take_cols(const vec & big, int M, int ld, int K, int col0 = 0) {
    vec out((size_t) M * K);
    for (int m = 0; m < M; ++m) for (int k = 0; k < K; ++k) out[(size_t) m * K + k] = big[(size_t) m * ld + col0 + k];
    return out;
}

void test_single(test_table & tab, test_rng & rng, skinny_x_mode mode, int M, int N, int K, bool out_f32, bool accumulate,
                 bool split_k = true) {
    const int ld_x = K + 24;
    const vec xf = rng.f32_values((size_t) M * ld_x, -2, 2);
    const vec w = rng.bf16_values((size_t) N * K, -0.5, 0.5);
    const int ld_y = N + 3;
    const vec y0 = out_f32 ? rng.f32_values((size_t) M * ld_y, -2, 2) : rng.bf16_values((size_t) M * ld_y, -2, 2);
    dev_buf<bf16> dhi(xf.size()), dlo(xf.size()), dw(w.size()), dyb(y0.size());
    dev_buf<float> dxf(xf.size()), dyf(y0.size());
    vec xref;
    if (mode == SKINNY_X_F32) {
        dxf.upload(xf);
        xref = xf;
    } else if (mode == SKINNY_X_SPLIT) {
        const host_split sp = split_values(xf);
        dhi.upload(sp.hi);
        dlo.upload(sp.lo);
        xref = sp.sum;
    } else {
        const host_split sp = split_values(xf);
        dhi.upload(sp.hi);
        xref = sp.hi;
    }
    dw.upload(w);
    if (out_f32) dyf.upload(y0); else dyb.upload(y0);
    skinny_gemm_args a{};
    a.seg[0] = {dw.ptr, nullptr, nullptr, out_f32 ? (void *) dyf.ptr : (void *) dyb.ptr, N, ld_y};
    a.n_seg = 1;
    a.x_mode = mode;
    a.x = mode == SKINNY_X_F32 ? (const void *) dxf.ptr : (const void *) dhi.ptr;
    a.x_lo = mode == SKINNY_X_SPLIT ? dlo.ptr : nullptr;
    a.ld_x = ld_x;
    a.K = K;
    a.M = M;
    a.y_f32 = out_f32;
    a.accumulate = accumulate;
    if (split_k) g_scratch->attach(a);
    const bool ok = skinny_gemm(a, 0);
    ZK_LAUNCHED();
    static const char * names[] = {"bf16", "split", "f32"};
    const std::string name = std::string("skinny ") + names[mode] + " M=" + std::to_string(M) + " [" + std::to_string(N) +
                             "," + std::to_string(K) + "]" + (out_f32 ? " f32" : " bf16") + (accumulate ? " +=" : "") + (split_k ? "" : " 1 slice");
    if (!ok) { tab.compare(name + " (refused)", {1.0}, {0.0}, 0.0); return; }
    // reference over the dense columns; untouched padding columns of y must keep y0
    const vec x = take_cols(xref, M, ld_x, K);
    const vec y0d = take_cols(y0, M, ld_y, N);
    const vec ref = ref_matmul_nt(x, w, y0d, M, N, K, accumulate ? 1.0 : 0.0);
    const vec got_all = out_f32 ? dyf.download() : dyb.download();
    tab.compare(name, take_cols(got_all, M, ld_y, N), ref, out_f32 ? (mode == SKINNY_X_BF16 ? 1e-5 : 3e-5) : TOL_BF16);
    tab.compare(name + " pad kept", take_cols(got_all, M, ld_y, 3, N), take_cols(y0, M, ld_y, 3, N), 0.0);
}

// q/k/v-style: 3 segments of different N sharing x, each with its own LoRA second operand.
void test_segments(test_table & tab, test_rng & rng, int M) {
    const int K = 72, K2 = 8, ld_x2 = 3 * K2;
    const int n_of[3] = {40, 17, 96};
    const vec xf = rng.f32_values((size_t) M * K, -2, 2);
    const host_split sp = split_values(xf);
    const vec x2 = rng.f32_values((size_t) M * ld_x2, -1, 1);
    dev_buf<bf16> dhi(xf.size()), dlo(xf.size());
    dev_buf<float> dx2(x2.size());
    dhi.upload(sp.hi); dlo.upload(sp.lo); dx2.upload(x2);
    std::vector<vec> ws, w2s;
    std::vector<dev_buf<bf16> *> dws, dw2s;
    std::vector<dev_buf<float> *> dys;
    skinny_gemm_args a{};
    for (int s = 0; s < 3; ++s) {
        ws.push_back(rng.bf16_values((size_t) n_of[s] * K, -0.5, 0.5));
        w2s.push_back(rng.bf16_values((size_t) n_of[s] * K2, -0.5, 0.5));
        dws.push_back(new dev_buf<bf16>(ws[s].size()));
        dw2s.push_back(new dev_buf<bf16>(w2s[s].size()));
        dys.push_back(new dev_buf<float>((size_t) M * n_of[s]));
        dws[s]->upload(ws[s]);
        dw2s[s]->upload(w2s[s]);
        a.seg[s] = {dws[s]->ptr, s == 1 ? nullptr : dw2s[s]->ptr, dx2.ptr + s * K2, dys[s]->ptr, n_of[s], n_of[s]};
    }
    a.n_seg = 3;
    a.x_mode = SKINNY_X_SPLIT;
    a.x = dhi.ptr;
    a.x_lo = dlo.ptr;
    a.ld_x = K;
    a.K = K;
    a.ld_x2 = ld_x2;
    a.K2 = K2;
    a.M = M;
    a.y_f32 = true;
    a.accumulate = false;
    g_scratch->attach(a);
    const bool ok = skinny_gemm(a, 0);
    ZK_LAUNCHED();
    for (int s = 0; s < 3; ++s) {
        const std::string name = "skinny 3 segments + LoRA M=" + std::to_string(M) + " seg " + std::to_string(s);
        if (!ok) { tab.compare(name + " (refused)", {1.0}, {0.0}, 0.0); continue; }
        const int N = n_of[s];
        vec ref = ref_matmul_nt(sp.sum, ws[s], vec((size_t) M * N, 0.0), M, N, K, 0.0);
        if (s != 1) ref = ref_matmul_nt(take_cols(x2, M, ld_x2, K2, s * K2), w2s[s], ref, M, N, K2, 1.0);
        tab.compare(name, dys[s]->download(), ref, 3e-5);
    }
    for (int s = 0; s < 3; ++s) { delete dws[s]; delete dw2s[s]; delete dys[s]; }
}

void test_skinny_gemm(test_table & tab, test_rng & rng) {
    skinny_scratch scratch;
    g_scratch = &scratch;
    for (int M : {1, 2, 7, 8, 13, 16, 29, 33, 64}) {
        test_single(tab, rng, SKINNY_X_SPLIT, M, 77, 264, true, M % 2 == 1);
    }
    test_single(tab, rng, SKINNY_X_F32, 3, 200, 1064, true, true);
    test_single(tab, rng, SKINNY_X_F32, 40, 33, 40, true, false);
    test_single(tab, rng, SKINNY_X_BF16, 1, 50, 8, true, false);
    test_single(tab, rng, SKINNY_X_BF16, 5, 130, 520, false, false);
    test_single(tab, rng, SKINNY_X_BF16, 64, 31, 96, false, true);
    test_single(tab, rng, SKINNY_X_SPLIT, 2, 2048, 2048, true, true);  // a decode-sized shape (many K steps per warp)
    test_single(tab, rng, SKINNY_X_SPLIT, 2, 2048, 2048, true, true, false);
    test_single(tab, rng, SKINNY_X_SPLIT, 3, 300, 8192, true, true);    // long K: 8 slices per tile
    test_single(tab, rng, SKINNY_X_SPLIT, 20, 300, 8192, true, false);
    test_single(tab, rng, SKINNY_X_BF16, 64, 100, 4096, false, false);
    for (int M : {1, 10, 64}) test_segments(tab, rng, M);
    ivec zeros(scratch.counters.n, 0);
    tab.compare_ints("skinny split-K counters back to zero", download_ints(scratch.counters), zeros);
    g_scratch = nullptr;
    // refusals: M over the limit, K not a multiple of 8
    skinny_gemm_args bad{};
    bad.n_seg = 1;
    bad.M = 65;
    bad.K = 64;
    tab.compare_ints("skinny refuses M=65 and K=20", {(int) skinny_gemm(bad, 0), (int) ([&] { bad.M = 4; bad.K = 20; return skinny_gemm(bad, 0); })()},
                     {0, 0});
}

}  // namespace

ZK_REGISTER_TEST(test_skinny_gemm);
