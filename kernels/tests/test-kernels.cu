// Kernel tests: every kernel family against the float64 CPU reference (cpu-reference.cc) on fresh
// random inputs with awkward shapes (odd widths, ragged batches mixing decodes and prefill chunks,
// permuted slots, state carried across calls). Prints one table row per check; exits 1 on failure.
// Usage: test-kernels [seed]   (default: time-based; the seed is printed for reruns)
#include <cstring>
#include <algorithm>
#include <chrono>
#include <numeric>

#include "test-harness.h"

static void test_rms_norm(test_table & tab, test_rng & rng) {
    const int rows = 37, n_a = 301, n_c = 0;
    const vec a = rng.bf16_values((size_t) rows * n_a, -2, 2), b = rng.bf16_values((size_t) rows * n_a, -1, 1);
    const vec w = rng.bf16_values(n_a, 0.5, 1.5);
    dev_buf<bf16> da(a.size()), db(b.size()), dw(w.size()), dy(a.size()), dsum(a.size());
    da.upload(a); db.upload(b); dw.upload(w);
    rms_norm_fused(dy.ptr, dsum.ptr, da.ptr, db.ptr, nullptr, dw.ptr, rows, n_a, n_c, 1e-5f, 0);
    ZK_LAUNCHED();
    vec sum(a.size());
    for (size_t i = 0; i < a.size(); ++i) sum[i] = a[i] + b[i];
    tab.compare("rms_norm residual add: y [37,301]", dy.download(), ref_rms_norm(a, b, {}, w, rows, n_a, 0, 1e-5), TOL_BF16);
    tab.compare("rms_norm residual add: sum [37,301]", dsum.download(), sum, TOL_BF16);

    // concat(a, c) over 2 x 150 (the shared block's input norm over [X, E])
    const int m = 150;
    const vec a2 = rng.bf16_values((size_t) rows * m, -3, 3), c2 = rng.bf16_values((size_t) rows * m, -1, 1);
    const vec w2 = rng.bf16_values(2 * m, 0.5, 1.5);
    dev_buf<bf16> da2(a2.size()), dc2(c2.size()), dw2(w2.size()), dy2((size_t) rows * 2 * m);
    da2.upload(a2); dc2.upload(c2); dw2.upload(w2);
    rms_norm_fused(dy2.ptr, nullptr, da2.ptr, nullptr, dc2.ptr, dw2.ptr, rows, m, m, 1e-5f, 0);
    ZK_LAUNCHED();
    tab.compare("rms_norm concat: y [37,300]", dy2.download(), ref_rms_norm(a2, {}, c2, w2, rows, m, m, 1e-5), TOL_BF16);
}

static void test_gated_rms_norm(test_table & tab, test_rng & rng) {
    const int rows = 29, d = 192, groups = 2, ld_z = 2 * d + 7;
    const vec y = rng.f32_values((size_t) rows * d, -2, 2), zbig = rng.bf16_values((size_t) rows * ld_z, -3, 3);
    const vec w = rng.bf16_values(d, 0.5, 1.5);
    vec z((size_t) rows * d);
    for (int r = 0; r < rows; ++r) for (int i = 0; i < d; ++i) z[(size_t) r * d + i] = zbig[(size_t) r * ld_z + 5 + i];
    dev_buf<float> dy_in(y.size());
    dev_buf<bf16> dz(zbig.size()), dw(w.size()), dout(y.size());
    dy_in.upload(y); dz.upload(zbig); dw.upload(w);
    gated_rms_norm(dout.ptr, dy_in.ptr, dz.ptr + 5, ld_z, dw.ptr, rows, d, groups, 1e-5f, 0);
    ZK_LAUNCHED();
    tab.compare("gated_rms_norm G=2 [29,192]", dout.download(), ref_gated_rms_norm(y, z, w, rows, d, groups, 1e-5), TOL_BF16);
}

// Permuted slot ids among n_slots for n_seqs sequences.
static ivec pick_slots(test_rng & rng, int n_seqs, int n_slots) {
    ivec all(n_slots);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng.gen);
    return ivec(all.begin(), all.begin() + n_seqs);
}

