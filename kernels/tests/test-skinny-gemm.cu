// skinny_gemm (kernels/src/skinny-gemm.cu) against the float64 reference: every x mode, every row
// class (M 1..64 in NT = 1/2/4/8 tiles, M not a multiple of 8), N not a multiple of 16, K not a
// multiple of 32, x rows wider than K, accumulate and overwrite, bf16 and fp32 outputs, and the
// 3-segment LoRA form (second fp32 operand summed into the same outputs), each under the GRID schedule
// (the earlier path), the default (PERSISTENT), PERSISTENT + PDL, and unstaged.
// Then: every schedule gives bitwise the same y for the same K slicing (many work items per CTA, split-K); PDL launches after a
// slow kernel that writes x (eager, and captured into a graph replayed with new inputs, a LoRA GEMV
// feeding the main one through split-K counters). The benchmark is test-skinny-gemm-bench.cu.
#include "test-harness.h"
#include "zamba2-common.cuh"

void skinny_gemm_bench_if_enabled();  // test-skinny-gemm-bench.cu (ZK_BENCH_SKINNY=1)

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
cudaStream_t g_stream = nullptr;  // a blocking stream (ordered after the uploads), as PDL needs a real stream

// Streaming options applied on top of a test's arguments.
struct skinny_variant {
    const char * tag;
    skinny_schedule schedule;
    int split_k;
    bool pdl, no_stage;
    void apply(skinny_gemm_args & a) const {
        a.schedule = schedule;
        a.split_k = split_k;
        a.pdl = pdl;
        a.no_stage = no_stage;
    }
};
const skinny_variant k_variants[] = {
    {"grid", SKINNY_SCHEDULE_GRID, 0, false, false},  // the path before the streaming work
    {"default", SKINNY_SCHEDULE_DEFAULT, 0, false, false},
    {"pers+pdl", SKINNY_SCHEDULE_PERSISTENT, 0, true, false},
    {"pers+pdl unstaged", SKINNY_SCHEDULE_PERSISTENT, 0, true, true},  // M <= 8: x from global memory
};
const skinny_variant * g_variant = &k_variants[0];

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
                 bool split_k = true, bool half_tiles = true) {
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
    g_variant->apply(a);
    a.no_half_tiles = !half_tiles;
    const bool ok = skinny_gemm(a, g_stream);
    ZK_LAUNCHED();
    static const char * names[] = {"bf16", "split", "f32"};
    const std::string name = std::string("skinny ") + g_variant->tag + " " + names[mode] + " M=" + std::to_string(M) + " [" +
                             std::to_string(N) + "," + std::to_string(K) + "]" + (out_f32 ? " f32" : " bf16") +
                             (accumulate ? " +=" : "") + (split_k ? "" : " 1 slice") + (half_tiles ? "" : " 16-row tiles");
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
    g_variant->apply(a);
    const bool ok = skinny_gemm(a, g_stream);
    ZK_LAUNCHED();
    for (int s = 0; s < 3; ++s) {
        const std::string name = std::string("skinny ") + g_variant->tag + " 3 segs + LoRA M=" + std::to_string(M) + " seg " +
                                 std::to_string(s);
        if (!ok) { tab.compare(name + " (refused)", {1.0}, {0.0}, 0.0); continue; }
        const int N = n_of[s];
        vec ref = ref_matmul_nt(sp.sum, ws[s], vec((size_t) M * N, 0.0), M, N, K, 0.0);
        if (s != 1) ref = ref_matmul_nt(take_cols(x2, M, ld_x2, K2, s * K2), w2s[s], ref, M, N, K2, 1.0);
        tab.compare(name, dys[s]->download(), ref, 3e-5);
    }
    for (int s = 0; s < 3; ++s) { delete dws[s]; delete dw2s[s]; delete dys[s]; }
}

void run_reference_checks(test_table & tab, test_rng & rng) {
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
    test_single(tab, rng, SKINNY_X_SPLIT, 1, 9000, 264, true, false);   // 563 tiles: several items per persistent CTA
    // half tiles (M <= 4, K % 64 == 0, shapes that would split K): odd N with split-K on top of them (M 1 and 4),
    // fp32 and bf16 y, and the split-K 16-feature tiles they replace
    for (int M : {1, 4}) test_single(tab, rng, SKINNY_X_SPLIT, M, 37, 4096, true, true);
    test_single(tab, rng, SKINNY_X_F32, 1, 2048, 4096, true, false);   // o_proj at b1
    test_single(tab, rng, SKINNY_X_BF16, 3, 1000, 8192, false, true);
    test_single(tab, rng, SKINNY_X_SPLIT, 1, 2048, 4096, true, true, true, false);
    for (int M : {1, 10, 64}) test_segments(tab, rng, M);
}

