// The decode step's L2 prefetcher (kernels/src/l2-prefetch.cu): which blocks it reads for a given mark, that it
// ends when the last launch has started or the marks stop (its guard), that it follows marks raised while it runs,
// and skinny_gemm's side of it: the mark (atomicMax), a grid left smaller by reserve_ctas and the next launch's
// weights asked into L2, results unchanged.
// Its reads past a range's end would show in the compute-sanitizer run (device-run.sh sanitize).
#include "test-harness.h"

#include <cstring>

namespace {

constexpr uint64_t BLOCK = 8192;  // ZK_L2_BLOCK_BYTES

// A plan over ranges of the given sizes (bytes, multiples of 16) in one buffer; launch l starts at range
// launch_range[l]. Owns the device copies.
struct test_plan {
    std::vector<uint64_t> bytes;
    std::vector<uint32_t> first, launch_first;
    dev_buf<uint8_t> weights;
    dev_buf<uint64_t> words;
    zk_l2_prefetch_args a{};
    test_plan(const std::vector<uint64_t> & sizes, const std::vector<uint32_t> & launch_range)
        : bytes(sizes), weights(total_bytes(sizes)), words(2 * sizes.size() + sizes.size() + launch_range.size() + 4) {
        const size_t n = sizes.size(), nl = launch_range.size();
        std::vector<uint64_t> h(words.n, 0);
        uint64_t at = 0;
        uint32_t blocks = 0;
        for (size_t r = 0; r < n; ++r) {
            h[r] = (uint64_t) (uintptr_t) (weights.ptr + at);
            h[n + r] = sizes[r];
            at += (sizes[r] + 255) / 256 * 256;
            first.push_back(blocks);
            blocks += (uint32_t) ((sizes[r] + BLOCK - 1) / BLOCK);
        }
        first.push_back(blocks);
        for (uint32_t l : launch_range) launch_first.push_back(first[l]);
        launch_first.push_back(blocks);
        uint32_t * u = reinterpret_cast<uint32_t *>(h.data() + 2 * n);
        std::memcpy(u, first.data(), first.size() * 4);
        std::memcpy(u + n + 1, launch_first.data(), launch_first.size() * 4);
        ZK_CHECK(cudaMemcpy(words.ptr, h.data(), h.size() * 8, cudaMemcpyHostToDevice));
        a.range_addr = words.ptr;
        a.range_bytes = words.ptr + n;
        a.range_first = reinterpret_cast<const uint32_t *>(words.ptr + 2 * n);
        a.launch_first = a.range_first + n + 1;
        a.n_ranges = (int) n;
        a.n_launches = (int) nl;
        a.window_blocks = 1u << 30;
        a.depth = 8;
    }
    static size_t total_bytes(const std::vector<uint64_t> & sizes) {
        size_t t = 0;
        for (uint64_t s : sizes) t += (s + 255) / 256 * 256;
        return t;
    }
    uint32_t total() const { return first.back(); }
};

// Spins ns nanoseconds, then *progress = value (the chain's marks, raised while the prefetcher runs).
__global__ void raise_progress_after(unsigned * progress, unsigned value, unsigned long long ns) {
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < ns);
    atomicMax(progress, value);
}

// Runs the prefetcher with progress preset to `mark`; returns the blocks it read.
double run_prefetch(test_plan & p, unsigned mark, int lead, int method, int ctas, uint32_t window, int depth = 8) {
    dev_buf<unsigned> progress(1), issued(1);
    ZK_CHECK(cudaMemset(progress.ptr, 0, 4));
    ZK_CHECK(cudaMemset(issued.ptr, 0, 4));
    ZK_CHECK(cudaMemcpy(progress.ptr, &mark, 4, cudaMemcpyHostToDevice));
    zk_l2_prefetch_args a = p.a;
    a.progress = progress.ptr;
    a.issued = issued.ptr;
    a.lead = lead;
    a.method = method;
    a.window_blocks = window;
    a.depth = depth;
    const bool ok = l2_weight_prefetch(a, ctas, 0);
    ZK_LAUNCHED();
    unsigned got = 0;
    ZK_CHECK(cudaMemcpy(&got, issued.ptr, 4, cudaMemcpyDeviceToHost));
    return ok ? (double) got : -1.0;
}

