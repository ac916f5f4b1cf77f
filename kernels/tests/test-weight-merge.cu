// weight_merge_bf16 (kernels/src/weight-merge.cu) against a float64 reference: out = bf16(base + P . Q), with and
// without base, odd sizes (none a multiple of the 64-wide tiles or the 16-wide j stages) and a LoRA-like rank.
// The bar is bf16's output rounding (2^-9 relative per element).
#include "test-harness.h"

namespace {

void merge_case(test_table & tab, test_rng & rng, int N, int J, int K, bool with_base) {
    const vec P = rng.bf16_values((size_t) N * J, -0.5, 0.5), Q = rng.bf16_values((size_t) J * K, -0.5, 0.5);
    const vec base = rng.bf16_values((size_t) N * K, -1, 1);
    dev_buf<bf16> dP(P.size()), dQ(Q.size()), dbase(base.size()), dout((size_t) N * K);
    dP.upload(P);
    dQ.upload(Q);
    dbase.upload(base);
    dout.poison();
    const bool ok = weight_merge_bf16(dout.ptr, with_base ? dbase.ptr : nullptr, dP.ptr, dQ.ptr, N, J, K, 0);
    ZK_LAUNCHED();
    vec ref((size_t) N * K);
    for (int n = 0; n < N; ++n) {
        for (int k = 0; k < K; ++k) {
            double s = with_base ? base[(size_t) n * K + k] : 0.0;
            for (int j = 0; j < J; ++j) s += P[(size_t) n * J + j] * Q[(size_t) j * K + k];
            ref[(size_t) n * K + k] = s;
        }
    }
    const std::string name = std::string("weight_merge ") + (with_base ? "W + P.Q" : "P.Q") + " [" + std::to_string(N) +
                             "," + std::to_string(J) + "," + std::to_string(K) + "]";
    tab.compare(name, ok ? dout.download() : vec(), ref, 4e-3);
}

void test_weight_merge(test_table & tab, test_rng & rng) {
    merge_case(tab, rng, 37, 19, 45, true);     // smaller than one tile
    merge_case(tab, rng, 200, 24, 130, true);   // LoRA-like: rank 24
    merge_case(tab, rng, 130, 300, 70, false);  // a fold: J spans many stages
    tab.compare("weight_merge refuses N = 0", {weight_merge_bf16(nullptr, nullptr, nullptr, nullptr, 0, 1, 1, 0) ? 1.0 : 0.0},
                {0.0}, 0.0);
}

}  // namespace

ZK_REGISTER_TEST(test_weight_merge);
