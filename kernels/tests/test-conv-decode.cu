// causal_conv1d_decode (decode-only steps: conv + state shift in one kernel) against the float64
// reference, with permuted slots, a strided input and an odd channel count, over two consecutive steps.
#include <algorithm>
#include <numeric>

#include "test-harness.h"

namespace {

void test_conv_decode(test_table & tab, test_rng & rng) {
    const int S = 5, C = 333, n_slots = 9, ld_x = C + 20;
    ivec slots(n_slots);
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), rng.gen);
    slots.resize(S);
    vec state = rng.f32_values((size_t) n_slots * 3 * C, -2, 2);
    const vec w = rng.bf16_values((size_t) C * 4, -1, 1), bias = rng.bf16_values(C, -0.5, 0.5);
    dev_buf<float> dstate(state.size()), dout((size_t) S * C);
    dev_buf<bf16> dw(w.size()), db(bias.size());
    dev_buf<int32_t> dslot(S);
    dstate.upload(state); dw.upload(w); db.upload(bias); upload_ints(dslot, slots);
    const ivec cu = cu_from_lengths(ivec(S, 1));
    for (int step = 0; step < 2; ++step) {
        const vec xbig = rng.f32_values((size_t) S * ld_x, -2, 2);
        vec x((size_t) S * C);
        for (int s = 0; s < S; ++s) for (int c = 0; c < C; ++c) x[(size_t) s * C + c] = xbig[(size_t) s * ld_x + c];
        dev_buf<float> dx(xbig.size());
        dx.upload(xbig);
        dout.poison();
        const bool ok = causal_conv1d_decode(dout.ptr, dx.ptr, ld_x, dstate.ptr, dw.ptr, db.ptr, dslot.ptr, S, C, 0);
        ZK_LAUNCHED();
        const vec ref = ref_causal_conv1d(x, state, w, bias, cu, slots, C);  // advances `state`
        const std::string tag = "conv1d decode step " + std::to_string(step + 1);
        if (!ok) { tab.compare(tag + " (refused)", {1.0}, {0.0}, 0.0); return; }
        tab.compare(tag + ": out", dout.download(), ref, TOL_F32);
        tab.compare(tag + ": state pool", dstate.download(), state, 1e-12);
    }
}

}  // namespace

ZK_REGISTER_TEST(test_conv_decode);