// Every schedule with the same K slicing gives bitwise the y of the GRID path.
void test_schedules_agree(test_table & tab, test_rng & rng, skinny_x_mode mode, int M, int N, int K, int split_k) {
    const vec xf = rng.f32_values((size_t) M * K, -2, 2);
    const host_split sp = split_values(xf);
    const vec w = rng.bf16_values((size_t) N * K, -0.5, 0.5);
    dev_buf<bf16> dhi(xf.size()), dlo(xf.size()), dw(w.size());
    dev_buf<float> dxf(xf.size()), dy((size_t) M * N);
    dhi.upload(sp.hi);
    dlo.upload(sp.lo);
    dxf.upload(xf);
    dw.upload(w);
    skinny_gemm_args a{};
    a.seg[0] = {dw.ptr, nullptr, nullptr, dy.ptr, N, N};
    a.n_seg = 1;
    a.x_mode = mode;
    a.x = mode == SKINNY_X_F32 ? (const void *) dxf.ptr : (const void *) dhi.ptr;
    a.x_lo = mode == SKINNY_X_SPLIT ? dlo.ptr : nullptr;
    a.ld_x = K;
    a.K = K;
    a.M = M;
    a.y_f32 = true;
    g_scratch->attach(a);
    const std::string shape = "M=" + std::to_string(M) + " [" + std::to_string(N) + "," + std::to_string(K) + "] ks " +
                              std::to_string(split_k);
    const skinny_variant grid{"grid", SKINNY_SCHEDULE_GRID, split_k, false};
    grid.apply(a);
    dy.poison();
    const bool ok = skinny_gemm(a, g_stream);
    ZK_LAUNCHED();
    const vec y_grid = dy.download();
    const vec xref = mode == SKINNY_X_F32 ? xf : (mode == SKINNY_X_SPLIT ? sp.sum : sp.hi);
    tab.compare("skinny grid vs ref " + shape, ok ? y_grid : vec(), ref_matmul_nt(xref, w, vec(y_grid.size(), 0.0), M, N, K, 0.0),
                3e-5);
    const skinny_variant others[] = {
        {"pers", SKINNY_SCHEDULE_PERSISTENT, split_k, false},
        {"pers+pdl", SKINNY_SCHEDULE_PERSISTENT, split_k, true},
        {"default+pdl", SKINNY_SCHEDULE_DEFAULT, split_k, true},
    };
    for (const skinny_variant & v : others) {
        v.apply(a);
        dy.poison();
        const bool ok2 = skinny_gemm(a, g_stream);
        ZK_LAUNCHED();
        tab.compare(std::string("skinny ") + v.tag + " == grid " + shape, ok2 ? dy.download() : vec(), y_grid, 0.0);
    }
}

// Writes x (split) from src after spinning ~delay_ns, having let the next kernel start at once: a GEMV
// launched with PDL that read x before its griddepcontrol.wait would see the NaN poison.
__global__ void slow_write_split(bf16 * hi, bf16 * lo, const float * src, int n, unsigned delay_ns) {
    zk_pdl_trigger();
    uint64_t t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    } while (t - t0 < delay_ns);
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        zk_store_split(hi + i, lo + i, src[i]);
    }
}

