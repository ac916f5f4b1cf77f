// Prefill-sized memory-bound kernels against the float64 reference: the tiled varlen conv (fused state
// write-back and the two-launch path, 4-wide and scalar channel groups, fp32 and bf16) over
// ragged batches whose short sequences straddle block boundaries, and the split producers' FP8 low part
// (rms_norm_f32, gated_rms_norm_f32, split_rows_bf16 with *_lo8): hi + lo8 / ZK_LO_FP8_SCALE reconstructs the
// value to ~2^-12, hi is bit-identical to the bf16-lo path, saturation never makes an element worse than hi.
// ZK_BENCH_PREFILL_KERNELS=1 times them at Zamba2-1.2B shapes (test-prefill-bench.cu).
#include <algorithm>
#include <cstring>
#include <numeric>

#include "test-harness.h"

namespace {

ivec pick_slots_distinct(test_rng & rng, int n_seqs, int n_slots) {
    ivec all(n_slots);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng.gen);
    return ivec(all.begin(), all.begin() + n_seqs);
}

// Lengths that put sequences of 1-3 tokens on every offset around 8- and 16-token block boundaries.
ivec ragged_lengths(test_rng & rng, int n_seqs) {
    ivec lens(n_seqs);
    for (auto & l : lens) {
        const int kind = rng.integer(0, 9);
        l = kind < 5 ? rng.integer(1, 3) : (kind < 8 ? rng.integer(4, 20) : rng.integer(21, 70));
    }
    return lens;
}

// Two consecutive steps over the same slots (the state carried), fused or two launches. C % 4 == 0 with aligned
// rows takes the 4-channel path, an odd C the scalar one.
void conv_case(test_table & tab, test_rng & rng, int C, int ld_pad, bool fused, int n_seqs) {
    const int ld_x = C + ld_pad, x_off = 4, n_slots = n_seqs + 5;
    const ivec slots = pick_slots_distinct(rng, n_seqs, n_slots);
    vec state = rng.f32_values((size_t) n_slots * 3 * C, -2, 2);
    const vec w = rng.bf16_values((size_t) C * 4, -1, 1), bias = rng.bf16_values(C, -0.5, 0.5);
    dev_buf<float> dstate(state.size());
    dev_buf<bf16> dw(w.size()), db(bias.size());
    dstate.upload(state); dw.upload(w); db.upload(bias);
    for (int step = 0; step < 2; ++step) {
        const ivec cu = cu_from_lengths(ragged_lengths(rng, n_seqs));
        const ivec ts = token_seq_from_cu(cu);
        const int T = cu.back();
        const vec xbig = rng.f32_values((size_t) T * ld_x + x_off, -2, 2);
        vec x((size_t) T * C);
        for (int t = 0; t < T; ++t) for (int c = 0; c < C; ++c) x[(size_t) t * C + c] = xbig[(size_t) t * ld_x + x_off + c];
        dev_buf<float> dx(xbig.size()), dout((size_t) T * C);
        dev_buf<int32_t> dcu(cu.size()), dts(ts.size()), dslot(slots.size());
        dx.upload(xbig); upload_ints(dcu, cu); upload_ints(dts, ts); upload_ints(dslot, slots);
        if (fused) {
            causal_conv1d_varlen_update(dout.ptr, dx.ptr + x_off, ld_x, dstate.ptr, dw.ptr, db.ptr, dcu.ptr, dts.ptr, dslot.ptr,
                                        T, C, 0);
        } else {
            causal_conv1d_varlen(dout.ptr, dx.ptr + x_off, ld_x, dstate.ptr, dw.ptr, db.ptr, dcu.ptr, dts.ptr, dslot.ptr, T, C, 0);
            causal_conv1d_state_update(dstate.ptr, dx.ptr + x_off, ld_x, dcu.ptr, dslot.ptr, n_seqs, C, 0);
        }
        ZK_LAUNCHED();
        const vec ref = ref_causal_conv1d(x, state, w, bias, cu, slots, C);  // advances `state`
        const std::string tag = std::string("conv ") + (fused ? "fused" : "2-launch") + " [" +
                                std::to_string(T) + "," + std::to_string(C) + "] S" + std::to_string(n_seqs) + " step " +
                                std::to_string(step + 1);
        tab.compare(tag + ": out", dout.download(), ref, TOL_F32);
        tab.compare(tag + ": state", dstate.download(), state, 1e-12);
    }
}