void test_prefetch_plan(test_table & tab) {
    // ranges: 100,000 B (13 blocks), 3 blocks exactly, 48 B, 40,016 B (5 blocks); launches: {0}, {1, 2}, {3}
    test_plan p({100000, 3 * BLOCK, 48, 40016}, {0, 1, 3});
    const double total = p.total(), from1 = p.total() - p.launch_first[1], from2 = p.total() - p.launch_first[2];
    for (int method = 0; method <= 1; ++method) {
        const std::string m = method ? " (bulk)" : " (loads)";
        for (int depth : {4, 8, 16}) {
            tab.compare("l2 prefetch: nothing started, lead 0, all" + m + " depth " + std::to_string(depth),
                        {run_prefetch(p, 0, 0, method, 3, 1u << 30, depth)}, {total}, 0.0);
        }
        tab.compare("l2 prefetch: launch 0 runs, lead 1: from launch 1" + m, {run_prefetch(p, 1, 1, method, 2, 1u << 30)},
                    {from1}, 0.0);
        tab.compare("l2 prefetch: launch 1 runs, lead 0: from launch 1" + m, {run_prefetch(p, 2, 0, method, 5, 1u << 30)},
                    {from1}, 0.0);
        tab.compare("l2 prefetch: launch 1 runs, lead 1: from launch 2" + m, {run_prefetch(p, 2, 1, method, 1, 1u << 30)},
                    {from2}, 0.0);
        tab.compare("l2 prefetch: the last launch runs: none" + m, {run_prefetch(p, 3, 0, method, 4, 1u << 30)}, {0.0}, 0.0);
        // no mark ever comes: the window's 4 blocks, then the guard ends it (20 ms)
        tab.compare("l2 prefetch: marks stop: window, then the guard" + m, {run_prefetch(p, 0, 0, method, 3, 4)}, {4.0}, 0.0);
    }
    // marks raised while it runs: launch 0 (window 2 blocks from its start), then launch 1 (2 more from launch 1's
    // start), then the last launch (it stops)
    dev_buf<unsigned> progress(1), issued(1);
    ZK_CHECK(cudaMemset(progress.ptr, 0, 4));
    ZK_CHECK(cudaMemset(issued.ptr, 0, 4));
    cudaStream_t side;
    ZK_CHECK(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
    zk_l2_prefetch_args a = p.a;
    a.progress = progress.ptr;
    a.issued = issued.ptr;
    a.lead = 0;
    a.window_blocks = 2;
    raise_progress_after<<<1, 1, 0, side>>>(progress.ptr, 1, 2000000ull);
    const bool ok = l2_weight_prefetch(a, 2, 0);
    raise_progress_after<<<1, 1, 0, side>>>(progress.ptr, 2, 2000000ull);
    raise_progress_after<<<1, 1, 0, side>>>(progress.ptr, 3, 2000000ull);
    ZK_LAUNCHED();
    ZK_CHECK(cudaStreamDestroy(side));
    unsigned got = 0;
    ZK_CHECK(cudaMemcpy(&got, issued.ptr, 4, cudaMemcpyDeviceToHost));
    tab.compare("l2 prefetch: follows marks raised while it runs", {ok ? (double) got : -1.0}, {4.0}, 0.0);
    tab.compare("l2 prefetch: refuses an empty plan", {l2_weight_prefetch(zk_l2_prefetch_args{}, 1, 0) ? 1.0 : 0.0}, {0.0}, 0.0);
}

// skinny_gemm with a mark, SM slots reserved and a next launch to prefetch: the mark is raised (never lowered) and
// y is what it is without.
void test_skinny_mark(test_table & tab, test_rng & rng) {
    const int M = 1, N = 4100, K = 512;
    const vec x = rng.bf16_values((size_t) M * K, -1, 1), w = rng.bf16_values((size_t) N * K, -0.5, 0.5);
    dev_buf<bf16> dx(x.size()), dw(w.size());
    dev_buf<float> dy((size_t) M * N);
    dev_buf<unsigned> progress(1);
    dx.upload(x);
    dw.upload(w);
    skinny_gemm_args a{};
    a.seg[0] = {dw.ptr, nullptr, nullptr, dy.ptr, N, N};
    a.n_seg = 1;
    a.x_mode = SKINNY_X_BF16;
    a.x = dx.ptr;
    a.ld_x = K;
    a.K = K;
    a.M = M;
    a.y_f32 = true;
    a.progress = progress.ptr;
    a.reserve_ctas = 7;
    a.next_w = reinterpret_cast<const uint8_t *>(dx.ptr);  // the next launch's weights: here x (prefetch only)
    a.next_bytes = (uint64_t) K * sizeof(bf16);
    for (unsigned start : {0u, 9u}) {
        ZK_CHECK(cudaMemcpy(progress.ptr, &start, 4, cudaMemcpyHostToDevice));
        a.progress_mark = 5;
        dy.poison();
        const bool ok = skinny_gemm(a, 0);
        ZK_LAUNCHED();
        unsigned got = 0;
        ZK_CHECK(cudaMemcpy(&got, progress.ptr, 4, cudaMemcpyDeviceToHost));
        tab.compare("skinny mark 5 over " + std::to_string(start), {ok ? (double) got : -1.0}, {start > 5 ? 9.0 : 5.0}, 0.0);
        const vec ref = ref_matmul_nt(x, w, vec((size_t) M * N, 0.0), M, N, K, 0.0);
        tab.compare("skinny with 7 CTAs reserved [4100,512]", dy.download(), ref, 1e-5);
    }
}

void test_l2_prefetch(test_table & tab, test_rng & rng) {
    test_prefetch_plan(tab);
    test_skinny_mark(tab, rng);
}

}  // namespace

ZK_REGISTER_TEST(test_l2_prefetch);
