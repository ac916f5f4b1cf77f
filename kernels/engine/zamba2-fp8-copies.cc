// FP8 e4m3 copies of the weights that multiply split inputs (their lo term on large steps, include/zamba2-fp8.h):
// which weights get one, whether they fit in GPU memory, and making one from the uploaded bf16 weight.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "zamba2-engine-internal.h"

#include "../include/zamba2-fp8.h"

#define ZE_CUDA(call)                                                                              \
    do {                                                                                           \
        cudaError_t err_ = (call);                                                                 \
        if (err_ != cudaSuccess) return std::string(#call ": ") + cudaGetErrorString(err_);        \
    } while (0)

// Weights multiplied by split inputs (zamba2-step-gemm.cc's split_gemm): they get an FP8 copy for large steps.
bool zamba2_wants_fp8(const std::string & n) {
    auto ends = [&](const char * suf) {
        const size_t k = std::strlen(suf);
        return n.size() >= k && n.compare(n.size() - k, k, suf) == 0;
    };
    if (n.rfind("layers.", 0) == 0) return ends(".in_proj") || ends(".out_proj");
    if (n.rfind("blocks.", 0) == 0) return ends(".q") || ends(".k") || ends(".v") || ends(".o") || ends(".gate_up");
    return false;
}

// t.fp8 = e4m3(W / scale), scale = max|W| / 448 (1 for an all-zero W), from the uploaded bf16 copy.
std::string zamba2_make_fp8_copy(zamba2_engine * e, zamba2_tensor & t) {
    if (!t.fp8) return "";
    float * d_max = reinterpret_cast<float *>(e->s.skinny_work);  // scratch: not in use outside a step
    ZE_CUDA(cudaMemsetAsync(d_max, 0, sizeof(float), e->stream));
    fp8_absmax_bf16(d_max, static_cast<const bf16 *>(t.ptr), t.numel, e->stream);
    float absmax = 0.0f;
    ZE_CUDA(cudaMemcpyAsync(&absmax, d_max, sizeof(float), cudaMemcpyDeviceToHost, e->stream));
    ZE_CUDA(cudaStreamSynchronize(e->stream));
    t.fp8_scale = absmax > 0.0f && std::isfinite(absmax) ? absmax / ZK_E4M3_MAX : 1.0f;
    fp8_quantize_bf16(t.fp8, static_cast<const bf16 *>(t.ptr), t.numel, 1.0f / t.fp8_scale, e->stream);
    ZE_CUDA(cudaGetLastError());
    ZE_CUDA(cudaStreamSynchronize(e->stream));
    return "";
}

// The copies cost 1 byte per weight they cover (~1 GB at 1.2B, ~6.5 GB at 7B). Called before any weight is
// allocated: the free memory must hold the bf16/fp32 weights, the copies, and a reserve of max(2 GiB, 10% of the
// device) for scratch, the state and KV pools; else the engine runs without them (bf16 lo terms, slower
// prefill, same results within the golden bars) and says so once.
bool zamba2_fp8_copies_fit(const zamba2_engine * e) {
    size_t weight_bytes = 0, copy_bytes = 0;
    for (const auto & sp : e->specs) {
        weight_bytes += sp.numel * (sp.f32 ? 4 : 2);
        if (!sp.f32 && zamba2_wants_fp8(sp.name)) copy_bytes += sp.numel;
    }
    zamba2_free_memory m;
    if (!zamba2_query_free_memory(m)) return true;  // no answer: keep the default, allocation errors still surface
    if (weight_bytes + copy_bytes + m.reserve_bytes <= m.free_bytes) return true;
    std::fprintf(stderr,
                 "zamba2 cuda: skipping the FP8 weight copies (%.2f GB): %.2f GB free would leave less than the %.2f GB "
                 "reserve after %.2f GB of weights\n",
                 copy_bytes / 1e9, m.free_bytes / 1e9, m.reserve_bytes / 1e9, weight_bytes / 1e9);
    return false;
}

bool zamba2_query_free_memory(zamba2_free_memory & m) {
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    m.free_bytes = free_bytes;
    m.reserve_bytes = std::max<size_t>((size_t) 2 << 30, total_bytes / 10);
    return true;
}