// Two calls over the same slots (state carried), ragged lengths including decodes (length 1) and
// sequences shorter than the conv window.
static void test_causal_conv1d(test_table & tab, test_rng & rng) {
    const int C = 99, ld_x = C + 13, n_slots = 9;
    const ivec slots = pick_slots(rng, 6, n_slots);
    vec state = rng.bf16_values((size_t) n_slots * 3 * C, -1, 1);
    const vec w = rng.bf16_values((size_t) C * 4, -0.5, 0.5), bias = rng.bf16_values(C, -0.2, 0.2);
    dev_buf<bf16> dstate(state.size()), dw(w.size()), dbias(bias.size());
    dstate.upload(state); dw.upload(w); dbias.upload(bias);
    const ivec lens_by_call[2] = {{1, 5, 2, 37, 1, 64}, {1, 1, 3, 2, 40, 1}};
    for (int call = 0; call < 2; ++call) {
        const ivec cu = cu_from_lengths(lens_by_call[call]);
        const ivec ts = token_seq_from_cu(cu);
        const int T = cu.back();
        const vec xbig = rng.bf16_values((size_t) T * ld_x, -2, 2);
        vec x((size_t) T * C);
        for (int t = 0; t < T; ++t) for (int c = 0; c < C; ++c) x[(size_t) t * C + c] = xbig[(size_t) t * ld_x + 4 + c];
        dev_buf<bf16> dx(xbig.size()), dout((size_t) T * C);
        dev_buf<int32_t> dcu(cu.size()), dts(ts.size()), dslot(slots.size());
        dx.upload(xbig); upload_ints(dcu, cu); upload_ints(dts, ts); upload_ints(dslot, slots);
        causal_conv1d_varlen(dout.ptr, dx.ptr + 4, ld_x, dstate.ptr, dw.ptr, dbias.ptr, dcu.ptr, dts.ptr, dslot.ptr, T, C, 0);
        causal_conv1d_state_update(dstate.ptr, dx.ptr + 4, ld_x, dcu.ptr, dslot.ptr, (int) slots.size(), C, 0);
        ZK_LAUNCHED();
        const vec ref = ref_causal_conv1d(x, state, w, bias, cu, slots, C);
        const std::string tag = "causal_conv1d call " + std::to_string(call + 1);
        tab.compare(tag + ": out [" + std::to_string(T) + ",99]", dout.download(), ref, TOL_BF16);
        tab.compare(tag + ": state pool [9,3,99]", dstate.download(), state, 1e-12);
    }
}

struct scan_case { int nh, P, G, N; };

static void run_scan(const scan_case & sc, const ivec & slots, const ivec & lens, vec & state, dev_buf<float> & dstate,
                     const vec & xbc, const vec & dtbig, int ld_dt, const vec & dt_bias, const vec & a_log,
                     const vec & dsk, vec & y_gpu, vec & y_ref) {
    const int d = sc.nh * sc.P, ld = d + 2 * sc.G * sc.N;
    const ivec cu = cu_from_lengths(lens);
    const int T = cu.back();
    vec dt((size_t) T * sc.nh);
    for (int t = 0; t < T; ++t) for (int h = 0; h < sc.nh; ++h) dt[(size_t) t * sc.nh + h] = dtbig[(size_t) t * ld_dt + 3 + h];
    dev_buf<bf16> dx(xbc.size()), ddt(dtbig.size());
    dev_buf<float> dy((size_t) T * d), dbias(dt_bias.size()), dalog(a_log.size()), dd(dsk.size());
    dev_buf<int32_t> dcu(cu.size()), dslot(slots.size());
    dx.upload(xbc); ddt.upload(dtbig); dbias.upload(dt_bias); dalog.upload(a_log); dd.upload(dsk);
    upload_ints(dcu, cu); upload_ints(dslot, slots);
    mamba2_scan_varlen(dy.ptr, dstate.ptr, dx.ptr, ld, ddt.ptr + 3, ld_dt, dbias.ptr, dalog.ptr, dd.ptr, dcu.ptr,
                       dslot.ptr, (int) slots.size(), sc.nh, sc.P, sc.G, sc.N, 0);
    ZK_LAUNCHED();
    y_gpu = dy.download();
    y_ref = ref_mamba2_scan(xbc, dt, dt_bias, a_log, dsk, state, cu, slots, sc.nh, sc.P, sc.G, sc.N);
}

