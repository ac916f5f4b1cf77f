// The decode step's L2 prefetcher on the engine side (the kernel and why: src/l2-prefetch.cu).
//
// A fused decode step (ZAMBA2_L2_PREFETCH=n) zeroes the progress word and marks where the step starts (an event on
// the engine's stream); every skinny_gemm launch of the step, through engine_skinny, appends its weights to the plan
// and carries its mark. When the step's launches are enqueued, the side stream waits for the start event and runs
// the prefetcher over the plan, and the engine's stream waits for it at the end: inside a CUDA graph capture this
// makes the prefetcher a branch parallel to the whole chain. The plan is the same for every fused decode step of
// an engine (the same weights in the same order at any batch size); it is uploaded when it changes, which happens
// on an eager step (a shape's first sighting runs eagerly, before its graph is captured). A plan that changed
// inside a capture is not uploaded there: that graph runs without the prefetcher.
#include <algorithm>
#include <cstring>

#include "zamba2-forward.h"

#define ZL_CUDA(call)                                                                              \
    do {                                                                                           \
        cudaError_t err_ = (call);                                                                 \
        if (err_ != cudaSuccess) return std::string("l2 prefetch: " #call ": ") + cudaGetErrorString(err_); \
    } while (0)

constexpr size_t ZL_PLAN_MAX_RANGES = 2048, ZL_PLAN_MAX_LAUNCHES = 1024;
constexpr uint64_t ZL_BLOCK_BYTES = 8192;  // the kernel's block (ZK_L2_BLOCK_BYTES)

std::string zamba2_l2_prefetch_init(zamba2_engine * e) {
    zamba2_l2_prefetch & p = e->l2pf;
    if (p.ctas <= 0) return "";
    // words: addr, bytes (one per range), range_first (ranges + 1, u32), launch_first (launches + 1, u32)
    p.plan_cap_words = 2 * ZL_PLAN_MAX_RANGES + (ZL_PLAN_MAX_RANGES + 1 + ZL_PLAN_MAX_LAUNCHES + 1 + 1) / 2 + 1;
    ZL_CUDA(cudaMalloc(&p.progress, 2 * sizeof(unsigned)));
    ZL_CUDA(cudaMemset(p.progress, 0, 2 * sizeof(unsigned)));
    ZL_CUDA(cudaMalloc(&p.plan_dev, p.plan_cap_words * sizeof(uint64_t)));
    ZL_CUDA(cudaMallocHost(&p.plan_host, p.plan_cap_words * sizeof(uint64_t)));
    ZL_CUDA(cudaStreamCreateWithFlags(&p.side, cudaStreamNonBlocking));
    ZL_CUDA(cudaEventCreateWithFlags(&p.fork, cudaEventDisableTiming));
    ZL_CUDA(cudaEventCreateWithFlags(&p.join, cudaEventDisableTiming));
    return "";
}

void zamba2_l2_prefetch_free(zamba2_engine * e) {
    zamba2_l2_prefetch & p = e->l2pf;
    if (p.progress) cudaFree(p.progress);
    if (p.plan_dev) cudaFree(p.plan_dev);
    if (p.plan_host) cudaFreeHost(p.plan_host);
    if (p.fork) cudaEventDestroy(p.fork);
    if (p.join) cudaEventDestroy(p.join);
    if (p.side) cudaStreamDestroy(p.side);
    p = zamba2_l2_prefetch{};
}

std::string l2_prefetch_begin(zamba2_engine * e, bool fused) {
    zamba2_l2_prefetch & p = e->l2pf;
    p.recording = fused && ((p.ctas > 0 && p.progress) || p.next_kb > 0);
    if (!p.recording) return "";
    p.addr.clear();
    p.bytes.clear();
    p.launch_range.clear();
    if (p.ctas <= 0) return "";
    ZL_CUDA(cudaMemsetAsync(p.progress, 0, sizeof(unsigned), e->stream));  // before every launch that marks
    ZL_CUDA(cudaEventRecord(p.fork, e->stream));
    return "";
}

void l2_prefetch_record(zamba2_engine * e, skinny_gemm_args & a) {
    zamba2_l2_prefetch & p = e->l2pf;
    if (!p.recording || p.launch_range.size() >= ZL_PLAN_MAX_LAUNCHES || p.addr.size() + 2 * a.n_seg > ZL_PLAN_MAX_RANGES) {
        return;
    }
    const size_t launch = p.launch_range.size();
    p.launch_range.push_back((uint32_t) p.addr.size());
    if (p.ctas > 0) {
        a.progress = p.progress;
        a.progress_mark = (int) launch + 1;
        a.reserve_ctas = p.ctas;
    }
    uint64_t own_bytes = 0;
    for (int s = 0; s < a.n_seg; ++s) own_bytes += (uint64_t) a.seg[s].n * a.K * sizeof(bf16);
    // the next launch of the last recorded step (the same weights in the same order every fused decode step)
    if (p.next_kb > 0 && launch + 1 < p.last_addr.size() && own_bytes <= (uint64_t) p.next_max_mb << 20) {
        a.next_w = reinterpret_cast<const uint8_t *>(p.last_addr[launch + 1]);
        a.next_bytes = std::min<uint64_t>(p.last_bytes[launch + 1], (uint64_t) p.next_kb << 10) / 16 * 16;
    }
    for (int s = 0; s < a.n_seg; ++s) {
        const skinny_segment & sg = a.seg[s];
        p.addr.push_back((uint64_t) (uintptr_t) sg.w);
        p.bytes.push_back((uint64_t) sg.n * a.K * sizeof(bf16));  // w: [n, K]
        if (sg.w2) {
            p.addr.push_back((uint64_t) (uintptr_t) sg.w2);
            p.bytes.push_back((uint64_t) sg.n * a.K2 * sizeof(bf16));  // w2: [n, K2]
        }
    }
}

bool engine_skinny(zamba2_engine * e, skinny_gemm_args a, cudaStream_t st) {
    l2_prefetch_record(e, a);
    return skinny_gemm(a, st);
}

// The plan's words: addr [n], bytes [n], then u32 range_first [n + 1] and launch_first [launches + 1].
static size_t pack_plan(const zamba2_l2_prefetch & p, uint64_t * w) {
    const size_t n = p.addr.size(), nl = p.launch_range.size();
    std::memcpy(w, p.addr.data(), n * sizeof(uint64_t));
    std::memcpy(w + n, p.bytes.data(), n * sizeof(uint64_t));
    uint32_t * u = reinterpret_cast<uint32_t *>(w + 2 * n);
    uint32_t blocks = 0;
    for (size_t r = 0; r < n; ++r) {
        u[r] = blocks;
        blocks += (uint32_t) ((p.bytes[r] + ZL_BLOCK_BYTES - 1) / ZL_BLOCK_BYTES);
    }
    u[n] = blocks;
    uint32_t * lf = u + n + 1;
    for (size_t l = 0; l < nl; ++l) lf[l] = u[p.launch_range[l]];
    lf[nl] = blocks;
    return 2 * n + (n + 1 + nl + 1 + 1) / 2;
}

std::string l2_prefetch_end(zamba2_engine * e) {
    zamba2_l2_prefetch & p = e->l2pf;
    if (!p.recording) return "";
    p.recording = false;
    if (p.launch_range.empty()) return "";
    p.last_addr.clear();
    p.last_bytes.clear();
    for (uint32_t r : p.launch_range) {
        p.last_addr.push_back(p.addr[r]);
        p.last_bytes.push_back(p.bytes[r]);
    }
    if (p.ctas <= 0) return "";
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    ZL_CUDA(cudaStreamIsCapturing(e->stream, &capture));
    const bool capturing = capture != cudaStreamCaptureStatusNone;
    // the plan as it would be uploaded (packed on the host side first, compared with what the GPU holds)
    std::vector<uint64_t> words(p.plan_cap_words);
    words.resize(pack_plan(p, words.data()));
    const bool changed = words != p.dev_plan;
    if (changed && capturing) {
        ++p.skipped;
        return "";
    }
    ZL_CUDA(cudaStreamWaitEvent(p.side, p.fork, 0));
    if (changed) {
        std::memcpy(p.plan_host, words.data(), words.size() * sizeof(uint64_t));
        ZL_CUDA(cudaMemcpyAsync(p.plan_dev, p.plan_host, words.size() * sizeof(uint64_t), cudaMemcpyHostToDevice, p.side));
        p.dev_plan = words;
    }
    const size_t n = p.addr.size();
    const uint32_t * u = reinterpret_cast<const uint32_t *>(p.plan_dev + 2 * n);
    zk_l2_prefetch_args a{};
    a.range_addr = p.plan_dev;
    a.range_bytes = p.plan_dev + n;
    a.range_first = u;
    a.launch_first = u + n + 1;
    a.n_ranges = (int) n;
    a.n_launches = (int) p.launch_range.size();
    a.progress = p.progress;
    a.window_blocks = (uint32_t) std::max<uint64_t>(1, (uint64_t) p.window_mb * 1024 * 1024 / ZL_BLOCK_BYTES);
    a.lead = p.lead;
    a.method = p.method;
    a.depth = p.depth;
    if (!l2_weight_prefetch(a, p.ctas, p.side)) return "l2 prefetch: the kernel refused its plan";
    ZL_CUDA(cudaGetLastError());
    ZL_CUDA(cudaEventRecord(p.join, p.side));
    ZL_CUDA(cudaStreamWaitEvent(e->stream, p.join, 0));
    return "";
}
