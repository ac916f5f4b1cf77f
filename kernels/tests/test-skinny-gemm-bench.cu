// ZK_BENCH_SKINNY=1 (run with the skinny tests, e.g. ZK_TEST_ONLY=skinny): skinny_gemm on the 1.2B
// decode shapes at M = 1 and 8, the streaming variants side by side (old grid path included), then a
// decode "layer chain" [norm -> in_proj -> norm -> out_proj] x 38 with and without PDL.
// Times are per launch inside a CUDA graph of back-to-back launches (what the engine replays), median of
// 25 replays after 3 warm-ups. Each launch reads another copy of the weights (>= 3 copies, >= 200 MB in
// all; the chain's 38 layers hold 1.9 GB), so no launch finds its weights in the 60 MB L2.
// TB/s counts weight bytes only.
#include <algorithm>
#include <cstring>

#include "test-harness.h"
#include "zamba2-common.cuh"

namespace {

// Bench steps report failures and move on (a refused PDL capture must not hide the other numbers).
#define ZB_TRY(call)                                                                                  \
    ([&] {                                                                                            \
        cudaError_t err_ = (call);                                                                    \
        if (err_ != cudaSuccess) std::printf("bench: %s: %s\n", #call, cudaGetErrorString(err_));     \
        return err_ == cudaSuccess;                                                                   \
    }())

struct bench_variant {
    const char * name;
    skinny_schedule schedule;
    int split_k;
    bool pdl;
};
const bench_variant k_bench_variants[] = {
    {"old grid", SKINNY_SCHEDULE_GRID, 0, false},
    {"old grid pdl", SKINNY_SCHEDULE_GRID, 0, true},
    {"pers", SKINNY_SCHEDULE_PERSISTENT, 0, false},
    {"pers pdl", SKINNY_SCHEDULE_PERSISTENT, 0, true},
    {"pers ks1", SKINNY_SCHEDULE_PERSISTENT, 1, false},
    {"pers ks2", SKINNY_SCHEDULE_PERSISTENT, 2, false},
    {"pers ks4", SKINNY_SCHEDULE_PERSISTENT, 4, false},
    {"pers ks8", SKINNY_SCHEDULE_PERSISTENT, 8, false},
    {"default", SKINNY_SCHEDULE_DEFAULT, 0, false},
    {"default pdl", SKINNY_SCHEDULE_DEFAULT, 0, true},
};

struct bench_shape {
    const char * name;
    int n_seg, N, K;
};
const bench_shape k_bench_shapes[] = {
    {"in_proj", 1, 8512, 2048}, {"out_proj", 1, 2048, 4096}, {"qkv", 3, 4096, 4096}, {"gate_up", 1, 16384, 2048},
    {"lm_head", 1, 32000, 2048},
};

struct bench_scratch {
    dev_buf<float> work{(size_t) 1 << 21};
    dev_buf<int32_t> counters{8192};
    bench_scratch() { ZK_CHECK(cudaMemset(counters.ptr, 0, counters.n * sizeof(int32_t))); }
    void attach(skinny_gemm_args & a) {
        a.workspace = work.ptr;
        a.workspace_floats = (int64_t) work.n;
        a.counters = counters.ptr;
        a.counter_count = (int) counters.n;
    }
};

// Median milliseconds of one replay of a graph captured from enqueue(stream); < 0 on failure.
template <typename F> double time_graph_ms(cudaStream_t st, F enqueue, int reps = 25) {
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    if (!ZB_TRY(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal))) return -1;
    const bool enq = enqueue();
    const bool cap = ZB_TRY(cudaStreamEndCapture(st, &graph));
    if (!enq || !cap || !ZB_TRY(cudaGraphInstantiate(&exec, graph, 0))) {
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();
        return -1;
    }
    cudaEvent_t e0, e1;
    ZK_CHECK(cudaEventCreate(&e0));
    ZK_CHECK(cudaEventCreate(&e1));
    std::vector<double> ms;
    bool ok = true;
    for (int r = 0; r < reps + 3 && ok; ++r) {
        ZK_CHECK(cudaEventRecord(e0, st));
        ok = ZB_TRY(cudaGraphLaunch(exec, st));
        ZK_CHECK(cudaEventRecord(e1, st));
        ok = ok && ZB_TRY(cudaEventSynchronize(e1));
        float t = 0;
        ZK_CHECK(cudaEventElapsedTime(&t, e0, e1));
        if (r >= 3) ms.push_back(t);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    if (!ok) return -1;
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

void bench_shapes(bench_scratch & scratch, cudaStream_t st) {
    constexpr int NV = sizeof(k_bench_variants) / sizeof(k_bench_variants[0]);
    constexpr int NS = sizeof(k_bench_shapes) / sizeof(k_bench_shapes[0]);
    double us[2][NV][NS] = {};
    double tbs[2][NV][NS] = {};
    for (int si = 0; si < NS; ++si) {
        const bench_shape & sh = k_bench_shapes[si];
        const int64_t seg_elems = (int64_t) sh.N * sh.K, copy_elems = seg_elems * sh.n_seg;
        const double copy_bytes = (double) copy_elems * sizeof(bf16);
        const int copies = std::max(3, (int) std::ceil(200e6 / copy_bytes));
        dev_buf<bf16> w((size_t) (copy_elems * copies)), xhi((size_t) 8 * sh.K), xlo((size_t) 8 * sh.K);
        dev_buf<float> y((size_t) 8 * sh.N * sh.n_seg);
        fill_random_bf16(w.ptr, (int64_t) w.n, 11 + si, 0.05f, 0.0f, st);
        fill_random_bf16(xhi.ptr, (int64_t) xhi.n, 12, 1.0f, 0.0f, st);
        fill_random_bf16(xlo.ptr, (int64_t) xlo.n, 13, 0.004f, 0.0f, st);
        ZK_CHECK(cudaStreamSynchronize(st));
        const int launches = copies * std::max(1, (12 + copies - 1) / copies);
        for (int mi = 0; mi < 2; ++mi) {
            const int M = mi == 0 ? 1 : 8;
            for (int vi = 0; vi < NV; ++vi) {
                const bench_variant & v = k_bench_variants[vi];
                skinny_gemm_args a{};
                a.n_seg = sh.n_seg;
                a.x_mode = SKINNY_X_SPLIT;
                a.x = xhi.ptr;
                a.x_lo = xlo.ptr;
                a.ld_x = sh.K;
                a.K = sh.K;
                a.M = M;
                a.y_f32 = true;
                scratch.attach(a);
                a.schedule = v.schedule;
                a.split_k = v.split_k;
                a.pdl = v.pdl;
                const double ms = time_graph_ms(st, [&] {
                    bool ok = true;
                    for (int l = 0; l < launches; ++l) {
                        const bf16 * base = w.ptr + (int64_t) (l % copies) * copy_elems;
                        for (int s = 0; s < sh.n_seg; ++s) {
                            a.seg[s] = {base + s * seg_elems, nullptr, nullptr, y.ptr + (int64_t) s * 8 * sh.N, sh.N, sh.N};
                        }
                        ok = skinny_gemm(a, st) && ok;
                    }
                    return ok;
                });
                us[mi][vi][si] = ms < 0 ? -1 : ms * 1e3 / launches;
                tbs[mi][vi][si] = ms < 0 ? 0 : copy_bytes / (us[mi][vi][si] * 1e-6) / 1e12;
            }
        }
    }
    for (int mi = 0; mi < 2; ++mi) {
        std::printf("skinny bench M=%d: us per launch / weight TB/s (graph of back-to-back launches, median of 25)\n",
                    mi == 0 ? 1 : 8);
        std::printf("%-14s", "variant");
        for (const bench_shape & sh : k_bench_shapes) std::printf(" %13s", sh.name);
        std::printf("\n");
        for (int vi = 0; vi < NV; ++vi) {
            std::printf("%-14s", k_bench_variants[vi].name);
            for (int si = 0; si < NS; ++si) std::printf(" %7.1f %5.2f", us[mi][vi][si], tbs[mi][vi][si]);
            std::printf("\n");
        }
    }
}

// rmsnorm-like: out = split(src / rms(src)) over n columns of row blockIdx.x; lets the next kernel start.
__global__ void bench_norm_split(bf16 * hi, bf16 * lo, const float * src, int ld_src, int n) {
    __shared__ float scratch[32];
    zk_pdl_trigger();
    const float * row = src + (int64_t) blockIdx.x * ld_src;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += row[i] * row[i];
    const float r = rsqrtf(zk_block_sum(ss, scratch) / n + 1e-5f);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        zk_store_split(hi + (int64_t) blockIdx.x * n + i, lo + (int64_t) blockIdx.x * n + i, row[i] * r);
    }
}

// 38 x [norm(h) -> x; in_proj x -> y1 [M, 8512]; norm(y1[:, :4096]) -> x2; out_proj h += x2 . W^T].
void bench_chain(bench_scratch & scratch, cudaStream_t st) {
    constexpr int LAYERS = 38, H = 2048, NI = 8512, KO = 4096;
    const int64_t in_elems = (int64_t) NI * H, out_elems = (int64_t) H * KO;
    dev_buf<bf16> w_in((size_t) (in_elems * LAYERS)), w_out((size_t) (out_elems * LAYERS));
    dev_buf<bf16> xhi((size_t) 8 * H), xlo((size_t) 8 * H), x2hi((size_t) 8 * KO), x2lo((size_t) 8 * KO);
    dev_buf<float> h((size_t) 8 * H), y1((size_t) 8 * NI);
    fill_random_bf16(w_in.ptr, (int64_t) w_in.n, 21, 0.02f, 0.0f, st);
    fill_random_bf16(w_out.ptr, (int64_t) w_out.n, 22, 0.02f, 0.0f, st);
    fill_random_f32(h.ptr, (int64_t) h.n, 23, 1.0f, 0.0f, st);
    ZK_CHECK(cudaStreamSynchronize(st));
    const double layer_bytes = (double) (in_elems + out_elems) * sizeof(bf16);
    struct chain_variant {
        const char * name;
        skinny_schedule schedule;
        bool pdl, gemv;
    };
    const chain_variant variants[] = {
        {"norms only", SKINNY_SCHEDULE_DEFAULT, false, false},
        {"old grid", SKINNY_SCHEDULE_GRID, false, true},
        {"old grid pdl", SKINNY_SCHEDULE_GRID, true, true},
        {"default", SKINNY_SCHEDULE_DEFAULT, false, true},
        {"default pdl", SKINNY_SCHEDULE_DEFAULT, true, true},
    };
    std::printf("skinny layer chain: [norm -> in_proj 8512x2048 -> norm -> out_proj 2048x4096] x %d, %.1f MB weights "
                "per layer, us per layer (median of 25 graph replays)\n", LAYERS, layer_bytes / 1e6);
    std::printf("%-16s %8s %6s %8s %6s\n", "variant", "M=1 us", "TB/s", "M=8 us", "TB/s");
    for (const chain_variant & v : variants) {
        double us[2];
        for (int mi = 0; mi < 2; ++mi) {
            const int M = mi == 0 ? 1 : 8;
            skinny_gemm_args ain{}, aout{};
            ain.n_seg = aout.n_seg = 1;
            ain.x_mode = aout.x_mode = SKINNY_X_SPLIT;
            ain.x = xhi.ptr;
            ain.x_lo = xlo.ptr;
            ain.ld_x = ain.K = H;
            aout.x = x2hi.ptr;
            aout.x_lo = x2lo.ptr;
            aout.ld_x = aout.K = KO;
            ain.M = aout.M = M;
            ain.y_f32 = aout.y_f32 = true;
            aout.accumulate = true;
            scratch.attach(ain);
            scratch.attach(aout);
            for (skinny_gemm_args * a : {&ain, &aout}) {
                a->schedule = v.schedule;
                a->pdl = v.pdl;
            }
            const double ms = time_graph_ms(st, [&] {
                bool ok = true;
                for (int l = 0; l < LAYERS; ++l) {
                    bench_norm_split<<<M, 256, 0, st>>>(xhi.ptr, xlo.ptr, h.ptr, H, H);
                    ain.seg[0] = {w_in.ptr + l * in_elems, nullptr, nullptr, y1.ptr, NI, NI};
                    if (v.gemv) ok = skinny_gemm(ain, st) && ok;
                    bench_norm_split<<<M, 256, 0, st>>>(x2hi.ptr, x2lo.ptr, y1.ptr, NI, KO);
                    aout.seg[0] = {w_out.ptr + l * out_elems, nullptr, nullptr, h.ptr, H, H};
                    if (v.gemv) ok = skinny_gemm(aout, st) && ok;
                }
                return ok;
            });
            us[mi] = ms < 0 ? -1 : ms * 1e3 / LAYERS;
        }
        const double tb1 = v.gemv && us[0] > 0 ? layer_bytes / (us[0] * 1e-6) / 1e12 : 0.0;
        const double tb8 = v.gemv && us[1] > 0 ? layer_bytes / (us[1] * 1e-6) / 1e12 : 0.0;
        std::printf("%-16s %8.2f %6.2f %8.2f %6.2f\n", v.name, us[0], tb1, us[1], tb8);
    }
}

}  // namespace

// Called at the end of test_skinny_gemm (test-skinny-gemm.cu), so the checks print first.
void skinny_gemm_bench_if_enabled() {
    const char * b = std::getenv("ZK_BENCH_SKINNY");
    if (!b || std::strcmp(b, "1") != 0) return;
    cudaStream_t st;
    ZK_CHECK(cudaStreamCreate(&st));
    {
        bench_scratch scratch;
        bench_shapes(scratch, st);
        bench_chain(scratch, st);
        ivec zeros(scratch.counters.n, 0);
        const ivec got = download_ints(scratch.counters);
        std::printf("skinny bench: split-K counters %s\n", got == zeros ? "back to zero" : "NOT back to zero");
    }
    ZK_CHECK(cudaStreamDestroy(st));
}
