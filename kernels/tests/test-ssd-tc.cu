// mamba2_ssd_varlen (kernels/src/mamba2-ssd.cu, tensor-core chunked SSD) against the float64 reference
// ref_mamba2_scan: y and the whole state pool (untouched slots included) over three calls that carry the
// state, ragged batches (length 1, chunk edges at 63/64/65, lengths not multiples of 64, a 700-token
// sequence), permuted slots, nonzero initial states, realistic ranges (softplus(dt) in ~[1e-3, 0.5],
// A_log in [0, 2.5], x/B/C ~ N(0,1)); preset-like shapes (P 64 with N 128 / N 64 G 2), the golden
// fixtures' tiny shapes (where G·64·64 exceeds nh·P·N), an odd xbc row stride (scalar loads) and bf16
// inputs; the C·B^T scratch is exactly [n_chunks, G, 64, 64] with a guard after it that must stay untouched.
// The third call has an 1100-token sequence (18 chunks) between single-token and one-chunk ones; two
// shapes also run without programmatic dependent launch. Then 1.2B dims at T = 2048, a ragged batch and a
// 12k-token batch (196 chunks) against the GPU sequential scan, which runs every chunk chain through
// thousands of CTAs. ZK_BENCH_SSD=1 times the kernel (CUDA events), also without PDL, and profiles its
// phases (session 3, same run, against the kernel before it: 1.2B T 2048 0.153 -> 0.142 ms).
#include <algorithm>
#include <cstring>
#include <numeric>

#include "test-harness.h"