static void test_mamba2_scan(test_table & tab, test_rng & rng) {
    const scan_case cases[3] = {{6, 16, 2, 48}, {4, 64, 1, 128}, {4, 12, 2, 16}};
    for (const scan_case & sc : cases) {
        const int d = sc.nh * sc.P, ld = d + 2 * sc.G * sc.N, ld_dt = sc.nh + 9, n_slots = 7;
        const std::string tag = "mamba2_scan nh" + std::to_string(sc.nh) + " P" + std::to_string(sc.P) + " G" +
                                std::to_string(sc.G) + " N" + std::to_string(sc.N);
        const vec dt_bias = rng.f32_values(sc.nh, -3, 0), a_log = rng.f32_values(sc.nh, 0, 2.5), dsk = rng.f32_values(sc.nh, 0.5, 1.5);
        vec state = rng.f32_values((size_t) n_slots * sc.nh * sc.P * sc.N, -0.5, 0.5);
        dev_buf<float> dstate(state.size());
        dstate.upload(state);
        const ivec slots = pick_slots(rng, 5, n_slots);
        const ivec lens_by_call[2] = {{1, 9, 70, 1, 33}, {1, 1, 17, 2, 1}};
        for (int call = 0; call < 2; ++call) {
            const int T = cu_from_lengths(lens_by_call[call]).back();
            const vec xbc = rng.bf16_values((size_t) T * ld, -1, 1), dtbig = rng.bf16_values((size_t) T * ld_dt, -2, 2);
            vec y_gpu, y_ref;
            run_scan(sc, slots, lens_by_call[call], state, dstate, xbc, dtbig, ld_dt, dt_bias, a_log, dsk, y_gpu, y_ref);
            tab.compare(tag + " call " + std::to_string(call + 1) + ": y", y_gpu, y_ref, TOL_F32);
            tab.compare(tag + " call " + std::to_string(call + 1) + ": state", dstate.download(), state, TOL_F32);
        }
        // Chunked (30 + 1 + 69 tokens over three calls) equals one-shot (100 tokens) on the GPU.
        const int T = 100;
        const vec xbc = rng.bf16_values((size_t) T * ld, -1, 1), dtbig = rng.bf16_values((size_t) T * ld_dt, -2, 2);
        const vec init = rng.f32_values((size_t) sc.nh * sc.P * sc.N, -0.5, 0.5);
        vec st_one = state, st_chunk = state;
        const size_t slot_elems = (size_t) sc.nh * sc.P * sc.N;
        std::copy(init.begin(), init.end(), st_one.begin() + 2 * slot_elems);
        std::copy(init.begin(), init.end(), st_chunk.begin() + 2 * slot_elems);
        dev_buf<float> d_one(state.size()), d_chunk(state.size());
        d_one.upload(st_one); d_chunk.upload(st_chunk);
        vec y_one, y_one_ref;
        run_scan(sc, {2}, {T}, st_one, d_one, xbc, dtbig, ld_dt, dt_bias, a_log, dsk, y_one, y_one_ref);
        vec y_chunks;
        int t0 = 0;
        for (int len : {30, 1, 69}) {
            const vec xs(xbc.begin() + (size_t) t0 * ld, xbc.begin() + (size_t) (t0 + len) * ld);
            const vec ds(dtbig.begin() + (size_t) t0 * ld_dt, dtbig.begin() + (size_t) (t0 + len) * ld_dt);
            vec yg, yr;
            run_scan(sc, {2}, {len}, st_chunk, d_chunk, xs, ds, ld_dt, dt_bias, a_log, dsk, yg, yr);
            y_chunks.insert(y_chunks.end(), yg.begin(), yg.end());
            t0 += len;
        }
        // Decode specialization: one token per sequence, against the reference and the varlen scan.
        {
            const ivec lens(5, 1);
            const vec xd = rng.bf16_values((size_t) 5 * ld, -1, 1), dtd = rng.bf16_values((size_t) 5 * ld_dt, -2, 2);
            vec st_ref = state;
            dev_buf<float> d_st(state.size());
            d_st.upload(state);
            const ivec cu = cu_from_lengths(lens);
            vec dt((size_t) 5 * sc.nh);
            for (int t = 0; t < 5; ++t) for (int h = 0; h < sc.nh; ++h) dt[(size_t) t * sc.nh + h] = dtd[(size_t) t * ld_dt + 3 + h];
            dev_buf<bf16> dx(xd.size()), ddt(dtd.size());
            dev_buf<float> dy((size_t) 5 * d), dbias(dt_bias.size()), dalog(a_log.size()), dd(dsk.size());
            dev_buf<int32_t> dcu(cu.size()), dslot(slots.size());
            dx.upload(xd); ddt.upload(dtd); dbias.upload(dt_bias); dalog.upload(a_log); dd.upload(dsk);
            upload_ints(dcu, cu); upload_ints(dslot, slots);
            const bool ok = mamba2_state_step(dy.ptr, d_st.ptr, dx.ptr, ld, ddt.ptr + 3, ld_dt, dbias.ptr, dalog.ptr, dd.ptr,
                                              dcu.ptr, dslot.ptr, 5, sc.nh, sc.P, sc.G, sc.N, 0);
            ZK_LAUNCHED();
            const bool supported = sc.N % 4 == 0 && (sc.N / 4 & (sc.N / 4 - 1)) == 0 && sc.N <= 128;
            tab.compare_ints(tag + ": decode step accepts iff N/4 is a power of 2", {ok ? 1 : 0}, {supported ? 1 : 0});
            if (ok) {
                const vec y_ref = ref_mamba2_scan(xd, dt, dt_bias, a_log, dsk, st_ref, cu, slots, sc.nh, sc.P, sc.G, sc.N);
                tab.compare(tag + ": decode step y", dy.download(), y_ref, TOL_F32);
                tab.compare(tag + ": decode step state", d_st.download(), st_ref, TOL_F32);
            }
        }
        // Chunked SSD form on a ragged batch (chunk edges at 63/64/65 tokens, decodes) from nonzero states.
        {
            const ivec lens = {1, 64, 65, 150, 3};
            const ivec cu = cu_from_lengths(lens);
            const int T = cu.back();
            ivec chunk_t0, chunk_len, seq_chunk0, seq_nchunks;
            for (size_t q = 0; q < lens.size(); ++q) {
                seq_chunk0.push_back((int) chunk_t0.size());
                for (int o = 0; o < lens[q]; o += ZK_SSD_CHUNK_TOKENS) {
                    chunk_t0.push_back(cu[q] + o);
                    chunk_len.push_back(std::min(ZK_SSD_CHUNK_TOKENS, lens[q] - o));
                }
                seq_nchunks.push_back((int) chunk_t0.size() - seq_chunk0.back());
            }
            const int C = (int) chunk_t0.size();
            const vec xs = rng.bf16_values((size_t) T * ld, -1, 1), dts = rng.bf16_values((size_t) T * ld_dt, -2, 2);
            vec dt((size_t) T * sc.nh);
            for (int t = 0; t < T; ++t) for (int h = 0; h < sc.nh; ++h) dt[(size_t) t * sc.nh + h] = dts[(size_t) t * ld_dt + 3 + h];
            vec st_ref = state;
            dev_buf<float> d_st(state.size()), dy((size_t) T * d), dcs((size_t) C * sc.G * ZK_SSD_CHUNK_TOKENS * ZK_SSD_CHUNK_TOKENS);
            dev_buf<float> ddtb((size_t) C * sc.nh * 64), dlam((size_t) C * sc.nh * 64);
            dev_buf<float> dbias(dt_bias.size()), dalog(a_log.size()), dd(dsk.size());
            dev_buf<bf16> dx(xs.size()), ddt(dts.size());
            dev_buf<int32_t> dct0(C), dclen(C), dsc0(lens.size()), dsn(lens.size()), dslot(slots.size());
            d_st.upload(state); dx.upload(xs); ddt.upload(dts); dbias.upload(dt_bias); dalog.upload(a_log); dd.upload(dsk);
            upload_ints(dct0, chunk_t0); upload_ints(dclen, chunk_len); upload_ints(dsc0, seq_chunk0);
            upload_ints(dsn, seq_nchunks); upload_ints(dslot, slots);
            const bool ok = mamba2_ssd_varlen(dy.ptr, d_st.ptr, dcs.ptr, ddtb.ptr, dlam.ptr, dx.ptr, ld, ddt.ptr + 3, ld_dt,
                                              dbias.ptr, dalog.ptr, dd.ptr, dct0.ptr, dclen.ptr, dsc0.ptr, dsn.ptr, dslot.ptr,
                                              C, (int) lens.size(), sc.nh, sc.P, sc.G, sc.N, 0);
            ZK_LAUNCHED();
            tab.compare_ints(tag + ": ssd accepts P <= 64", {ok ? 1 : 0}, {sc.P <= 64 ? 1 : 0});
            if (ok) {
                const vec y_ref = ref_mamba2_scan(xs, dt, dt_bias, a_log, dsk, st_ref, cu, slots, sc.nh, sc.P, sc.G, sc.N);
                tab.compare(tag + ": ssd chunked [1,64,65,150,3] y", dy.download(), y_ref, 1e-4);
                tab.compare(tag + ": ssd chunked final states", d_st.download(), st_ref, 1e-4);
            }
        }
        tab.compare(tag + ": one-shot vs ref", y_one, y_one_ref, TOL_F32);
        tab.compare(tag + ": chunked 30+1+69 vs one-shot", y_chunks, y_one, 1e-6);
        tab.compare(tag + ": chunked final state vs one-shot", d_chunk.download(), d_one.download(), 1e-6);
    }
}