// One long sequence over many blocks plus decodes, bf16 activations (the bf16 overloads share the tiled kernel).
void conv_bf16_case(test_table & tab, test_rng & rng, int C) {
    const int ld_x = C + 8, n_seqs = 4, n_slots = 7;
    const ivec slots = pick_slots_distinct(rng, n_seqs, n_slots);
    vec state = rng.bf16_values((size_t) n_slots * 3 * C, -2, 2);
    const vec w = rng.bf16_values((size_t) C * 4, -1, 1), bias = rng.bf16_values(C, -0.5, 0.5);
    const ivec cu = cu_from_lengths({1, 150, 2, 1});
    const ivec ts = token_seq_from_cu(cu);
    const int T = cu.back();
    const vec xbig = rng.bf16_values((size_t) T * ld_x, -2, 2);
    vec x((size_t) T * C);
    for (int t = 0; t < T; ++t) for (int c = 0; c < C; ++c) x[(size_t) t * C + c] = xbig[(size_t) t * ld_x + c];
    dev_buf<bf16> dstate(state.size()), dw(w.size()), db(bias.size()), dx(xbig.size()), dout((size_t) T * C);
    dev_buf<int32_t> dcu(cu.size()), dts(ts.size()), dslot(slots.size());
    dstate.upload(state); dw.upload(w); db.upload(bias); dx.upload(xbig);
    upload_ints(dcu, cu); upload_ints(dts, ts); upload_ints(dslot, slots);
    causal_conv1d_varlen(dout.ptr, dx.ptr, ld_x, dstate.ptr, dw.ptr, db.ptr, dcu.ptr, dts.ptr, dslot.ptr, T, C, 0);
    causal_conv1d_state_update(dstate.ptr, dx.ptr, ld_x, dcu.ptr, dslot.ptr, n_seqs, C, 0);
    ZK_LAUNCHED();
    const vec ref = ref_causal_conv1d(x, state, w, bias, cu, slots, C);
    tab.compare("conv bf16 [" + std::to_string(T) + "," + std::to_string(C) + "]: out", dout.download(), ref, TOL_BF16);
    tab.compare("conv bf16: state", dstate.download(), state, 1e-12);
}

void test_prefill_conv(test_table & tab, test_rng & rng) {
    for (int rep = 0; rep < 3; ++rep) {
        conv_case(tab, rng, 260, 12, true, 23);   // 4 channels per thread
        conv_case(tab, rng, 333, 20, true, 17);   // scalar channels
        conv_case(tab, rng, 260, 12, false, 19);  // conv without state write + the state kernel
    }
    conv_case(tab, rng, 4352, 4160, true, 3);     // 1.2B width, in_proj row stride 8512
    conv_case(tab, rng, 64, 0, true, 1);          // one sequence, dense rows
    conv_bf16_case(tab, rng, 96);
    conv_bf16_case(tab, rng, 97);
}

// e4m3 byte -> value (bias 7, subnormals below 2^-6, 0x7F / 0xFF NaN).
double e4m3_value(uint8_t b) {
    const int sign = b >> 7, e = (b >> 3) & 15, m = b & 7;
    if (e == 15 && m == 7) return NAN;
    const double mag = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
    return sign ? -mag : mag;
}

std::vector<uint8_t> download_bytes(const dev_buf<uint8_t> & b) {
    std::vector<uint8_t> h(b.n);
    ZK_CHECK(cudaMemcpy(h.data(), b.ptr, b.n, cudaMemcpyDeviceToHost));
    return h;
}

