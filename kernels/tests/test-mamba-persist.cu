// mamba2_decode_persistent (a run of Mamba2 layers of a batch-1 decode step in one launch) against the float64
// references of its parts: rmsnorm -> in_proj -> conv -> state step -> gated norm -> out_proj, layer after layer; with
// ffn set, first the hybrid block's down GEMV: tr = bf16(gelu(g) * u) . W_down^T.
#include <algorithm>
#include <cstring>

#include "../include/zamba2-launch.cuh"
#include "test-harness.h"

namespace {

// dev_buf<unsigned> has no download_ints; its words as ints.
ivec download_ints_u(const dev_buf<unsigned> & b) {
    std::vector<unsigned> h(b.n);
    ZK_CHECK(cudaMemcpy(h.data(), b.ptr, b.n * sizeof(unsigned), cudaMemcpyDeviceToHost));
    return ivec(h.begin(), h.end());
}

struct persist_case {
    const char * name;
    int H, nh, P, G, N, layers, steps;
    bool tr, conv_bias;
    int ffn = 0;  // > 0: the down phase first (F; tr set)
};

struct host_layer {
    vec in_proj, out_proj, input_norm, conv_w, conv_b, norm, dt_bias, a_log, d_skip;
};

struct dev_layer {
    dev_buf<bf16> in_proj, out_proj, input_norm, conv_w, conv_b, norm;
    dev_buf<float> dt_bias, a_log, d_skip;
    dev_layer(int H, int d, int cd, int ipo, int nh)
        : in_proj((size_t) ipo * H), out_proj((size_t) H * d), input_norm(H), conv_w((size_t) cd * 4), conv_b(cd),
          norm(d), dt_bias(nh), a_log(nh), d_skip(nh) {}
};

// One layer's random weights (the host values the references use).
host_layer random_layer(test_rng & rng, const persist_case & pc) {
    const int H = pc.H, nh = pc.nh, d = nh * pc.P, cd = d + 2 * pc.G * pc.N, ipo = d + cd + nh;
    host_layer l;
    l.in_proj = rng.bf16_values((size_t) ipo * H, -1.0 / std::sqrt(H), 1.0 / std::sqrt(H));
    l.out_proj = rng.bf16_values((size_t) H * d, -1.0 / std::sqrt(d), 1.0 / std::sqrt(d));
    l.input_norm = rng.bf16_values(H, 0.5, 1.5);
    l.conv_w = rng.bf16_values((size_t) cd * 4, -0.5, 0.5);
    l.conv_b = pc.conv_bias ? rng.bf16_values(cd, -0.2, 0.2) : vec();
    l.norm = rng.bf16_values(d, 0.5, 1.5);
    l.dt_bias = rng.f32_values(nh, -3.0, -0.5);
    l.a_log = rng.f32_values(nh, 0.0, 1.5);
    l.d_skip = rng.f32_values(nh, 0.5, 1.5);
    return l;
}

// The device side of a run of pc.layers layers: pools of `slots` slots per layer (initial values conv0, ssm0), the
// sequence in `slot`, x, tr, the scratch, and the launch arguments over them. Layers are added one at a time (the
// bench does not keep 1.2B-sized host values of every layer), then finish() fills the launch arguments.
struct persist_run {
    const persist_case pc;
    const int d, cd, ipo, slots;
    std::vector<dev_layer *> dl;
    std::vector<mamba2_persist_layer> host_ptrs;
    dev_buf<float> conv_pool, ssm_pool, x, trb, zx, xbc, y, gsq, gu;
    dev_buf<bf16> down_w;
    dev_buf<unsigned> sync;
    dev_buf<int32_t> seq_slot;
    mamba2_persist_args a{};