static void test_rope(test_table & tab, test_rng & rng) {
    for (int D : {40, 224, 20}) {
        const int T = 13, heads = 3;
        const vec x = rng.bf16_values((size_t) T * heads * D, -2, 2);
        ivec pos(T);
        for (auto & p : pos) p = rng.integer(0, 5000);
        dev_buf<bf16> dx(x.size());
        dev_buf<int32_t> dpos(T);
        dx.upload(x); upload_ints(dpos, pos);
        rope_neox_inplace(dx.ptr, dpos.ptr, T, heads, D, 10000.0f, 0);
        ZK_LAUNCHED();
        tab.compare("rope_neox D=" + std::to_string(D) + " [13,3]", dx.download(), ref_rope_neox(x, pos, heads, D, 10000.0), TOL_BF16);
    }
    // fp32 q and k in one launch (the engine's path): both against the reference
    for (int D : {128, 40, 224, 64}) {
        const int T = D == 64 ? 600 : 37, heads = 5;  // T 600: the heads-in-one-thread path
        const vec q = rng.f32_values((size_t) T * heads * D, -2, 2), k = rng.f32_values((size_t) T * heads * D, -2, 2);
        ivec pos(T);
        for (auto & p : pos) p = rng.integer(0, 5000);
        dev_buf<float> dq(q.size()), dk(k.size()), dk1(k.size());
        dev_buf<int32_t> dpos(T);
        dq.upload(q); dk.upload(k); dk1.upload(k); upload_ints(dpos, pos);
        rope_neox_qk_inplace(dq.ptr, dk.ptr, dpos.ptr, T, heads, D, 10000.0f, 0);
        rope_neox_inplace(dk1.ptr, dpos.ptr, T, heads, D, 10000.0f, 0);
        ZK_LAUNCHED();
        // fp32 angles (as HF computes them) vs the float64 reference: ~pos * 2^-24 rad of phase error
        const std::string tag = "rope_neox_qk D=" + std::to_string(D);
        tab.compare(tag + " q", dq.download(), ref_rope_neox(q, pos, heads, D, 10000.0), 2e-3);
        tab.compare(tag + " k", dk.download(), ref_rope_neox(k, pos, heads, D, 10000.0), 2e-3);
        tab.compare(tag + " k = one-tensor kernel", dk.download(), dk1.download(), 1e-7);
    }
}