// hi [n] bf16 values and lo8 [n] bytes of one producer call, checked against the float64 values `ref` and
// the hi of the same producer's bf16-lo call (`hi_lo16`, bit-identical expected).
void check_lo8(test_table & tab, const std::string & tag, const vec & hi, const std::vector<uint8_t> & lo8, const vec & ref,
               const vec & hi_lo16) {
    vec sum(hi.size());
    size_t nan = 0, worse = 0, loose = 0, in_range = 0;
    for (size_t i = 0; i < hi.size(); ++i) {
        const double l = e4m3_value(lo8[i]);
        if (std::isnan(l)) { ++nan; sum[i] = NAN; continue; }
        sum[i] = hi[i] + l / ZK_LO_FP8_SCALE;
        const double err = std::fabs(sum[i] - ref[i]), err_hi = std::fabs(hi[i] - ref[i]);
        const double slack = 1e-6 * std::fabs(ref[i]) + 1e-9;  // the kernels' fp32 arithmetic
        if (err > err_hi + slack) ++worse;                     // never worse than hi alone (saturation included)
        if (std::fabs(ref[i]) <= 100.0) {
            ++in_range;
            // e4m3 keeps the remainder (<= 2^-8 |v|) to 2^-4 of itself; 2^-19 covers its subnormal step / 1024
            if (err > std::ldexp(std::fabs(ref[i]), -12) + std::ldexp(1.0, -19) + slack) ++loose;
        }
    }
    tab.compare_ints(tag + ": lo8 NaN bytes", {(int32_t) nan}, {0});
    tab.compare_ints(tag + ": |err| > |hi err|", {(int32_t) worse}, {0});
    tab.compare_ints(tag + ": |err| > 2^-12 |v| (|v| <= 100)", {(int32_t) loose}, {0});
    ivec diff(1, 0);
    for (size_t i = 0; i < hi.size() && i < hi_lo16.size(); ++i) diff[0] += hi[i] != hi_lo16[i];
    tab.compare_ints(tag + ": hi == hi of the bf16-lo call", diff, {0});
    if (in_range == hi.size()) tab.compare(tag + ": hi + lo8", sum, ref, std::ldexp(1.0, -12));
}

// rms_norm_f32 twice (bf16 lo, then lo8) against ref_rms_norm. w_lo / w_hi: the norm weight range (large
// weights push outputs past the e4m3 range of the remainder).
void rms_lo8_case(test_table & tab, test_rng & rng, int rows, int n_a, int n_c, bool add, double w_lo, double w_hi) {
    const int n = n_a + n_c;
    const vec a = rng.f32_values((size_t) rows * n_a, -2, 2), b = rng.f32_values((size_t) rows * n_a, -1, 1);
    const vec c = rng.bf16_values((size_t) rows * n_c, -1, 1), w = rng.bf16_values((size_t) n, w_lo, w_hi);
    dev_buf<float> da(a.size()), db(b.size());
    dev_buf<bf16> dc(c.size() + 1), dw(w.size()), dy((size_t) 2 * rows * n), dy8((size_t) rows * n);
    dev_buf<uint8_t> dlo8((size_t) rows * n);
    da.upload(a); db.upload(b); dc.upload(c); dw.upload(w);
    const float * bp = add ? db.ptr : nullptr;
    const bf16 * cp = n_c ? dc.ptr : nullptr;
    rms_norm_f32(dy.ptr, dy.ptr + (size_t) rows * n, da.ptr, bp, cp, dw.ptr, rows, n_a, n_c, 1e-5f, 0);
    // y_lo given as well: the lo8 call must leave it alone (dy's lo half is compared below)
    const vec lo16_before = dy.download();
    rms_norm_f32(dy8.ptr, dy.ptr + (size_t) rows * n, da.ptr, bp, cp, dw.ptr, rows, n_a, n_c, 1e-5f, 0, dlo8.ptr);
    ZK_LAUNCHED();
    const vec ref = ref_rms_norm(a, add ? b : vec{}, n_c ? c : vec{}, w, rows, n_a, n_c, 1e-5);
    const std::string tag = "rms_norm_f32 lo8 [" + std::to_string(rows) + "," + std::to_string(n_a) + "+" +
                            std::to_string(n_c) + "]" + (add ? " add" : "") + (w_hi > 10 ? " big" : "");
    const vec hi16(lo16_before.begin(), lo16_before.begin() + (ptrdiff_t) rows * n);
    check_lo8(tab, tag, dy8.download(), download_bytes(dlo8), ref, hi16);
    tab.compare(tag + ": y_lo untouched", dy.download(), lo16_before, 0.0);
}