// x (written by slow_write_split) -> x2 = x . w0^T (LoRA down, split-K) -> y = x . w^T + x2 . w1^T (several
// items per persistent CTA), both GEMVs with PDL; eager once, then captured into a graph replayed with a
// new src each time (x, x2 and y poisoned before every run).
void test_pdl_chain(test_table & tab, test_rng & rng) {
    const int M = 3, K = 2048, N = 6000, R = 24;
    const vec w = rng.bf16_values((size_t) N * K, -0.5, 0.5), w0 = rng.bf16_values((size_t) R * K, -0.5, 0.5);
    const vec w1 = rng.bf16_values((size_t) N * R, -0.5, 0.5);
    dev_buf<bf16> dw(w.size()), dw0(w0.size()), dw1(w1.size()), dhi((size_t) M * K), dlo((size_t) M * K);
    dev_buf<float> dsrc((size_t) M * K), dx2((size_t) M * R), dy((size_t) M * N);
    dw.upload(w);
    dw0.upload(w0);
    dw1.upload(w1);
    skinny_gemm_args down{};
    down.seg[0] = {dw0.ptr, nullptr, nullptr, dx2.ptr, R, R};
    down.n_seg = 1;
    down.x_mode = SKINNY_X_SPLIT;
    down.x = dhi.ptr;
    down.x_lo = dlo.ptr;
    down.ld_x = K;
    down.K = K;
    down.M = M;
    down.y_f32 = true;
    down.pdl = true;
    g_scratch->attach(down);
    skinny_gemm_args main = down;
    main.seg[0] = {dw.ptr, dw1.ptr, dx2.ptr, dy.ptr, N, N};
    main.K2 = R;
    main.ld_x2 = R;
    main.schedule = SKINNY_SCHEDULE_PERSISTENT;
    main.split_k = 2;  // 750 items; its counters are the ones `down` just used and reset
    auto enqueue = [&] {
        slow_write_split<<<4, 256, 0, g_stream>>>(dhi.ptr, dlo.ptr, dsrc.ptr, M * K, 30000);
        const bool a = skinny_gemm(down, g_stream);
        const bool b = skinny_gemm(main, g_stream);
        return a && b;
    };
    auto check = [&](const std::string & name, bool ok, const vec & src) {
        const host_split sp = split_values(src);
        const vec x2_ref = ref_matmul_nt(sp.sum, w0, vec((size_t) M * R, 0.0), M, R, K, 0.0);
        const vec x2 = dx2.download();
        vec y_ref = ref_matmul_nt(sp.sum, w, vec((size_t) M * N, 0.0), M, N, K, 0.0);
        y_ref = ref_matmul_nt(x2, w1, y_ref, M, N, R, 1.0);  // the second term over the x2 the GPU used
        tab.compare(name + ": x2 = x.w0", ok ? x2 : vec(), x2_ref, 3e-5);
        tab.compare(name + ": y = x.w + x2.w1", ok ? dy.download() : vec(), y_ref, 3e-5);
    };
    auto fresh = [&] {
        const vec src = rng.f32_values((size_t) M * K, -2, 2);
        dsrc.upload(src);
        dhi.poison();
        dlo.poison();
        dx2.poison();
        dy.poison();
        ZK_CHECK(cudaDeviceSynchronize());
        return src;
    };
    {
        const vec src = fresh();
        const bool ok = enqueue();
        ZK_LAUNCHED();
        check("skinny pdl after a slow writer (eager)", ok, src);
    }
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    ZK_CHECK(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeGlobal));
    const bool ok = enqueue();
    ZK_CHECK(cudaStreamEndCapture(g_stream, &graph));
    ZK_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    for (int replay = 0; replay < 2; ++replay) {
        const vec src = fresh();
        ZK_CHECK(cudaGraphLaunch(exec, g_stream));
        ZK_LAUNCHED();
        check("skinny pdl graph replay " + std::to_string(replay), ok, src);
    }
    ZK_CHECK(cudaGraphExecDestroy(exec));
    ZK_CHECK(cudaGraphDestroy(graph));
}

void test_skinny_gemm(test_table & tab, test_rng & rng) {
    skinny_scratch scratch;
    g_scratch = &scratch;
    ZK_CHECK(cudaStreamCreate(&g_stream));
    for (const skinny_variant & v : k_variants) {
        g_variant = &v;
        run_reference_checks(tab, rng);
    }
    g_variant = &k_variants[0];
    test_schedules_agree(tab, rng, SKINNY_X_SPLIT, 1, 20000, 264, 1);  // 1250 tiles: ~5 items per persistent CTA
    test_schedules_agree(tab, rng, SKINNY_X_SPLIT, 1, 20000, 264, 8);  // 9 steps -> 5 slices of 2
    test_schedules_agree(tab, rng, SKINNY_X_BF16, 5, 2048, 4096, 8);   // 1024 items, split-K epilogue per item
    test_schedules_agree(tab, rng, SKINNY_X_F32, 20, 3000, 1024, 2);   // NT = 4
    test_pdl_chain(tab, rng);
    ivec zeros(scratch.counters.n, 0);
    tab.compare_ints("skinny split-K counters back to zero", download_ints(scratch.counters), zeros);
    ZK_CHECK(cudaStreamDestroy(g_stream));
    g_stream = nullptr;
    g_scratch = nullptr;
    // refusals: M over the limit, K not a multiple of 8
    skinny_gemm_args bad{};
    bad.n_seg = 1;
    bad.M = 65;
    bad.K = 64;
    tab.compare_ints("skinny refuses M=65 and K=20", {(int) skinny_gemm(bad, 0), (int) ([&] { bad.M = 4; bad.K = 20; return skinny_gemm(bad, 0); })()},
                     {0, 0});
    skinny_gemm_bench_if_enabled();
}

}  // namespace

ZK_REGISTER_TEST(test_skinny_gemm);