// Three sequences over one shuffled page pool: one with 20 cached tokens + a 13-token chunk, one
// decode at position 50, one fresh 37-token prefill. Cached keys go straight into the pool; this
// step's keys go through kv_cache_write, as in the engine.
static void test_paged_attention(test_table & tab, test_rng & rng) {
    for (int D : {24, 20, 128, 160, 224}) {
        const int heads = 3, n_pages = 24, max_pages = 5;
        const ivec cached = {20, 50, 0}, chunk = {13, 1, 37};
        const size_t pool_elems = (size_t) n_pages * heads * ZK_PAGE_TOKENS * D;
        vec kpool = rng.bf16_values(pool_elems, -1, 1), vpool = rng.bf16_values(pool_elems, -1, 1);
        ivec pages(n_pages);
        std::iota(pages.begin(), pages.end(), 0);
        std::shuffle(pages.begin(), pages.end(), rng.gen);
        ivec block_tables(3 * max_pages, -1);
        std::vector<vec> keys(3), values(3);
        ivec token_seq, positions, kv_index;
        vec q, knew, vnew;
        int next_page = 0;
        for (int s = 0; s < 3; ++s) {
            const int len = cached[s] + chunk[s];
            for (int i = 0; i < (len + 15) / 16; ++i) block_tables[s * max_pages + i] = pages[next_page++];
            keys[s] = rng.bf16_values((size_t) len * heads * D, -1, 1);
            values[s] = rng.bf16_values((size_t) len * heads * D, -1, 1);
            for (int j = 0; j < len; ++j) {
                const int page = block_tables[s * max_pages + j / 16];
                if (j < cached[s]) {  // earlier chunk: already in the pool
                    for (int h = 0; h < heads; ++h) for (int e = 0; e < D; ++e) {
                        const size_t dst = (((size_t) page * heads + h) * 16 + j % 16) * D + e;
                        kpool[dst] = keys[s][((size_t) j * heads + h) * D + e];
                        vpool[dst] = values[s][((size_t) j * heads + h) * D + e];
                    }
                } else {
                    token_seq.push_back(s);
                    positions.push_back(j);
                    kv_index.push_back(page * 16 + j % 16);
                    knew.insert(knew.end(), keys[s].begin() + (size_t) j * heads * D, keys[s].begin() + (size_t) (j + 1) * heads * D);
                    vnew.insert(vnew.end(), values[s].begin() + (size_t) j * heads * D, values[s].begin() + (size_t) (j + 1) * heads * D);
                    const vec qt = rng.bf16_values((size_t) heads * D, -1.5, 1.5);
                    q.insert(q.end(), qt.begin(), qt.end());
                }
            }
        }
        const int T = (int) token_seq.size();
        const double scale = 1.0 / std::sqrt(D / 2.0);
        dev_buf<bf16> dk(pool_elems), dv(pool_elems), dq(q.size()), dkn(knew.size()), dvn(vnew.size()), dout(q.size());
        dev_buf<int32_t> dbt(block_tables.size()), dts(T), dpos(T), dkvi(T);
        dk.upload(kpool); dv.upload(vpool); dq.upload(q); dkn.upload(knew); dvn.upload(vnew);
        upload_ints(dbt, block_tables); upload_ints(dts, token_seq); upload_ints(dpos, positions); upload_ints(dkvi, kv_index);
        kv_cache_write(dk.ptr, dv.ptr, dkn.ptr, dvn.ptr, dkvi.ptr, T, heads, D, 0);
        const vec ref = ref_attention(q, keys, values, token_seq, positions, heads, D, scale);
        for (bool multi : {false, true}) {
            dout.poison();
            paged_attention(dout.ptr, dq.ptr, dk.ptr, dv.ptr, dbt.ptr, max_pages, dts.ptr, dpos.ptr, T, heads, D,
                            (float) scale, multi, 0);
            ZK_LAUNCHED();
            tab.compare("paged_attention D=" + std::to_string(D) + " T=" + std::to_string(T) + (multi ? " 4q/warp" : " 1q/warp"),
                        dout.download(), ref, TOL_BF16);
        }
    }
}

