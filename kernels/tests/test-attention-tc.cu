// Tensor-core prefill attention (attention-prefill-tc.cu) against the float64 reference and against the
// CUDA-core kernel (paged-attention.cu), on a ragged batch over a shuffled page pool:
//   seq 0: 37 cached tokens + a 70-token chunk (positions start at 37, crosses a 64-row tile)
//   seq 1: a decode token at position 90
//   seq 2: a fresh 131-token prefill (3 query tiles, last one of 3 rows)
//   seq 3: 64 cached + a 5-token chunk (starts exactly on a key-tile boundary)
//   seq 4: 200 cached + a 150-token chunk (up to 350 keys: many double-buffered key tiles)
// q is fp32 (not bf16-exact), so a missing hi/lo split would show as ~3e-3 error against the 1e-4 bar.
// ZK_BENCH_ATTN=1 adds a timing of both kernels at T = 2048 (one sequence), 32 heads, D = 128/160/224.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include "test-harness.h"

namespace {

constexpr double TOL_TC = 1e-4;  // fp32-level: the hi/lo splits make the bf16 MMAs exact to ~2^-17

struct attention_case {
    int heads = 0, D = 0, max_pages = 0, n_pages = 0, T = 0, S = 0;
    vec kpool, vpool, q, knew, vnew;
    ivec block_tables, token_seq, positions, kv_index, cu;
    std::vector<vec> keys, values;  // per sequence, logical order: [len, heads, D]
};

attention_case make_case(test_rng & rng, int heads, int D, const ivec & cached, const ivec & chunk) {
    attention_case c;
    c.heads = heads;
    c.D = D;
    c.S = (int) cached.size();
    for (int s = 0; s < c.S; ++s) c.max_pages = std::max(c.max_pages, (cached[s] + chunk[s] + 15) / 16);
    c.max_pages += 1;                      // a wider table than needed, like the engine's
    c.n_pages = c.S * c.max_pages + 3;     // spare pages stay random (never read)
    const size_t pool_elems = (size_t) c.n_pages * heads * ZK_PAGE_TOKENS * D;
    c.kpool = rng.bf16_values(pool_elems, -1, 1);
    c.vpool = rng.bf16_values(pool_elems, -1, 1);
    ivec pages(c.n_pages);
    std::iota(pages.begin(), pages.end(), 0);
    std::shuffle(pages.begin(), pages.end(), rng.gen);
    c.block_tables.assign((size_t) c.S * c.max_pages, -1);
    c.keys.resize(c.S);
    c.values.resize(c.S);
    c.cu.push_back(0);
    int next_page = 0;
    for (int s = 0; s < c.S; ++s) {
        const int len = cached[s] + chunk[s];
        for (int i = 0; i < (len + 15) / 16; ++i) c.block_tables[(size_t) s * c.max_pages + i] = pages[next_page++];
        c.keys[s] = rng.bf16_values((size_t) len * heads * D, -1, 1);
        c.values[s] = rng.bf16_values((size_t) len * heads * D, -1, 1);
        for (int j = 0; j < len; ++j) {
            const int page = c.block_tables[(size_t) s * c.max_pages + j / 16];
            const size_t row = (size_t) j * heads * D;
            if (j < cached[s]) {  // an earlier chunk: already in the pool
                for (int h = 0; h < heads; ++h) for (int e = 0; e < D; ++e) {
                    const size_t dst = (((size_t) page * heads + h) * 16 + j % 16) * D + e;
                    c.kpool[dst] = c.keys[s][row + (size_t) h * D + e];
                    c.vpool[dst] = c.values[s][row + (size_t) h * D + e];
                }
            } else {  // this step: written by kv_cache_write, as in the engine
                c.token_seq.push_back(s);
                c.positions.push_back(j);
                c.kv_index.push_back(page * 16 + j % 16);
                c.knew.insert(c.knew.end(), c.keys[s].begin() + row, c.keys[s].begin() + row + (size_t) heads * D);
                c.vnew.insert(c.vnew.end(), c.values[s].begin() + row, c.values[s].begin() + row + (size_t) heads * D);
                const vec qt = rng.f32_values((size_t) heads * D, -2, 2);
                c.q.insert(c.q.end(), qt.begin(), qt.end());
            }
        }
        c.cu.push_back((int) c.token_seq.size());
    }
    c.T = (int) c.token_seq.size();
    return c;
}

struct attention_buffers {
    dev_buf<bf16> k, v;
    dev_buf<float> q, out;
    dev_buf<int32_t> bt, ts, pos, cu;
    explicit attention_buffers(const attention_case & c)
        : k(c.kpool.size()), v(c.vpool.size()), q(c.q.size()), out(c.q.size()), bt(c.block_tables.size()),
          ts(c.T), pos(c.T), cu(c.cu.size()) {
        k.upload(c.kpool); v.upload(c.vpool); q.upload(c.q);
        upload_ints(bt, c.block_tables); upload_ints(ts, c.token_seq); upload_ints(pos, c.positions); upload_ints(cu, c.cu);
        dev_buf<float> kn(c.knew.size()), vn(c.vnew.size());
        dev_buf<int32_t> kvi(c.T);
        kn.upload(c.knew); vn.upload(c.vnew); upload_ints(kvi, c.kv_index);
        kv_cache_write(k.ptr, v.ptr, kn.ptr, vn.ptr, kvi.ptr, c.T, c.heads, c.D, 0);
        ZK_LAUNCHED();
    }
};

void check_ragged(test_table & tab, test_rng & rng, int D) {
    const attention_case c = make_case(rng, 3, D, {37, 90, 0, 64, 200}, {70, 1, 131, 5, 150});
    attention_buffers b(c);
    const float scale = (float) (1.0 / std::sqrt((double) D));
    const vec ref = ref_attention(c.q, c.keys, c.values, c.token_seq, c.positions, c.heads, D, scale);
    const std::string tag = "attention_tc D=" + std::to_string(D) + " T=" + std::to_string(c.T) + " S=5";

    b.out.poison();
    const bool ran = attention_prefill_tc(b.out.ptr, b.q.ptr, b.k.ptr, b.v.ptr, b.bt.ptr, c.max_pages, b.cu.ptr, c.S,
                                          b.pos.ptr, c.T, c.heads, D, scale, 0);
    ZK_LAUNCHED();
    const vec tc = b.out.download();
    tab.compare_ints(tag + ": supported", {ran ? 1 : 0}, {1});
    tab.compare(tag + ": vs ref", tc, ref, TOL_TC);

    b.out.poison();
    paged_attention(b.out.ptr, b.q.ptr, b.k.ptr, b.v.ptr, b.bt.ptr, c.max_pages, b.ts.ptr, b.pos.ptr, c.T, c.heads, D,
                    scale, /*multi_query=*/true, 0);  // no cu_seqlens: the CUDA-core kernel
    ZK_LAUNCHED();
    const vec core = b.out.download();
    tab.compare(tag + ": cuda-core vs ref", core, ref, TOL_TC);
    tab.compare(tag + ": tc vs cuda-core", tc, core, TOL_TC);

    // through the engine's entry point (dispatch to the tc kernel unless ZAMBA2_ATTN_TC=0)
    b.out.poison();
    paged_attention(b.out.ptr, b.q.ptr, b.k.ptr, b.v.ptr, b.bt.ptr, c.max_pages, b.ts.ptr, b.pos.ptr, c.T, c.heads, D,
                    scale, true, 0, b.cu.ptr, c.S);
    ZK_LAUNCHED();
    tab.compare(tag + ": dispatch vs ref", b.out.download(), ref, TOL_TC);
}

// Unsupported head dims (test fixtures use 20/24) fall back to the CUDA-core kernel inside paged_attention.
void check_fallback(test_table & tab, test_rng & rng) {
    const int D = 24;
    const attention_case c = make_case(rng, 2, D, {5, 40}, {23, 1});
    attention_buffers b(c);
    const float scale = (float) (1.0 / std::sqrt((double) D));
    const bool ran = attention_prefill_tc(b.out.ptr, b.q.ptr, b.k.ptr, b.v.ptr, b.bt.ptr, c.max_pages, b.cu.ptr, c.S,
                                          b.pos.ptr, c.T, c.heads, D, scale, 0);
    tab.compare_ints("attention_tc D=24: declined", {ran ? 1 : 0}, {0});
    b.out.poison();
    paged_attention(b.out.ptr, b.q.ptr, b.k.ptr, b.v.ptr, b.bt.ptr, c.max_pages, b.ts.ptr, b.pos.ptr, c.T, c.heads, D,
                    scale, true, 0, b.cu.ptr, c.S);
    ZK_LAUNCHED();
    tab.compare("attention_tc D=24: dispatch falls back, vs ref", b.out.download(),
                ref_attention(c.q, c.keys, c.values, c.token_seq, c.positions, c.heads, D, scale), TOL_TC);
}

// One 2048-token prefill (fresh sequence), 32 heads: median of 7 timed runs of each kernel (CUDA events),
// after a warm-up; both outputs are compared with each other (the float64 reference would take minutes).
void bench(test_table & tab, int D) {
    const int T = 2048, heads = 32, max_pages = T / ZK_PAGE_TOKENS, reps = 7;
    const size_t pool = (size_t) max_pages * heads * ZK_PAGE_TOKENS * D;
    dev_buf<bf16> k(pool), v(pool);
    dev_buf<float> q((size_t) T * heads * D), out_tc(q.n), out_core(q.n);
    fill_random_bf16(k.ptr, (int64_t) pool, 11, 1.0f, 0.0f, 0);
    fill_random_bf16(v.ptr, (int64_t) pool, 12, 1.0f, 0.0f, 0);
    fill_random_f32(q.ptr, (int64_t) q.n, 13, 2.0f, 0.0f, 0);
    ivec bt(max_pages), ts(T, 0), pos(T), cu = {0, T};
    std::iota(bt.begin(), bt.end(), 0);
    std::reverse(bt.begin(), bt.end());  // pages out of order
    std::iota(pos.begin(), pos.end(), 0);
    dev_buf<int32_t> dbt(bt.size()), dts(T), dpos(T), dcu(2);
    upload_ints(dbt, bt); upload_ints(dts, ts); upload_ints(dpos, pos); upload_ints(dcu, cu);
    const float scale = (float) (1.0 / std::sqrt((double) D));
    cudaEvent_t e0, e1;
    ZK_CHECK(cudaEventCreate(&e0));
    ZK_CHECK(cudaEventCreate(&e1));
    auto time_ms = [&](auto && launch) {
        launch();
        ZK_LAUNCHED();
        std::vector<float> ms(reps);
        for (float & m : ms) {
            ZK_CHECK(cudaEventRecord(e0, 0));
            launch();
            ZK_CHECK(cudaEventRecord(e1, 0));
            ZK_CHECK(cudaEventSynchronize(e1));
            ZK_CHECK(cudaEventElapsedTime(&m, e0, e1));
        }
        ZK_LAUNCHED();
        std::sort(ms.begin(), ms.end());
        return ms[reps / 2];
    };
    const float core_ms = time_ms([&] {
        paged_attention(out_core.ptr, q.ptr, k.ptr, v.ptr, dbt.ptr, max_pages, dts.ptr, dpos.ptr, T, heads, D, scale,
                        true, 0);
    });
    const float tc_ms = time_ms([&] {
        attention_prefill_tc(out_tc.ptr, q.ptr, k.ptr, v.ptr, dbt.ptr, max_pages, dcu.ptr, 1, dpos.ptr, T, heads, D,
                             scale, 0);
    });
    const double flop = 4.0 * T * (T + 1) / 2.0 * D * heads;  // QK^T and PV over the causal half, once (no split)
    std::printf("bench attention T=%d heads=%d D=%d: cuda-core %.3f ms, tensor-core %.3f ms (%.1fx, %.0f TFLOP/s useful)\n",
                T, heads, D, core_ms, tc_ms, core_ms / tc_ms, flop / (tc_ms * 1e-3) / 1e12);
    tab.compare("attention_tc bench D=" + std::to_string(D) + ": tc vs cuda-core", out_tc.download(),
                out_core.download(), TOL_TC);
    ZK_CHECK(cudaEventDestroy(e0));
    ZK_CHECK(cudaEventDestroy(e1));
}

}  // namespace

static void test_attention_tc(test_table & tab, test_rng & rng) {
    for (int D : {64, 128, 160, 224}) check_ragged(tab, rng, D);
    check_fallback(tab, rng);
    const char * b = std::getenv("ZK_BENCH_ATTN");
    if (b && std::strcmp(b, "1") == 0) {
        for (int D : {128, 160, 224}) bench(tab, D);
    }
}
ZK_REGISTER_TEST(test_attention_tc);
