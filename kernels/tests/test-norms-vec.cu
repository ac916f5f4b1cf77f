// The vectorized fp32 norm paths (rms_norm_f32 and gated_rms_norm_f32 with widths that are multiples of
// 4 and aligned rows: the engine's real shapes) against the float64 reference: residual add, the
// shared block's concat(X, E) input up to the 7B width (7168), gated groups with a strided z.
#include "test-harness.h"

namespace {

vec sum_hi_lo(const vec & v) {
    const size_t n = v.size() / 2;
    vec out(n);
    for (size_t i = 0; i < n; ++i) out[i] = v[i] + v[n + i];
    return out;
}

void rms_case(test_table & tab, test_rng & rng, int rows, int n_a, int n_c, bool add) {
    const vec a = rng.f32_values((size_t) rows * n_a, -2, 2), b = rng.f32_values((size_t) rows * n_a, -1, 1);
    const vec c = rng.bf16_values((size_t) rows * n_c, -1, 1), w = rng.bf16_values((size_t) n_a + n_c, 0.5, 1.5);
    dev_buf<float> da(a.size()), db(b.size());
    dev_buf<bf16> dc(c.size() + 1), dw(w.size()), dy((size_t) 2 * rows * (n_a + n_c));
    da.upload(a); db.upload(b); dc.upload(c); dw.upload(w);
    rms_norm_f32(dy.ptr, dy.ptr + (size_t) rows * (n_a + n_c), da.ptr, add ? db.ptr : nullptr, n_c ? dc.ptr : nullptr, dw.ptr,
                 rows, n_a, n_c, 1e-5f, 0);
    ZK_LAUNCHED();
    const vec ref = ref_rms_norm(a, add ? b : vec{}, n_c ? c : vec{}, w, rows, n_a, n_c, 1e-5);
    tab.compare("rms_norm_f32 vec [" + std::to_string(rows) + "," + std::to_string(n_a) + "+" + std::to_string(n_c) + "]" +
                    (add ? " add" : ""),
                sum_hi_lo(dy.download()), ref, 2e-5);
}

void gated_case(test_table & tab, test_rng & rng, int rows, int d, int groups) {
    const int ld_z = 2 * d + 12, z0 = 8;  // z is a column slice of a wider row (the in_proj output)
    const vec y = rng.f32_values((size_t) rows * d, -2, 2), zbig = rng.f32_values((size_t) rows * ld_z, -3, 3);
    const vec gw = rng.bf16_values(d, 0.5, 1.5);
    vec z((size_t) rows * d);
    for (int r = 0; r < rows; ++r) for (int i = 0; i < d; ++i) z[(size_t) r * d + i] = zbig[(size_t) r * ld_z + z0 + i];
    dev_buf<float> dy(y.size()), dz(zbig.size());
    dev_buf<bf16> dw(gw.size()), dout(2 * y.size());
    dy.upload(y); dz.upload(zbig); dw.upload(gw);
    gated_rms_norm_f32(dout.ptr, dout.ptr + y.size(), dy.ptr, dz.ptr + z0, ld_z, dw.ptr, rows, d, groups, 1e-5f, 0);
    ZK_LAUNCHED();
    tab.compare("gated_rms_norm_f32 vec [" + std::to_string(rows) + "," + std::to_string(d) + "] G=" + std::to_string(groups),
                sum_hi_lo(dout.download()), ref_gated_rms_norm(y, z, gw, rows, d, groups, 1e-5), 2e-5);
}

void test_norms_vec(test_table & tab, test_rng & rng) {
    rms_case(tab, rng, 1, 2048, 0, true);
    rms_case(tab, rng, 5, 2048, 2048, false);
    rms_case(tab, rng, 3, 3584, 3584, false);
    rms_case(tab, rng, 17, 40, 40, false);
    rms_case(tab, rng, 9, 1028, 0, true);
    gated_case(tab, rng, 1, 4096, 1);
    gated_case(tab, rng, 7, 7168, 2);
    gated_case(tab, rng, 13, 80, 2);
}

}  // namespace

ZK_REGISTER_TEST(test_norms_vec);