namespace {

struct ssd_case { int nh, P, G, N; bool f32; int ld_extra; };

struct chunk_lists {
    ivec t0, len, c0, nc;
};

chunk_lists make_chunks(const ivec & lens) {
    chunk_lists k;
    int t = 0;
    for (int L : lens) {
        k.c0.push_back((int) k.t0.size());
        for (int o = 0; o < L; o += ZK_SSD_CHUNK_TOKENS) {
            k.t0.push_back(t + o);
            k.len.push_back(std::min(ZK_SSD_CHUNK_TOKENS, L - o));
        }
        k.nc.push_back((int) k.t0.size() - k.c0.back());
        t += L;
    }
    return k;
}

// Values as the device will hold them (bf16- or fp32-rounded), so the reference sees the same inputs.
vec rounded(vec v, bool f32) {
    for (auto & x : v) x = f32 ? (double) (float) x : (double) __bfloat162float(__float2bfloat16_rn((float) x));
    return v;
}
vec normal_values(test_rng & rng, size_t n, bool f32) {
    std::normal_distribution<double> nd(0.0, 1.0);
    vec v(n);
    for (auto & x : v) x = nd(rng.gen);
    return rounded(v, f32);
}

constexpr size_t kCbGuard = 1024;  // floats after the C·B^T scratch (poisoned NaN, must stay so)

// Device copies of one batch's inputs and chunk lists plus the scratch the engine allocates.
template <typename TX> struct ssd_batch {
    int T, C, S;
    size_t cb_elems;  // [C, G, 64, 64], the contract of mamba2_ssd_varlen's cb_buf
    dev_buf<TX> xbc, dt;
    dev_buf<float> y, cb_buf, dt_buf, lam_buf;
    dev_buf<int32_t> ct0, clen, sc0, snc, slot, cu;
    ssd_batch(const ssd_case & sc, const ivec & lens, const ivec & slots, const vec & xbc_h, const vec & dt_h)
        : T(cu_from_lengths(lens).back()), C((int) make_chunks(lens).t0.size()), S((int) lens.size()),
          cb_elems((size_t) C * sc.G * ZK_SSD_CHUNK_TOKENS * ZK_SSD_CHUNK_TOKENS), xbc(xbc_h.size()), dt(dt_h.size()),
          y((size_t) T * sc.nh * sc.P), cb_buf(cb_elems + kCbGuard), dt_buf((size_t) C * sc.nh * 64), lam_buf((size_t) C * sc.nh * 64),
          ct0(C), clen(C), sc0(S), snc(S), slot(S), cu(S + 1) {
        const chunk_lists k = make_chunks(lens);
        xbc.upload(xbc_h);
        dt.upload(dt_h);
        upload_ints(ct0, k.t0); upload_ints(clen, k.len); upload_ints(sc0, k.c0); upload_ints(snc, k.nc);
        upload_ints(slot, slots); upload_ints(cu, cu_from_lengths(lens));
    }
    // Guard floats after the cb_buf contract that the kernels wrote (0 expected).
    int cb_guard_written() const {
        const vec v = cb_buf.download();
        int n = 0;
        for (size_t i = cb_elems; i < v.size(); ++i) n += !std::isnan(v[i]);
        return n;
    }
    bool run_ssd(const ssd_case & sc, float * state, int ld, int ld_dt, const float * bias, const float * alog,
                 const float * dsk, cudaStream_t st = 0) {
        return mamba2_ssd_varlen(y.ptr, state, cb_buf.ptr, dt_buf.ptr, lam_buf.ptr, xbc.ptr, ld, dt.ptr + 3, ld_dt,
                                 bias, alog, dsk, ct0.ptr, clen.ptr, sc0.ptr, snc.ptr, slot.ptr, C, S, sc.nh, sc.P, sc.G,
                                 sc.N, st);
    }
    void run_scan(const ssd_case & sc, float * yout, float * state, int ld, int ld_dt, const float * bias,
                  const float * alog, const float * dsk, cudaStream_t st = 0) {
        mamba2_scan_varlen(yout, state, xbc.ptr, ld, dt.ptr + 3, ld_dt, bias, alog, dsk, cu.ptr, slot.ptr, S, sc.nh, sc.P,
                           sc.G, sc.N, st);
    }
};

// variant: mamba2_ssd_debug_variant's argument for this case (0: the default).
template <typename TX>
void check_case(test_table & tab, test_rng & rng, const ssd_case & sc, int variant = 0) {
    const int d = sc.nh * sc.P, ld = d + 2 * sc.G * sc.N + sc.ld_extra, ld_dt = sc.nh + 5, n_slots = 9;
    const std::string tag = std::string("ssd_tc ") + (sc.f32 ? "f32" : "bf16") + " nh" + std::to_string(sc.nh) + " P" +
                            std::to_string(sc.P) + " G" + std::to_string(sc.G) + " N" + std::to_string(sc.N) +
                            (sc.ld_extra ? " ld+" + std::to_string(sc.ld_extra) : "") +
                            (variant ? " variant " + std::to_string(variant) : "");
    mamba2_ssd_debug_variant(variant);
    const vec dt_bias = rng.f32_values(sc.nh, -4, -2), a_log = rng.f32_values(sc.nh, 0, 2.5), dsk = rng.f32_values(sc.nh, 0.5, 1.5);
    vec state = rng.f32_values((size_t) n_slots * sc.nh * sc.P * sc.N, -1, 1);
    dev_buf<float> dstate(state.size()), dbias(sc.nh), dalog(sc.nh), dd(sc.nh);
    dstate.upload(state); dbias.upload(dt_bias); dalog.upload(a_log); dd.upload(dsk);
    const ivec lens_by_call[3] = {{1, 64, 65, 130, 37, 63}, {700, 1, 129, 2, 64}, {1, 1100, 1, 64, 192}};
    ivec all(n_slots);
    std::iota(all.begin(), all.end(), 0);
    for (int call = 0; call < 3; ++call) {
        const ivec & lens = lens_by_call[call];
        std::shuffle(all.begin(), all.end(), rng.gen);
        const ivec slots(all.begin(), all.begin() + lens.size());
        const ivec cu = cu_from_lengths(lens);
        const int T = cu.back();
        vec xbc = normal_values(rng, (size_t) T * ld, sc.f32);
        const vec dtbig = rounded(rng.f32_values((size_t) T * ld_dt, -2.9, 1.5), sc.f32);
        vec dt((size_t) T * sc.nh);
        for (int t = 0; t < T; ++t) for (int h = 0; h < sc.nh; ++h) dt[(size_t) t * sc.nh + h] = dtbig[(size_t) t * ld_dt + 3 + h];
        ssd_batch<TX> b(sc, lens, slots, xbc, dtbig);
        const bool ok = b.run_ssd(sc, dstate.ptr, ld, ld_dt, dbias.ptr, dalog.ptr, dd.ptr);
        ZK_LAUNCHED();
        tab.compare_ints(tag + " accepted", {ok ? 1 : 0}, {1});
        if (!ok) break;
        tab.compare_ints(tag + " call " + std::to_string(call + 1) + ": C.B^T scratch guard untouched",
                         ivec{b.cb_guard_written()}, ivec{0});
        // the reference reads rows [T, d + 2GN]: drop the padding columns
        vec xr((size_t) T * (d + 2 * sc.G * sc.N));
        for (int t = 0; t < T; ++t)
            for (int k = 0; k < d + 2 * sc.G * sc.N; ++k) xr[(size_t) t * (d + 2 * sc.G * sc.N) + k] = xbc[(size_t) t * ld + k];
        const vec y_ref = ref_mamba2_scan(xr, dt, dt_bias, a_log, dsk, state, cu, slots, sc.nh, sc.P, sc.G, sc.N);
        const std::string c = " call " + std::to_string(call + 1) + " T" + std::to_string(T);
        tab.compare(tag + c + ": y", b.y.download(), y_ref, 1e-3);
        tab.compare(tag + c + ": state pool", dstate.download(), state, 1e-3);
    }
    mamba2_ssd_debug_variant(0);
}

// Shapes it must refuse (the engine then runs the sequential scan): P > 64, N > 128.
void check_refusals(test_table & tab) {
    const ssd_case bad[2] = {{2, 80, 1, 16, true, 0}, {2, 16, 1, 256, true, 0}};
    for (const ssd_case & sc : bad) {
        const int ld = sc.nh * sc.P + 2 * sc.G * sc.N, ld_dt = sc.nh + 5;
        const ivec lens = {5};
        ssd_batch<float> b(sc, lens, {0}, vec((size_t) 5 * ld, 0.5), vec((size_t) 5 * ld_dt, 0.5));
        dev_buf<float> st((size_t) sc.nh * sc.P * sc.N), v(sc.nh);
        const bool ok = b.run_ssd(sc, st.ptr, ld, ld_dt, v.ptr, v.ptr, v.ptr);
        ZK_LAUNCHED();
        tab.compare_ints("ssd_tc refuses P" + std::to_string(sc.P) + " N" + std::to_string(sc.N), {ok ? 1 : 0}, {0});
    }
}

float median_ms(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Preset dims against the GPU sequential scan (fp32, ~1e-6 from float64): y and final states. With
// ZK_BENCH_SSD=1 also times both (median of 20 after 3 warm-ups, CUDA events).
void check_preset(test_table & tab, const char * name, const ssd_case & sc, const ivec & lens, bool bench, uint64_t seed,
                  bool detail = false) {
    const int d = sc.nh * sc.P, ld = d + 2 * sc.G * sc.N, ld_dt = sc.nh + 5;
    const int T = cu_from_lengths(lens).back(), S = (int) lens.size();
    ivec slots(S);
    for (int s = 0; s < S; ++s) slots[s] = (s * 5 + 3) % (S + 2);
    const size_t pool = (size_t) (S + 2) * sc.nh * sc.P * sc.N;
    ssd_batch<float> b(sc, lens, slots, vec(1), vec(1));
    // fresh device buffers of the right size (the constructor above only set up the chunk lists)
    dev_buf<float> xbc((size_t) T * ld), dt((size_t) T * ld_dt), y_scan((size_t) T * d), st_ssd(pool), st_scan(pool);
    dev_buf<float> bias(sc.nh), alog(sc.nh), dsk(sc.nh);
    fill_random_f32(xbc.ptr, (int64_t) xbc.n, seed, 1.7f, 0.0f, 0);                 // |x|, |B|, |C| <= 1.7 (var ~1)
    fill_random_f32(dt.ptr, (int64_t) dt.n, seed + 1, 2.2f, -0.7f, 0);              // dt_raw in [-2.9, 1.5]
    fill_random_f32(bias.ptr, sc.nh, seed + 2, 1.0f, -3.0f, 0);                     // dt_bias in [-4, -2]
    fill_random_f32(alog.ptr, sc.nh, seed + 3, 1.25f, 1.25f, 0);                    // A_log in [0, 2.5]
    fill_random_f32(dsk.ptr, sc.nh, seed + 4, 0.5f, 1.0f, 0);
    const std::string tag = std::string("ssd_tc vs scan ") + name + " T" + std::to_string(T) + " S" + std::to_string(S);
    auto ssd = [&](float * st) {
        return mamba2_ssd_varlen(b.y.ptr, st, b.cb_buf.ptr, b.dt_buf.ptr, b.lam_buf.ptr, xbc.ptr, ld, dt.ptr + 3, ld_dt,
                                 bias.ptr, alog.ptr, dsk.ptr, b.ct0.ptr, b.clen.ptr, b.sc0.ptr, b.snc.ptr, b.slot.ptr, b.C, S,
                                 sc.nh, sc.P, sc.G, sc.N, 0);
    };
    auto scan = [&](float * st) {
        mamba2_scan_varlen(y_scan.ptr, st, xbc.ptr, ld, dt.ptr + 3, ld_dt, bias.ptr, alog.ptr, dsk.ptr, b.cu.ptr, b.slot.ptr, S,
                           sc.nh, sc.P, sc.G, sc.N, 0);
    };
    // both kernels from the same random states; y and the whole pool compared
    auto verify = [&](const std::string & t) {
        fill_random_f32(st_ssd.ptr, (int64_t) pool, seed + 5, 1.0f, 0.0f, 0);
        ZK_CHECK(cudaMemcpy(st_scan.ptr, st_ssd.ptr, pool * sizeof(float), cudaMemcpyDeviceToDevice));
        b.y.poison();
        const bool ok = ssd(st_ssd.ptr);
        scan(st_scan.ptr);
        ZK_LAUNCHED();
        tab.compare_ints(t + " accepted", {ok ? 1 : 0}, {1});
        if (!ok) return false;
        tab.compare(t + ": y", b.y.download(), y_scan.download(), 1e-4);
        tab.compare(t + ": state pool", st_ssd.download(), st_scan.download(), 1e-4);
        return true;
    };
    if (!verify(tag)) return;
    // the variant without PDL must give the same results
    if (detail || T > 4096) {
        mamba2_ssd_debug_variant(1);
        verify(tag + " variant 1");
        mamba2_ssd_debug_variant(0);
    }
    if (!bench) return;
    cudaEvent_t e0, e1;
    ZK_CHECK(cudaEventCreate(&e0));
    ZK_CHECK(cudaEventCreate(&e1));
    auto time_ms = [&](auto && fn, float * min_out) {
        std::vector<float> t;
        for (int rep = 0; rep < 23; ++rep) {
            float ms = 0;
            ZK_CHECK(cudaEventRecord(e0, 0));
            fn();
            ZK_CHECK(cudaEventRecord(e1, 0));
            ZK_CHECK(cudaEventSynchronize(e1));
            ZK_CHECK(cudaEventElapsedTime(&ms, e0, e1));
            if (rep >= 3) t.push_back(ms);
        }
        ZK_LAUNCHED();
        if (min_out) *min_out = *std::min_element(t.begin(), t.end());
        return median_ms(t);
    };
    float mn = 0;
    const float a = time_ms([&] { ssd(st_ssd.ptr); }, &mn);
    mamba2_ssd_debug_variant(1);
    const float no_pdl = time_ms([&] { ssd(st_ssd.ptr); }, nullptr);
    mamba2_ssd_debug_variant(0);
    const float s = time_ms([&] { scan(st_scan.ptr); }, nullptr);
    std::printf("BENCH ssd %-28s T %5d nh %3d P %d N %3d G %d: ssd_tc %.4f ms (min %.4f)  no PDL %.4f ms  scan %.4f ms  "
                "x%.1f\n",
                name, T, sc.nh, sc.P, sc.N, sc.G, a, mn, no_pdl, s, s / a);
    if (detail) {
        // phase profile of the default path (globaltimer stamps of thread 0 of every CTA)
        dev_buf<unsigned long long> prof(10);
        const unsigned long long init[10] = {0, 0, 0, 0, 0, 0, 0, 0, ~0ull, 0};
        ZK_CHECK(cudaMemcpy(prof.ptr, init, sizeof(init), cudaMemcpyHostToDevice));
        mamba2_ssd_debug(0, prof.ptr);
        ssd(st_ssd.ptr);
        ZK_LAUNCHED();
        mamba2_ssd_debug(0, nullptr);
        unsigned long long h[10];
        ZK_CHECK(cudaMemcpy(h, prof.ptr, sizeof(h), cudaMemcpyDeviceToHost));
        const double n = (double) (h[7] ? h[7] : 1);
        std::printf("PROF ssd %s: %llu CTAs, span %.1f us; mean us per CTA: ticket+dt+B/C %.2f, x+C.B^T %.2f, "
                    "chunk state mma %.2f, M %.2f, chain wait %.2f, state r/w+flag %.2f, y %.2f\n",
                    name, h[7], (h[9] - h[8]) * 1e-3, h[0] / n * 1e-3, h[1] / n * 1e-3, h[2] / n * 1e-3, h[3] / n * 1e-3,
                    h[4] / n * 1e-3, h[5] / n * 1e-3, h[6] / n * 1e-3);
        // variant 1 (spin without sleep) must be right; 2 (no chain wait) and 3 (prep only) are timing only
        mamba2_ssd_debug(1, nullptr);
        verify(tag + " spin");
        const float m1 = time_ms([&] { ssd(st_ssd.ptr); }, nullptr);
        mamba2_ssd_debug(2, nullptr);
        const float m2 = time_ms([&] { ssd(st_ssd.ptr); }, nullptr);
        mamba2_ssd_debug(3, nullptr);
        const float m3 = time_ms([&] { ssd(st_ssd.ptr); }, nullptr);
        mamba2_ssd_debug(0, nullptr);
        std::printf("BENCH ssd %s modes: default %.4f ms, spin %.4f ms, no-chain-wait (timing only) %.4f ms, prep only %.4f ms\n",
                    name, a, m1, m2, m3);
    }
    ZK_CHECK(cudaEventDestroy(e0));
    ZK_CHECK(cudaEventDestroy(e1));
}

void test_ssd_tensor_core(test_table & tab, test_rng & rng) {
    const ssd_case cases[6] = {
        {8, 64, 1, 128, true, 0},   // 1.2B head shape
        {6, 64, 2, 64, true, 0},    // 7B head shape (G = 2, N = 64)
        {4, 16, 1, 16, true, 0},    // golden fixture a (nh·P·N = 1024 < 64·64: scratch larger than a state)
        {4, 20, 2, 16, true, 3},    // golden fixture b, odd row stride (scalar loads)
        {6, 12, 3, 40, false, 0},   // bf16 inputs, N not a multiple of 16
        {4, 64, 1, 128, false, 0},  // bf16 inputs, 1.2B head shape
    };
    for (int i = 0; i < 6; ++i) {
        if (cases[i].f32) check_case<float>(tab, rng, cases[i]);
        else check_case<bf16>(tab, rng, cases[i]);
    }
    check_case<float>(tab, rng, cases[0], 1);
    check_case<float>(tab, rng, cases[3], 1);
    check_refusals(tab);
    const char * b = std::getenv("ZK_BENCH_SSD");
    const bool bench = b && b[0] == '1';
    const uint64_t seed = rng.gen();
    check_preset(tab, "1.2B", {64, 64, 1, 128, true, 0}, {2048}, bench, seed, true);
    check_preset(tab, "1.2B ragged+decodes", {64, 64, 1, 128, true, 0}, {700, 1, 1, 1000, 33, 1, 313}, bench, seed + 10);
    check_preset(tab, "1.2B 12k", {64, 64, 1, 128, true, 0}, {8191, 1, 65, 4096}, bench, seed + 60);
    if (bench) {
        check_preset(tab, "1.2B", {64, 64, 1, 128, true, 0}, {512}, bench, seed + 20, true);
        check_preset(tab, "1.2B 4x512", {64, 64, 1, 128, true, 0}, {512, 512, 512, 512}, bench, seed + 30);
        check_preset(tab, "2.7B", {80, 64, 1, 64, true, 0}, {2048}, bench, seed + 40, true);
        check_preset(tab, "7B", {112, 64, 2, 64, true, 0}, {2048}, bench, seed + 50);
    }
}

}  // namespace

ZK_REGISTER_TEST(test_ssd_tensor_core);