    persist_run(const persist_case & c, int n_slots, int slot, const vec & conv0, const vec & ssm0, const vec & x0, const vec & tr)
        : pc(c), d(c.nh * c.P), cd(d + 2 * c.G * c.N), ipo(d + cd + c.nh), slots(n_slots), conv_pool(conv0.size()),
          ssm_pool(ssm0.size()), x(c.H), trb(c.H), zx(ipo), xbc(cd), y(d), gsq((size_t) c.nh * 4), gu((size_t) 2 * c.ffn),
          down_w((size_t) c.H * c.ffn), sync(2), seq_slot(1) {
        conv_pool.upload(conv0);
        ssm_pool.upload(ssm0);
        x.upload(x0);
        if (c.tr) trb.upload(tr);
        ZK_CHECK(cudaMemset(sync.ptr, 0, 2 * sizeof(unsigned)));
        upload_ints(seq_slot, ivec{slot});
    }
    persist_run(const persist_run &) = delete;
    ~persist_run() {
        for (dev_layer * p : dl) delete p;
    }
    void add_layer(const host_layer & l) {
        const int L = (int) dl.size(), H = pc.H, nh = pc.nh;
        dev_layer * w = new dev_layer(H, d, cd, ipo, nh);
        w->in_proj.upload(l.in_proj);
        w->out_proj.upload(l.out_proj);
        w->input_norm.upload(l.input_norm);
        w->conv_w.upload(l.conv_w);
        if (pc.conv_bias) w->conv_b.upload(l.conv_b);
        w->norm.upload(l.norm);
        w->dt_bias.upload(l.dt_bias);
        w->a_log.upload(l.a_log);
        w->d_skip.upload(l.d_skip);
        dl.push_back(w);
        host_ptrs.push_back({w->in_proj.ptr, w->out_proj.ptr, w->input_norm.ptr, w->conv_w.ptr,
                             pc.conv_bias ? w->conv_b.ptr : nullptr, w->norm.ptr, w->dt_bias.ptr, w->a_log.ptr, w->d_skip.ptr,
                             conv_pool.ptr + (size_t) L * slots * 3 * cd, ssm_pool.ptr + (size_t) L * slots * nh * pc.P * pc.N});
    }
    mamba2_persist_args & finish() {
        a.layers = host_ptrs.data();
        a.n_layers = (int) dl.size();
        a.x = x.ptr;
        a.tr = pc.tr ? trb.ptr : nullptr;
        a.down_w = pc.ffn > 0 ? down_w.ptr : nullptr;
        a.gu = pc.ffn > 0 ? gu.ptr : nullptr;
        a.ffn = pc.ffn;
        a.zx = zx.ptr;
        a.xbc = xbc.ptr;
        a.y = y.ptr;
        a.gsq = gsq.ptr;
        a.sync = sync.ptr;
        a.seq_slot = seq_slot.ptr;
        a.hidden = pc.H;
        a.n_heads = pc.nh;
        a.head_dim = pc.P;
        a.n_groups = pc.G;
        a.d_state = pc.N;
        a.eps = 1e-5f;
        a.gated_eps = 1e-5f;
        return a;
    }
};

void run_case(test_table & tab, test_rng & rng, const persist_case & pc) {
    const int H = pc.H, nh = pc.nh, P = pc.P, G = pc.G, N = pc.N, d = nh * P, cd = d + 2 * G * N, ipo = d + cd + nh;
    const int slots = 3, slot = 1;
    const double eps = 1e-5;
    std::vector<host_layer> hl;
    for (int L = 0; L < pc.layers; ++L) hl.push_back(random_layer(rng, pc));
    // pools of `slots` slots per layer; the run must touch only `slot`
    vec conv_ref = rng.f32_values((size_t) pc.layers * slots * 3 * cd, -1.0, 1.0);
    vec ssm_ref = rng.f32_values((size_t) pc.layers * slots * nh * P * N, -1.0, 1.0);
    vec x_ref = rng.f32_values(H, -1.0, 1.0), tr = rng.f32_values(H, -0.5, 0.5);
    persist_run run(pc, slots, slot, conv_ref, ssm_ref, x_ref, tr);
    for (const host_layer & l : hl) run.add_layer(l);
    vec tr_ref;  // the down phase's: tr = bf16(gelu(g) * u) . W_down^T
    if (pc.ffn > 0) {
        const int F = pc.ffn;
        const vec gu = rng.f32_values((size_t) 2 * F, -3.0, 3.0);
        const vec wd = rng.bf16_values((size_t) H * F, -1.0 / std::sqrt(F), 1.0 / std::sqrt(F));
        run.gu.upload(gu);
        run.down_w.upload(wd);
        vec act = ref_gelu_mul(gu, 1, F);
        for (auto & v : act) v = (double) __bfloat162float(__float2bfloat16_rn((float) v));  // the input is bf16
        tr_ref = ref_matmul_nt(act, wd, vec(), 1, H, F, 0.0);
    }
    mamba2_persist_args & a = run.finish();
    const ivec cu{0, 1}, ss{slot};
    for (int step = 0; step < pc.steps; ++step) {  // steps > 1: the launch left its counters ready for the next
        const bool ok = mamba2_decode_persistent(a, 0);
        if (!ok) {
            std::printf("%s: refused (%s)\n", pc.name, mamba2_decode_persistent_refusal());
            tab.compare_ints(std::string(pc.name) + " launched", ivec{0}, ivec{1});
            break;
        }
        ZK_LAUNCHED();
        const std::string tag = std::string(pc.name) + " step " + std::to_string(step);
        if (pc.ffn > 0) {  // tr against its reference (an act value may round to the other bf16 neighbour: skinny's
                           // gelu tolerance); the layers' references then start from the tr the launch wrote
            tr = run.trb.download();
            tab.compare(tag + " tr (down phase)", tr, tr_ref, 1e-4);
        }
        for (int L = 0; L < pc.layers; ++L) {
            const host_layer & l = hl[L];
            const vec xn = ref_rms_norm(x_ref, pc.tr && L == 0 ? tr : vec(), vec(), l.input_norm, 1, H, 0, eps);
            const vec zxr = ref_matmul_nt(xn, l.in_proj, vec(), 1, ipo, H, 0.0);
            const vec pre(zxr.begin() + d, zxr.begin() + d + cd), dt(zxr.begin() + d + cd, zxr.end()), z(zxr.begin(), zxr.begin() + d);
            vec conv_l(conv_ref.begin() + (size_t) L * slots * 3 * cd, conv_ref.begin() + (size_t) (L + 1) * slots * 3 * cd);
            const vec xbcr = ref_causal_conv1d(pre, conv_l, l.conv_w, l.conv_b, cu, ss, cd);
            std::copy(conv_l.begin(), conv_l.end(), conv_ref.begin() + (size_t) L * slots * 3 * cd);
            const size_t sl = (size_t) slots * nh * P * N;
            vec ssm_l(ssm_ref.begin() + L * sl, ssm_ref.begin() + (L + 1) * sl);
            const vec yr = ref_mamba2_scan(xbcr, dt, l.dt_bias, l.a_log, l.d_skip, ssm_l, cu, ss, nh, P, G, N);
            std::copy(ssm_l.begin(), ssm_l.end(), ssm_ref.begin() + L * sl);
            const vec g = ref_gated_rms_norm(yr, z, l.norm, 1, d, G, 1e-5);
            x_ref = ref_matmul_nt(g, l.out_proj, x_ref, 1, H, d, 1.0);
        }
        tab.compare(tag + " x", run.x.download(), x_ref, 2e-5);
        tab.compare(tag + " conv pools", run.conv_pool.download(), conv_ref, 2e-5);
        tab.compare(tag + " ssm pools", run.ssm_pool.download(), ssm_ref, 2e-5);
    }
    tab.compare_ints(std::string(pc.name) + " counters reset", download_ints_u(run.sync), ivec{0, 0});
}


// ZK_BENCH_PERSIST=1: 1.2B dims, a run of 5 layers: us per layer over 50 launches, then one traced launch's phases
// (median over the CTAs of layer 2, us) and the ring's waits.
void bench_persist(test_rng & rng) {
    const persist_case pc{"bench", 2048, 64, 64, 1, 128, 5, 1, false, true};  // 1.2B dims, a run of 5 layers
    const int H = pc.H, nh = pc.nh, P = pc.P, N = pc.N, d = nh * P, cd = d + 2 * pc.G * N, ipo = d + cd + nh, layers = pc.layers;
    persist_run run(pc, 1, 0, rng.f32_values((size_t) layers * 3 * cd, -1, 1), rng.f32_values((size_t) layers * nh * P * N, -1, 1),
                    rng.f32_values(H, -1, 1), vec());
    for (int L = 0; L < layers; ++L) run.add_layer(random_layer(rng, pc));
    mamba2_persist_args & a = run.finish();
    int n_sm = 0;
    ZK_CHECK(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, 0));
    dev_buf<unsigned long long> trace((size_t) n_sm * layers * PERSIST_TRACE_FIELDS + 256 * 4);
    cudaEvent_t e0, e1;
    ZK_CHECK(cudaEventCreate(&e0));
    ZK_CHECK(cudaEventCreate(&e1));
    for (int i = 0; i < 2000; ++i) mamba2_decode_persistent(a, 0);  // ~0.4 s: the clocks up from idle
    ZK_CHECK(cudaEventRecord(e0));
    const int reps = 200;
    for (int i = 0; i < reps; ++i) mamba2_decode_persistent(a, 0);
    ZK_CHECK(cudaEventRecord(e1));
    ZK_LAUNCHED();
    float ms = 0;
    ZK_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    const double us_layer = 1000.0 * ms / reps / layers;
    // The same launches alternating with one skinny_gemm GEMV (x [1, H] fp32 . an in_proj-sized weight), as the
    // engine's shared-block GEMVs sit between its persistent launches: what an edge between this ~227 KB
    // shared-memory kernel and a small-carveout kernel costs beyond the two kernels alone.
    skinny_gemm_args g{};
    g.n_seg = 1;
    g.x_mode = SKINNY_X_F32;
    g.x = run.x.ptr;
    g.ld_x = H;
    g.K = H;
    g.M = 1;
    g.y_f32 = true;
    dev_buf<float> gy(ipo);
    g.seg[0] = {run.dl[0]->in_proj.ptr, nullptr, nullptr, gy.ptr, ipo, ipo};
    auto timed_us = [&](bool persist, bool gemv) {  // us per repetition
        for (int i = 0; i < 20; ++i) {
            if (persist) mamba2_decode_persistent(a, 0);
            if (gemv) skinny_gemm(g, 0);
        }
        ZK_CHECK(cudaEventRecord(e0));
        for (int i = 0; i < reps; ++i) {
            if (persist) mamba2_decode_persistent(a, 0);
            if (gemv) skinny_gemm(g, 0);
        }
        ZK_CHECK(cudaEventRecord(e1));
        ZK_LAUNCHED();
        float t = 0;
        ZK_CHECK(cudaEventElapsedTime(&t, e0, e1));
        return 1000.0 * t / reps;
    };
    for (const bool pdl : {false, true}) {  // plain launches, then as the engine launches them (PDL)
        const bool pdl_was = zk_pdl_enabled();
        zk_pdl_enabled() = pdl;
        g.pdl = pdl;
        const double t_p = timed_us(true, false), t_g = timed_us(false, true), t_pg = timed_us(true, true);
        std::printf("bench persist alternating with a GEMV (PDL %s): persistent %.1f us, GEMV %.1f us, both %.1f us "
                    "per pair (edges %+.1f us)\n", pdl ? "on" : "off", t_p, t_g, t_pg, t_pg - t_p - t_g);
        zk_pdl_enabled() = pdl_was;
    }
    const double bytes = (double) layers * ((double) ipo * H + (double) H * d) * 2 + (double) layers * nh * P * N * 8;
    std::printf("bench persist 1.2B dims, %d layers: %.2f us per layer, %.2f TB/s (weights + state r/w)\n", layers,
                us_layer, bytes / (1e-3 * ms / reps) / 1e12);
    a.trace = trace.ptr;
    mamba2_decode_persistent(a, 0);
    ZK_LAUNCHED();
    std::vector<unsigned long long> t(trace.n);
    ZK_CHECK(cudaMemcpy(t.data(), trace.ptr, t.size() * 8, cudaMemcpyDeviceToHost));
    unsigned long long t_min = ~0ull;
    for (int b = 0; b < n_sm; ++b) t_min = std::min(t_min, t[(size_t) b * layers * PERSIST_TRACE_FIELDS]);
    const char * names[] = {"start", "after C", "in_proj done", "after A", "state done", "after B", "out_proj done",
                            "full waits", "empty waits", "producer issued", "gated staged", "in_proj slots",
                            "in_proj synced", "out_proj slots", "out_proj synced", "next loads issued"};
    for (int L = 0; L < layers; ++L) {
        std::printf("layer %d (us from launch start; median / max over CTAs):", L);
        for (int k = 0; k < PERSIST_TRACE_FIELDS; ++k) {
            std::vector<double> v;
            for (int b = 0; b < n_sm; ++b) {
                const unsigned long long x = t[((size_t) b * layers + L) * PERSIST_TRACE_FIELDS + k];
                v.push_back(k == 7 || k == 8 ? x / 1e3 : (double) (x - t_min) / 1e3);
            }
            std::sort(v.begin(), v.end());
            std::printf(" | %s %.2f / %.2f", names[k], v[v.size() / 2], v.back());
        }
        std::printf("\n");
    }
    // CTA 0's own marks of layers 1-2, on the slot trace's clock (below)
    for (int L = 1; L < 3 && L < layers; ++L) {
        std::printf("CTA 0 layer %d (us from launch start):", L);
        for (int k = 0; k < PERSIST_TRACE_FIELDS; ++k) {
            const unsigned long long x = t[(size_t) L * PERSIST_TRACE_FIELDS + k];
            std::printf(" | %s %.2f", names[k], k == 7 || k == 8 ? x / 1e3 : (double) (x - t_min) / 1e3);
        }
        std::printf("\n");
    }
    // CTA 0's slots (fills 25-75: layers 1-2): wait start, data there, partial sums done (the fourth field repeats it)
    const unsigned long long * sl = t.data() + (size_t) n_sm * layers * PERSIST_TRACE_FIELDS;
    std::printf("slot trace (CTA 0, us from launch start; wait | compute | gap to the next wait):\n");
    for (int f = 25; f < 76; ++f) {
        const unsigned long long * q = sl + f * 4;
        std::printf("  fill %3d at %8.2f: %6.2f %6.2f %6.2f\n", f, (q[0] - t_min) / 1e3, (q[1] - q[0]) / 1e3,
                    (q[2] - q[1]) / 1e3, (q[4] - q[2]) / 1e3);
    }
}
}  // namespace