void gated_lo8_case(test_table & tab, test_rng & rng, int rows, int d, int groups, double w_lo, double w_hi) {
    const int ld_z = 2 * d + 12, z0 = 8;
    const vec y = rng.f32_values((size_t) rows * d, -2, 2), zbig = rng.f32_values((size_t) rows * ld_z, -3, 3);
    const vec gw = rng.bf16_values(d, w_lo, w_hi);
    vec z((size_t) rows * d);
    for (int r = 0; r < rows; ++r) for (int i = 0; i < d; ++i) z[(size_t) r * d + i] = zbig[(size_t) r * ld_z + z0 + i];
    dev_buf<float> dy(y.size()), dz(zbig.size());
    dev_buf<bf16> dw(gw.size()), dout(2 * y.size()), dout8(y.size());
    dev_buf<uint8_t> dlo8(y.size());
    dy.upload(y); dz.upload(zbig); dw.upload(gw);
    gated_rms_norm_f32(dout.ptr, dout.ptr + y.size(), dy.ptr, dz.ptr + z0, ld_z, dw.ptr, rows, d, groups, 1e-5f, 0);
    gated_rms_norm_f32(dout8.ptr, nullptr, dy.ptr, dz.ptr + z0, ld_z, dw.ptr, rows, d, groups, 1e-5f, 0, dlo8.ptr);
    ZK_LAUNCHED();
    const vec all16 = dout.download();
    const std::string tag = "gated_rms_norm_f32 lo8 [" + std::to_string(rows) + "," + std::to_string(d) + "] G=" +
                            std::to_string(groups) + (w_hi > 10 ? " big" : "");
    check_lo8(tab, tag, dout8.download(), download_bytes(dlo8), ref_gated_rms_norm(y, z, gw, rows, d, groups, 1e-5),
              vec(all16.begin(), all16.begin() + (ptrdiff_t) y.size()));
}

void split_lo8_case(test_table & tab, test_rng & rng, int rows, int cols, double range) {
    const vec x = rng.f32_values((size_t) rows * cols, -range, range);
    dev_buf<float> dx(x.size());
    dev_buf<bf16> d16(2 * x.size()), d8(x.size());
    dev_buf<uint8_t> dlo8(x.size());
    dx.upload(x);
    split_rows_bf16(d16.ptr, dx.ptr, rows, cols, 0);
    split_rows_bf16(d8.ptr, dx.ptr, rows, cols, 0, dlo8.ptr);
    ZK_LAUNCHED();
    const vec all16 = d16.download();
    vec sum16(x.size());
    for (size_t i = 0; i < x.size(); ++i) sum16[i] = all16[i] + all16[x.size() + i];
    const std::string tag = "split_rows_bf16 [" + std::to_string(rows) + "," + std::to_string(cols) + "] |x|<" +
                            std::to_string((int) range);
    tab.compare(tag + ": hi + lo (bf16)", sum16, x, 2e-5);
    check_lo8(tab, tag, d8.download(), download_bytes(dlo8), x, vec(all16.begin(), all16.begin() + (ptrdiff_t) x.size()));
}

void test_prefill_lo8(test_table & tab, test_rng & rng) {
    rms_lo8_case(tab, rng, 33, 2048, 0, true, 0.5, 1.5);     // 8-wide packs
    rms_lo8_case(tab, rng, 9, 2048, 2048, false, 0.5, 1.5);  // concat(X fp32, E bf16)
    rms_lo8_case(tab, rng, 11, 1028, 0, true, 0.5, 1.5);     // 4-wide packs
    rms_lo8_case(tab, rng, 7, 301, 0, true, 0.5, 1.5);       // scalar fallback
    rms_lo8_case(tab, rng, 13, 2048, 0, false, 100, 400);    // saturating remainders
    rms_lo8_case(tab, rng, 5, 1028, 0, true, 100, 400);
    gated_lo8_case(tab, rng, 17, 4096, 1, 0.5, 1.5);
    gated_lo8_case(tab, rng, 5, 7168, 2, 0.5, 1.5);
    gated_lo8_case(tab, rng, 6, 200, 2, 0.5, 1.5);            // group 100: 4-wide packs
    gated_lo8_case(tab, rng, 4, 198, 2, 0.5, 1.5);            // group 99: scalar
    gated_lo8_case(tab, rng, 9, 1024, 1, 100, 400);
    split_lo8_case(tab, rng, 37, 4096, 4);  // 8-wide
    split_lo8_case(tab, rng, 7, 132, 4);    // n * cols % 8 == 4: 4-wide
    split_lo8_case(tab, rng, 19, 133, 4);   // scalar
    split_lo8_case(tab, rng, 16, 256, 3000);
}

}  // namespace

ZK_REGISTER_TEST(test_prefill_conv);
ZK_REGISTER_TEST(test_prefill_lo8);
