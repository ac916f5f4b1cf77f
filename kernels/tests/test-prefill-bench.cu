// ZK_BENCH_PREFILL_KERNELS=1: times the prefill-sized memory-bound kernels at Zamba2-1.2B shapes (hidden 2048,
// d_inner 4096, conv_dim 4352, in_proj row 8512) for T = 2048 and 512, with bf16 and FP8 low parts, in one
// run: us per launch (mean of 20 back-to-back launches, best of 5) and
// GB/s of compulsory traffic (each input read once, each output written once). Buffers rotate over 3 sets
// (> L2) so a launch does not find its inputs in L2. A device-to-device copy gives the bandwidth ceiling.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "test-harness.h"

namespace {

struct bench_timer {
    cudaEvent_t e0, e1;
    bench_timer() {
        ZK_CHECK(cudaEventCreate(&e0));
        ZK_CHECK(cudaEventCreate(&e1));
    }
    ~bench_timer() {
        cudaEventDestroy(e0);
        cudaEventDestroy(e1);
    }
    // fn(i) enqueues launch i; returns us per launch
    double us(const std::function<void(int)> & fn) {
        const int n = 20;
        for (int i = 0; i < 3; ++i) fn(i);
        double best = 1e30;
        for (int rep = 0; rep < 5; ++rep) {
            ZK_CHECK(cudaEventRecord(e0, 0));
            for (int i = 0; i < n; ++i) fn(i);
            ZK_CHECK(cudaEventRecord(e1, 0));
            ZK_CHECK(cudaEventSynchronize(e1));
            float ms = 0;
            ZK_CHECK(cudaEventElapsedTime(&ms, e0, e1));
            best = std::min(best, (double) ms * 1e3 / n);
        }
        ZK_LAUNCHED();
        return best;
    }
};

void report(const char * kernel, const std::string & variant, int T, double us, double bytes) {
    std::printf("BENCH prefill %-22s %-34s T %5d: %8.2f us  %7.0f GB/s\n", kernel, variant.c_str(), T, us, bytes / us * 1e-3);
}

constexpr int kSets = 3;
constexpr int H = 2048, D_INNER = 4096, CD = 4352, IPO = 8512;

void bench_conv(bench_timer & tm, int T, const ivec & lens, const char * label) {
    const int S = (int) lens.size(), n_slots = S + 2;
    const ivec cu = cu_from_lengths(lens);
    const ivec ts = token_seq_from_cu(cu);
    ivec slots(S);
    for (int s = 0; s < S; ++s) slots[s] = s + 1;
    dev_buf<float> zx((size_t) kSets * T * IPO), out((size_t) kSets * T * CD), state((size_t) n_slots * 3 * CD);
    dev_buf<bf16> w((size_t) CD * 4), bias(CD);
    dev_buf<int32_t> dcu(cu.size()), dts(ts.size()), dslot(slots.size());
    fill_random_f32(zx.ptr, (int64_t) zx.n, 1, 2.0f, 0.0f, 0);
    fill_random_f32(state.ptr, (int64_t) state.n, 2, 2.0f, 0.0f, 0);
    fill_random_bf16(w.ptr, (int64_t) w.n, 3, 0.5f, 0.0f, 0);
    fill_random_bf16(bias.ptr, (int64_t) bias.n, 4, 0.5f, 0.0f, 0);
    upload_ints(dcu, cu); upload_ints(dts, ts); upload_ints(dslot, slots);
    const double bytes = (double) T * CD * 4 * 2;
    auto x_of = [&](int i) { return zx.ptr + (size_t) (i % kSets) * T * IPO + D_INNER; };  // xBC columns of zx
    auto o_of = [&](int i) { return out.ptr + (size_t) (i % kSets) * T * CD; };
    const std::string tag = std::string(label);
    report("conv", tag + " fused", T, tm.us([&](int i) {
        causal_conv1d_varlen_update(o_of(i), x_of(i), IPO, state.ptr, w.ptr, bias.ptr, dcu.ptr, dts.ptr, dslot.ptr, T, CD, 0);
    }), bytes);
    report("conv", tag + " tiled + state kernel", T, tm.us([&](int i) {
        causal_conv1d_varlen(o_of(i), x_of(i), IPO, state.ptr, w.ptr, bias.ptr, dcu.ptr, dts.ptr, dslot.ptr, T, CD, 0);
        causal_conv1d_state_update(state.ptr, x_of(i), IPO, dcu.ptr, dslot.ptr, S, CD, 0);
    }), bytes);
}

// lo: bf16 remainders; lo8: FP8 remainders.
void bench_norms(bench_timer & tm, int T) {
    dev_buf<float> x((size_t) kSets * T * H), tr((size_t) kSets * T * H), y((size_t) kSets * T * D_INNER),
        zx((size_t) kSets * T * IPO);
    dev_buf<bf16> e((size_t) kSets * T * H), w(2 * H), gw(D_INNER), hi((size_t) kSets * 2 * T * 2 * H);
    dev_buf<uint8_t> lo8((size_t) kSets * T * 2 * H);
    fill_random_f32(x.ptr, (int64_t) x.n, 5, 2.0f, 0.0f, 0);
    fill_random_f32(tr.ptr, (int64_t) tr.n, 6, 1.0f, 0.0f, 0);
    fill_random_f32(y.ptr, (int64_t) y.n, 7, 2.0f, 0.0f, 0);
    fill_random_f32(zx.ptr, (int64_t) zx.n, 8, 3.0f, 0.0f, 0);
    fill_random_bf16(e.ptr, (int64_t) e.n, 9, 1.0f, 0.0f, 0);
    fill_random_bf16(w.ptr, (int64_t) w.n, 10, 0.5f, 1.0f, 0);
    fill_random_bf16(gw.ptr, (int64_t) gw.n, 11, 0.5f, 1.0f, 0);
    const size_t set_out = (size_t) 2 * T * 2 * H;  // bf16 elements of one output set (hi + lo of the widest row)
    auto hi_of = [&](int i) { return hi.ptr + (size_t) (i % kSets) * set_out; };
    auto lo8_of = [&](int i) { return lo8.ptr + (size_t) (i % kSets) * T * 2 * H; };
    auto x_of = [&](float * p, int n, int i) { return p + (size_t) (i % kSets) * T * n; };
    for (bool use8 : {false, true}) {
        const std::string v = use8 ? "lo8" : "lo";
        const double out_b = use8 ? 3.0 : 4.0;  // bytes per element: hi 2 + lo 2 or lo8 1
        // mamba input norm: x + tr (hybrid layers) -> [2T, H]
        report("rms_norm_f32 x+tr", v, T, tm.us([&](int i) {
            bf16 * o = hi_of(i);
            rms_norm_f32(o, use8 ? nullptr : o + (size_t) T * H, x_of(x.ptr, H, i), x_of(tr.ptr, H, i), nullptr, w.ptr, T, H, 0,
                         1e-5f, 0, use8 ? lo8_of(i) : nullptr);
        }), (double) T * H * (8 + out_b));
        report("rms_norm_f32 x", v, T, tm.us([&](int i) {
            bf16 * o = hi_of(i);
            rms_norm_f32(o, use8 ? nullptr : o + (size_t) T * H, x_of(x.ptr, H, i), nullptr, nullptr, w.ptr, T, H, 0, 1e-5f, 0,
                         use8 ? lo8_of(i) : nullptr);
        }), (double) T * H * (4 + out_b));
        // shared block input norm over concat(X fp32, E bf16) -> [2T, 2H]
        report("rms_norm_f32 [x|e]", v, T, tm.us([&](int i) {
            bf16 * o = hi_of(i);
            rms_norm_f32(o, use8 ? nullptr : o + (size_t) T * 2 * H, x_of(x.ptr, H, i), nullptr, e.ptr + (size_t) (i % kSets) * T * H,
                         w.ptr, T, H, H, 1e-5f, 0, use8 ? lo8_of(i) : nullptr);
        }), (double) T * H * (4 + 2) + (double) T * 2 * H * out_b);
        report("gated_rms_norm_f32", v, T, tm.us([&](int i) {
            bf16 * o = hi_of(i);
            gated_rms_norm_f32(o, use8 ? nullptr : o + (size_t) T * D_INNER, x_of(y.ptr, D_INNER, i), x_of(zx.ptr, IPO, i), IPO,
                               gw.ptr, T, D_INNER, 1, 1e-5f, 0, use8 ? lo8_of(i) : nullptr);
        }), (double) T * D_INNER * (8 + out_b));
    }
    for (bool use8 : {false, true}) {
        // the attention output [T, 2H] fp32 before o_proj
        report("split_rows_bf16", use8 ? "lo8" : "lo", T, tm.us([&](int i) {
            split_rows_bf16(hi_of(i), x_of(y.ptr, D_INNER, i), T, 2 * H, 0, use8 ? lo8_of(i) : nullptr);
        }), (double) T * 2 * H * (use8 ? 7.0 : 8.0));
    }
}

void bench_copy(bench_timer & tm) {
    const size_t bytes = (size_t) 64 << 20;
    dev_buf<uint8_t> a(kSets * bytes), b(kSets * bytes);
    report("cudaMemcpy D2D", "64 MiB", 0, tm.us([&](int i) {
        ZK_CHECK(cudaMemcpyAsync(b.ptr + (size_t) (i % kSets) * bytes, a.ptr + (size_t) ((i + 1) % kSets) * bytes, bytes,
                                 cudaMemcpyDeviceToDevice, 0));
    }), 2.0 * bytes);
}

void test_prefill_bench(test_table &, test_rng &) {
    const char * b = std::getenv("ZK_BENCH_PREFILL_KERNELS");
    if (!b || std::strcmp(b, "1") != 0) return;
    bench_timer tm;
    bench_copy(tm);
    for (int T : {2048, 512}) {
        bench_conv(tm, T, {T}, "1 seq");
        bench_norms(tm, T);
    }
    // mixed step: 4 prefill chunks and 48 decodes (2048 tokens), then a decode-heavy 512
    ivec mixed = {700, 600, 500, 200};
    mixed.insert(mixed.end(), 48, 1);
    bench_conv(tm, 2048, mixed, "4 chunks + 48 decodes");
    ivec small = {200, 100, 84};
    small.insert(small.end(), 128, 1);
    bench_conv(tm, 512, small, "3 chunks + 128 decodes");
}

}  // namespace

ZK_REGISTER_TEST(test_prefill_bench);