static void test_elementwise(test_table & tab, test_rng & rng) {
    const int rows = 17, F = 333;
    const vec gu = rng.bf16_values((size_t) rows * 2 * F, -4, 4);
    dev_buf<bf16> dgu(gu.size()), dout((size_t) rows * F);
    dgu.upload(gu);
    gelu_mul(dout.ptr, dgu.ptr, rows, F, 0);
    ZK_LAUNCHED();
    tab.compare("gelu_mul [17,333]", dout.download(), ref_gelu_mul(gu, rows, F), TOL_BF16);

    const int V = 50, H = 70, T = 23;
    const vec table = rng.bf16_values((size_t) V * H, -1, 1);
    ivec ids(T);
    for (auto & i : ids) i = rng.integer(0, V - 1);
    dev_buf<bf16> dtab(table.size()), demb((size_t) T * H);
    dev_buf<int32_t> dids(T);
    dtab.upload(table); upload_ints(dids, ids);
    embedding_gather(demb.ptr, dtab.ptr, dids.ptr, T, H, 0);
    ZK_LAUNCHED();
    vec ref((size_t) T * H);
    for (int t = 0; t < T; ++t) for (int h = 0; h < H; ++h) ref[(size_t) t * H + h] = table[(size_t) ids[t] * H + h];
    tab.compare("embedding_gather [23,70]", demb.download(), ref, 0.0);
}

static void test_argmax_lse(test_table & tab, test_rng & rng, int V) {
    const int rows = 5;
    vec logits = rng.f32_values((size_t) rows * V, -8, 8);
    logits[(size_t) 3 * V + 17] = 30.0;  // a tie: the lower id wins
    logits[(size_t) 3 * V + 900] = 30.0;
    dev_buf<float> dl(logits.size()), dmax(rows), dlse(rows);
    dev_buf<int32_t> dtok(rows);
    dl.upload(logits);
    logits_argmax_lse(dtok.ptr, dmax.ptr, dlse.ptr, dl.ptr, rows, V, 0);
    ZK_LAUNCHED();
    ivec tok;
    vec lse;
    ref_argmax_lse(logits, rows, V, tok, lse);
    tab.compare_ints("logits_argmax [5," + std::to_string(V) + "]", download_ints(dtok), tok);
    tab.compare("logits_lse [5," + std::to_string(V) + "]", dlse.download(), lse, 1e-6);
}

