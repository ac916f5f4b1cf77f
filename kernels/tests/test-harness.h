// Shared pieces of the kernel test binary: random bf16-exact inputs, device buffers, and the
// comparison that every check goes through (it prints one table row and records failures).
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "../include/zamba2-kernels.h"
#include "cpu-reference.h"

#define ZK_CHECK(call)                                                                               \
    do {                                                                                            \
        cudaError_t err_ = (call);                                                                  \
        if (err_ != cudaSuccess) {                                                                  \
            std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(err_)); \
            std::exit(2);                                                                           \
        }                                                                                           \
    } while (0)

// Launch then check both the launch and the execution.
#define ZK_LAUNCHED() do { ZK_CHECK(cudaGetLastError()); ZK_CHECK(cudaDeviceSynchronize()); } while (0)

struct test_rng {
    std::mt19937_64 gen;
    explicit test_rng(uint64_t seed) : gen(seed) {}
    double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(gen); }
    int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); }  // inclusive
    // Values rounded to bf16, so the reference sees exactly what the GPU sees.
    vec bf16_values(size_t n, double lo, double hi) {
        vec v(n);
        for (auto & x : v) x = (double) __bfloat162float(__float2bfloat16_rn((float) uniform(lo, hi)));
        return v;
    }
    vec f32_values(size_t n, double lo, double hi) {
        vec v(n);
        for (auto & x : v) x = (double) (float) uniform(lo, hi);
        return v;
    }
};

template <typename T> struct dev_buf {
    T * ptr = nullptr;
    size_t n = 0;
    explicit dev_buf(size_t count) : n(count) {
        ZK_CHECK(cudaMalloc(&ptr, (n ? n : 1) * sizeof(T)));
        poison();
    }
    dev_buf(const dev_buf &) = delete;
    ~dev_buf() { cudaFree(ptr); }
    // NaN everywhere (0xFF bytes are NaN in bf16 and fp32): unwritten outputs fail the comparison.
    void poison() { ZK_CHECK(cudaMemset(ptr, 0xFF, (n ? n : 1) * sizeof(T))); }
    void upload(const vec & v) {
        std::vector<T> h(v.size());
        for (size_t i = 0; i < v.size(); ++i) h[i] = (T) (float) v[i];
        ZK_CHECK(cudaMemcpy(ptr, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    }
    vec download() const {
        std::vector<T> h(n);
        ZK_CHECK(cudaMemcpy(h.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost));
        vec v(n);
        for (size_t i = 0; i < n; ++i) v[i] = (double) (float) h[i];
        return v;
    }
};

template <> inline void dev_buf<int32_t>::upload(const vec & v) {
    std::vector<int32_t> h(v.begin(), v.end());
    ZK_CHECK(cudaMemcpy(ptr, h.data(), h.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
}

inline void upload_ints(dev_buf<int32_t> & b, const ivec & v) {
    ZK_CHECK(cudaMemcpy(b.ptr, v.data(), v.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
}

inline ivec download_ints(const dev_buf<int32_t> & b) {
    ivec h(b.n);
    ZK_CHECK(cudaMemcpy(h.data(), b.ptr, b.n * sizeof(int32_t), cudaMemcpyDeviceToHost));
    return h;
}

struct test_table {
    int failures = 0;
    int checks = 0;
    test_table() { std::printf("%-44s %12s %12s %10s  %s\n", "check", "max_abs", "rel_l2", "tol", "result"); }
    // rel_l2 = ||got - ref|| / ||ref||; NaN anywhere fails.
    void compare(const std::string & name, const vec & got, const vec & ref, double tol) {
        double num = 0, den = 0, max_abs = 0;
        bool finite = got.size() == ref.size();
        for (size_t i = 0; i < got.size() && i < ref.size(); ++i) {
            if (!std::isfinite(got[i])) finite = false;
            const double e = got[i] - ref[i];
            num += e * e;
            den += ref[i] * ref[i];
            max_abs = std::max(max_abs, std::fabs(e));
        }
        const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
        const bool ok = finite && rel <= tol;
        ++checks;
        if (!ok) ++failures;
        std::printf("%-44s %12.3e %12.3e %10.1e  %s\n", name.c_str(), max_abs, rel, tol,
                    ok ? "PASS" : (finite ? "FAIL" : "FAIL (size/NaN)"));
    }
    void compare_ints(const std::string & name, const ivec & got, const ivec & ref) {
        size_t bad = got.size() == ref.size() ? 0 : 1;
        for (size_t i = 0; i < got.size() && i < ref.size(); ++i) bad += got[i] != ref[i];
        ++checks;
        if (bad) ++failures;
        std::printf("%-44s %12zu %12s %10s  %s\n", name.c_str(), bad, "mismatches", "0", bad ? "FAIL" : "PASS");
    }
};

// Test files beside test-kernels.cu (kernels/tests/test-*.cu, one kernel family each) register their
// entry point with ZK_REGISTER_TEST(fn); main runs the built-in tests, then every registered one
// (in link order), with the same table and random stream.
typedef void (*kernel_test_fn)(test_table & tab, test_rng & rng);
struct kernel_test_entry { const char * name; kernel_test_fn fn; };
inline std::vector<kernel_test_entry> & kernel_test_registry() {
    static std::vector<kernel_test_entry> tests;
    return tests;
}
inline int register_kernel_test(const char * name, kernel_test_fn fn) {
    kernel_test_registry().push_back({name, fn});
    return (int) kernel_test_registry().size();
}
#define ZK_REGISTER_TEST(fn) static const int zk_registered_##fn = register_kernel_test(#fn, fn)

// Tolerances: bf16 outputs carry a relative rounding error of up to 2^-9 per element.
constexpr double TOL_BF16 = 8e-3;
constexpr double TOL_F32 = 2e-5;

// Sequence layout helpers.
inline ivec cu_from_lengths(const ivec & lens) {
    ivec cu(lens.size() + 1, 0);
    for (size_t i = 0; i < lens.size(); ++i) cu[i + 1] = cu[i] + lens[i];
    return cu;
}
inline ivec token_seq_from_cu(const ivec & cu) {
    ivec ts;
    for (size_t s = 0; s + 1 < cu.size(); ++s) for (int t = cu[s]; t < cu[s + 1]; ++t) ts.push_back((int32_t) s);
    return ts;
}