void test_mamba_persist(test_table & tab, test_rng & rng) {
    int major = 0;
    ZK_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
    if (major < 9) {
        std::printf("mamba2_decode_persistent: skipped (compute capability %d < 9)\n", major);
        return;
    }
    const persist_case cases[] = {
        {"persist 1.2B dims x3", 2048, 64, 64, 1, 128, 3, 2, true, true},
        {"persist G=2 N=64 x2", 2048, 64, 64, 2, 64, 2, 1, false, true},
        {"persist fixture b dims x3", 40, 4, 20, 2, 16, 3, 3, true, true},
        {"persist odd dims x2 (no bias)", 72, 6, 12, 3, 8, 2, 2, true, false},
        {"persist 1.2B dims + down x2", 2048, 64, 64, 1, 128, 2, 2, true, true, 8192},
        {"persist fixture b dims + down x2", 40, 4, 20, 2, 16, 2, 2, true, true, 128},
    };
    for (const persist_case & pc : cases) run_case(tab, rng, pc);
    const char * b = std::getenv("ZK_BENCH_PERSIST");
    if (b && b[0] == '1') bench_persist(rng);
    // dims it does not take: refused, nothing enqueued
    mamba2_persist_args bad{};
    bad.n_layers = 1;
    bad.hidden = 36;  // not a multiple of 8
    bad.n_heads = 4;
    bad.head_dim = 16;
    bad.n_groups = 1;
    bad.d_state = 16;
    tab.compare_ints("persist refuses null buffers / H % 8", ivec{mamba2_decode_persistent(bad, 0) ? 1 : 0}, ivec{0});
}

ZK_REGISTER_TEST(test_mamba_persist);
