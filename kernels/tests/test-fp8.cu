// FP8 e4m3 conversions of include/zamba2-fp8.h against a CPU reference: the absmax reduction and weight
// quantization must give exactly the round-to-nearest-even e4m3 code of each scaled value (saturating at
// +-448), which the reference finds by searching the 254 finite codes; the lo rows rebuilt from FP8 codes
// (fp8_lo_to_bf16) must decode every code exactly.
#include <cuda_fp8.h>

#include "../include/zamba2-fp8.h"
#include "test-harness.h"

namespace {

double e4m3_value(int code) {  // finite codes only (0x7F / 0xFF are NaN)
    const int sign = code >> 7, exp = (code >> 3) & 0xF, mant = code & 7;
    const double mag = exp == 0 ? std::ldexp(mant / 8.0, -6) : std::ldexp(1.0 + mant / 8.0, exp - 7);
    return sign ? -mag : mag;
}

// Nearest finite e4m3 code (ties to the even mantissa), saturating: the reference of __NV_SATFINITE.
int e4m3_code(double v) {
    int best = 0;
    double best_err = 1e300;
    for (int code = 0; code < 256; ++code) {
        if ((code & 0x7F) == 0x7F) continue;
        const double err = std::fabs(e4m3_value(code) - v);
        const bool tie = err == best_err;
        if (err < best_err || (tie && (code & 1) == 0 && (best & 1) == 1)) { best = code; best_err = err; }
    }
    if (e4m3_value(best) == 0.0) best = v < 0 ? 0x80 : 0;  // keep the sign of zero as the GPU does
    return best;
}

ivec codes_of(const dev_buf<uint8_t> & b) {
    std::vector<uint8_t> h(b.n);
    ZK_CHECK(cudaMemcpy(h.data(), b.ptr, b.n, cudaMemcpyDeviceToHost));
    return ivec(h.begin(), h.end());
}

// Codes of zero compare equal whatever their sign (the reference's sign-of-zero guess is not the point).
void normalize_zero(ivec & c) { for (int & x : c) if ((x & 0x7F) == 0) x = 0; }

void weight_case(test_table & tab, test_rng & rng, size_t n, double lo, double hi) {
    vec w = rng.bf16_values(n, lo, hi);
    w[n / 3] = (double) __bfloat162float(__float2bfloat16_rn((float) (hi * 1.5)));  // the max sits in the middle
    dev_buf<bf16> dw(n);
    dev_buf<float> dmax(1);
    dev_buf<uint8_t> dq(n);
    dw.upload(w);
    ZK_CHECK(cudaMemset(dmax.ptr, 0, sizeof(float)));
    fp8_absmax_bf16(dmax.ptr, dw.ptr, n, 0);
    ZK_LAUNCHED();
    double ref_max = 0;
    for (double x : w) ref_max = std::max(ref_max, std::fabs(x));
    const double got_max = dmax.download()[0];
    tab.compare("fp8_absmax_bf16 n=" + std::to_string(n), {got_max}, {ref_max}, 0.0);
    const float inv_scale = (float) (ZK_E4M3_MAX / ref_max);
    fp8_quantize_bf16(dq.ptr, dw.ptr, n, inv_scale, 0);
    ZK_LAUNCHED();
    ivec ref(n);
    for (size_t i = 0; i < n; ++i) ref[i] = e4m3_code((double) ((float) w[i] * inv_scale));
    ivec got = codes_of(dq);
    normalize_zero(got);
    normalize_zero(ref);
    tab.compare_ints("fp8_quantize_bf16 n=" + std::to_string(n), got, ref);
}

// fp8_lo_to_bf16: the bf16 lo rows an FP8 step rebuilds for the GEMMs that take [hi; lo] (LoRA, shapes without
// an FP8 algorithm). lo8 codes as the norms write them (remainders v - bf16(v), a few past saturation), every
// code decoded exactly; then hi + lo reconstructs v to ~2^-12 relative.
void lo_case(test_table & tab, test_rng & rng, int rows, int cols) {
    const size_t n = (size_t) rows * cols;
    vec v = rng.f32_values(n, -4, 4), hi(n);
    v[0] = 300.0;  // lo up to ~0.6: * 1024 saturates at 448
    std::vector<uint8_t> codes(n);
    for (size_t i = 0; i < n; ++i) {
        hi[i] = (double) __bfloat162float(__float2bfloat16_rn((float) v[i]));
        const double lo = (double) __bfloat162float(__float2bfloat16_rn((float) (v[i] - hi[i])));
        codes[i] = (uint8_t) e4m3_code(lo * ZK_LO_FP8_SCALE);
    }
    dev_buf<uint8_t> dq(n);
    dev_buf<bf16> dlo(n);
    ZK_CHECK(cudaMemcpy(dq.ptr, codes.data(), n, cudaMemcpyHostToDevice));
    fp8_lo_to_bf16(dlo.ptr, dq.ptr, rows, cols, 0);
    ZK_LAUNCHED();
    const vec got = dlo.download();
    vec ref(n);
    for (size_t i = 0; i < n; ++i) ref[i] = (double) __bfloat162float(__float2bfloat16_rn((float) (e4m3_value(codes[i]) / ZK_LO_FP8_SCALE)));
    const std::string name = "fp8_lo_to_bf16 [" + std::to_string(rows) + "," + std::to_string(cols) + "]";
    tab.compare(name, got, ref, 0.0);
    vec rec(n - 1), want(n - 1);  // the saturated element excluded
    for (size_t i = 1; i < n; ++i) {
        rec[i - 1] = hi[i] + got[i];
        want[i - 1] = v[i];
    }
    tab.compare(name + ": hi + lo reconstructs v", rec, want, 1.0 / 4096);
}

void test_fp8(test_table & tab, test_rng & rng) {
    weight_case(tab, rng, 4099, -0.02, 0.02);
    weight_case(tab, rng, (size_t) 1 << 20, -1.0, 3.0);
    lo_case(tab, rng, 7, 4096);
    lo_case(tab, rng, 3, 40);
}

}  // namespace

ZK_REGISTER_TEST(test_fp8);