static void test_sampling(test_table & tab, test_rng & rng) {
    for (const int V : {32000, 1001}) test_argmax_lse(tab, rng, V);  // float4 rows; odd vocab: scalar loads
}

// The fp32-activation paths of the engine: fp32 residual inputs, split (hi + lo) bf16 outputs whose sum
// must match the float64 reference to ~2^-17, the split/combine pair, and the fp32 conv with fp32 state.
static vec sum_halves(const vec & v) {
    const size_t n = v.size() / 2;
    vec out(n);
    for (size_t i = 0; i < n; ++i) out[i] = v[i] + v[n + i];
    return out;
}

static void test_fp32_paths(test_table & tab, test_rng & rng) {
    const int rows = 37, n_a = 301, m = 150;
    const vec a = rng.f32_values((size_t) rows * n_a, -2, 2), b = rng.f32_values((size_t) rows * n_a, -1, 1);
    const vec w = rng.bf16_values(n_a, 0.5, 1.5);
    dev_buf<float> da(a.size()), db(b.size());
    dev_buf<bf16> dw(w.size()), dy(2 * a.size());
    da.upload(a); db.upload(b); dw.upload(w);
    rms_norm_f32(dy.ptr, dy.ptr + a.size(), da.ptr, db.ptr, nullptr, dw.ptr, rows, n_a, 0, 1e-5f, 0);
    ZK_LAUNCHED();
    const vec ref = ref_rms_norm(a, b, {}, w, rows, n_a, 0, 1e-5);
    tab.compare("rms_norm_f32 add, hi+lo [37,301]", sum_halves(dy.download()), ref, 2e-5);

    const vec a2 = rng.f32_values((size_t) rows * m, -3, 3), c2 = rng.bf16_values((size_t) rows * m, -1, 1);
    const vec w2 = rng.bf16_values(2 * m, 0.5, 1.5);
    dev_buf<float> da2(a2.size());
    dev_buf<bf16> dc2(c2.size()), dw2(w2.size()), dy2((size_t) 2 * rows * 2 * m);
    da2.upload(a2); dc2.upload(c2); dw2.upload(w2);
    rms_norm_f32(dy2.ptr, dy2.ptr + (size_t) rows * 2 * m, da2.ptr, nullptr, dc2.ptr, dw2.ptr, rows, m, m, 1e-5f, 0);
    ZK_LAUNCHED();
    tab.compare("rms_norm_f32 concat, hi+lo [37,300]", sum_halves(dy2.download()), ref_rms_norm(a2, {}, c2, w2, rows, m, m, 1e-5), 2e-5);

    const int grows = 29, d = 192, groups = 2, ld_z = 2 * d + 7;
    const vec y = rng.f32_values((size_t) grows * d, -2, 2), zbig = rng.f32_values((size_t) grows * ld_z, -3, 3);
    const vec gw = rng.bf16_values(d, 0.5, 1.5);
    vec z((size_t) grows * d);
    for (int r = 0; r < grows; ++r) for (int i = 0; i < d; ++i) z[(size_t) r * d + i] = zbig[(size_t) r * ld_z + 5 + i];
    dev_buf<float> dyin(y.size()), dz(zbig.size());
    dev_buf<bf16> dgw(gw.size()), dout(2 * y.size());
    dyin.upload(y); dz.upload(zbig); dgw.upload(gw);
    gated_rms_norm_f32(dout.ptr, dout.ptr + y.size(), dyin.ptr, dz.ptr + 5, ld_z, dgw.ptr, grows, d, groups, 1e-5f, 0);
    ZK_LAUNCHED();
    tab.compare("gated_rms_norm_f32 G=2, hi+lo [29,192]", sum_halves(dout.download()),
                ref_gated_rms_norm(y, z, gw, grows, d, groups, 1e-5), 2e-5);

    // split then combine (Y = [hi; lo] as a GEMM with the identity would produce), accumulating
    const int n = 19, cols = 133, ld_y = cols + 5;
    const vec x = rng.f32_values((size_t) n * cols, -5, 5), y0 = rng.f32_values((size_t) n * ld_y, -1, 1);
    dev_buf<float> dx(x.size()), dY(2 * x.size()), dy0(y0.size());
    dev_buf<bf16> dsplit(2 * x.size());
    dx.upload(x); dy0.upload(y0);
    split_rows_bf16(dsplit.ptr, dx.ptr, n, cols, 0);
    ZK_LAUNCHED();
    const vec halves = dsplit.download();
    dY.upload(halves);
    combine_halves(dy0.ptr, ld_y, dY.ptr, n, cols, true, 0);
    ZK_LAUNCHED();
    vec want = y0;  // combine sums the halves exactly as stored (hi + lo), in fp32
    for (int r = 0; r < n; ++r) {
        for (int c = 0; c < cols; ++c) {
            const size_t i = (size_t) r * cols + c;
            want[(size_t) r * ld_y + c] += halves[i] + halves[x.size() + i];
        }
    }
    tab.compare("split_rows_bf16 hi+lo [19,133]", sum_halves(halves), x, 2e-5);
    tab.compare("combine_halves accumulate [19,133]", dy0.download(), want, 1e-6);

    // fp32 conv with fp32 state, two calls
    const int C = 99, ld_x = C + 13, n_slots = 9;
    const ivec slots = pick_slots(rng, 6, n_slots);
    vec state = rng.f32_values((size_t) n_slots * 3 * C, -1, 1);
    const vec cw = rng.bf16_values((size_t) C * 4, -0.5, 0.5), bias = rng.bf16_values(C, -0.2, 0.2);
    dev_buf<float> dstate(state.size());
    dev_buf<bf16> dcw(cw.size()), dbias(bias.size());
    dstate.upload(state); dcw.upload(cw); dbias.upload(bias);
    const ivec lens_by_call[2] = {{1, 5, 2, 37, 1, 64}, {1, 1, 3, 2, 40, 1}};
    for (int call = 0; call < 2; ++call) {
        const ivec cu = cu_from_lengths(lens_by_call[call]);
        const ivec ts = token_seq_from_cu(cu);
        const int T = cu.back();
        const vec xbig = rng.f32_values((size_t) T * ld_x, -2, 2);
        vec xc((size_t) T * C);
        for (int t = 0; t < T; ++t) for (int c = 0; c < C; ++c) xc[(size_t) t * C + c] = xbig[(size_t) t * ld_x + 4 + c];
        dev_buf<float> dxc(xbig.size()), dcout((size_t) T * C);
        dev_buf<int32_t> dcu(cu.size()), dts(ts.size()), dslot(slots.size());
        dxc.upload(xbig); upload_ints(dcu, cu); upload_ints(dts, ts); upload_ints(dslot, slots);
        causal_conv1d_varlen(dcout.ptr, dxc.ptr + 4, ld_x, dstate.ptr, dcw.ptr, dbias.ptr, dcu.ptr, dts.ptr, dslot.ptr, T, C, 0);
        causal_conv1d_state_update(dstate.ptr, dxc.ptr + 4, ld_x, dcu.ptr, dslot.ptr, (int) slots.size(), C, 0);
        ZK_LAUNCHED();
        const vec cref = ref_causal_conv1d(xc, state, cw, bias, cu, slots, C);
        const std::string tag = "causal_conv1d f32 call " + std::to_string(call + 1);
        tab.compare(tag + ": out", dcout.download(), cref, TOL_F32);
        tab.compare(tag + ": state pool", dstate.download(), state, 1e-12);
    }
}

int main(int argc, char ** argv) {
    const uint64_t seed = argc > 1 ? std::strtoull(argv[1], nullptr, 10)
                                   : (uint64_t) std::chrono::system_clock::now().time_since_epoch().count();
    std::printf("test-kernels seed %llu\n", (unsigned long long) seed);
    test_rng rng(seed);
    test_table tab;
    test_rms_norm(tab, rng);
    test_gated_rms_norm(tab, rng);
    test_causal_conv1d(tab, rng);
    test_mamba2_scan(tab, rng);
    test_rope(tab, rng);
    test_paged_attention(tab, rng);
    test_elementwise(tab, rng);
    test_sampling(tab, rng);
    test_fp32_paths(tab, rng);
    const char * only = std::getenv("ZK_TEST_ONLY");  // substring filter for registered tests
    for (const kernel_test_entry & t : kernel_test_registry()) {
        if (only && !std::strstr(t.name, only)) continue;
        std::printf("-- %s\n", t.name);
        t.fn(tab, rng);
    }
    std::printf("kernel checks: %d, failed: %d\n", tab.checks, tab.failures);
    return tab.failures ? 1 : 0;
}
