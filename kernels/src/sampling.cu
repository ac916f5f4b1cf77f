// Sampling on the GPU, per row of fp32 logits [n, V] (any V >= 1).
//
// logits_argmax_lse: token = argmax_v logits[v] (lowest id on ties), lse = max + log(sum exp(l - max)), one pass.
//
// sample_rows: one block per sampled row, the same semantics as the host sampler
// (src/engine/cpu/sampler.ts), step for step:
//   processed = logits + logit_bias; repetition penalty over every seen token (prompt + output:
//   positive / r, negative * r); presence + frequency * count over output tokens (float32 stores
//   after each step, as the host's Float32Array does);
//   temperature <= 0: argmax of processed (lowest id on ties);
//   else p_v = exp((x_v - max) / T) (float64), kept when p_v > 0, p_v >= min_p, x_v >= the k-th
//   largest (top-k, ties kept), and x_v >= the largest value whose kept upper mass is >= top_p of the
//   kept mass (top-p, ties kept); then the inverse CDF in token-id order at u = uniform(seed, position).
// Masses are fixed point (p * 2^40 in uint64) so every sum is exact and order-independent: a row
// samples the same token whatever else shares the launch. Thresholds come from radix selects over
// the order-preserving uint32 keys of the processed logits (4 passes of 8 bits), no sort.
// Reported logprobs are log-softmax of the raw logits (float64 normalizer, float32 values) and the
// top N (value desc, id asc) — the host's "raw" logprobs.
#include <cfloat>

#include "zamba2-common.cuh"
#include "zamba2-launch.cuh"
#include "zamba2-timeline.cuh"

// ---- logits_argmax_lse -------------------------------------------------------------------------

// (max, lowest id at the max, sum of exp(v - max)) of a share of a row; merged in a fixed order, so the result does
// not depend on timing. An empty share is (-inf, INT_MAX, 0).
struct zk_max_sum {
    float m;
    int i;
    float s;
};
static __device__ __forceinline__ zk_max_sum zk_max_sum_empty() { return {-INFINITY, 0x7fffffff, 0.0f}; }
static __device__ __forceinline__ void zk_max_sum_add(zk_max_sum & a, float v, int i) {
    if (v > a.m) {
        a.s = (a.m == -INFINITY ? 0.0f : a.s * expf(a.m - v)) + 1.0f;
        a.m = v;
        a.i = i;
    } else if (v == a.m) {  // ids arrive in increasing order per thread: keep the first
        a.s += 1.0f;
    } else {
        a.s += expf(v - a.m);
    }
}
static __device__ __forceinline__ zk_max_sum zk_max_sum_merge(zk_max_sum a, zk_max_sum b) {
    const float m = fmaxf(a.m, b.m);
    zk_max_sum r;
    r.m = m;
    r.s = (a.m == -INFINITY ? 0.0f : a.s * expf(a.m - m)) + (b.m == -INFINITY ? 0.0f : b.s * expf(b.m - m));
    r.i = a.m > b.m ? a.i : b.m > a.m ? b.i : min(a.i, b.i);
    return r;
}
// The whole warp's merge, in every lane (butterfly: the same order in every lane).
static __device__ __forceinline__ zk_max_sum zk_max_sum_warp(zk_max_sum acc) {
    for (int off = 16; off > 0; off >>= 1) {
        zk_max_sum o;
        o.m = __shfl_xor_sync(0xffffffffu, acc.m, off);
        o.i = __shfl_xor_sync(0xffffffffu, acc.i, off);
        o.s = __shfl_xor_sync(0xffffffffu, acc.s, off);
        acc = zk_max_sum_merge(acc, o);
    }
    return acc;
}

// One block per row, one pass over it: each thread issues all its loads of a round (ZK_ARGMAX_PER chunks of W
// floats, W = 4 when the rows are 16-byte aligned) before using them, then folds them into its (max, id, sum). The
// two-pass loop of scalar loads it replaces waited on ~30 dependent round trips: 18 us of a b1 step (run 32's ncu),
// at its very end.
constexpr int ZK_ARGMAX_THREADS = 1024, ZK_ARGMAX_PER = 8;
template <int W>
static __global__ void __launch_bounds__(ZK_ARGMAX_THREADS)
    logits_argmax_lse_kernel(int32_t * __restrict__ token, float * __restrict__ max_logit, float * __restrict__ lse,
                             const float * __restrict__ logits, int vocab) {
    ZK_TL_BEGIN();
    zk_pdl_prologue();
    ZK_TL_WAITED();
    const int64_t r = blockIdx.x;
    const float * row = logits + r * vocab;  // logits: [n, V]
    zk_max_sum acc = zk_max_sum_empty();
    const int n_chunks = vocab / W;
    for (int c0 = 0; c0 < n_chunks; c0 += ZK_ARGMAX_PER * ZK_ARGMAX_THREADS) {
        float v[ZK_ARGMAX_PER][W];
#pragma unroll
        for (int u = 0; u < ZK_ARGMAX_PER; ++u) {
            const int c = c0 + u * ZK_ARGMAX_THREADS + (int) threadIdx.x;
            if (c < n_chunks) {
                if constexpr (W == 4) {
                    const float4 q = reinterpret_cast<const float4 *>(row)[c];
                    v[u][0] = q.x; v[u][1] = q.y; v[u][2] = q.z; v[u][3] = q.w;
                } else {
                    v[u][0] = row[c];
                }
            }
        }
#pragma unroll
        for (int u = 0; u < ZK_ARGMAX_PER; ++u) {
            const int c = c0 + u * ZK_ARGMAX_THREADS + (int) threadIdx.x;
            if (c < n_chunks) {
#pragma unroll
                for (int e = 0; e < W; ++e) zk_max_sum_add(acc, v[u][e], c * W + e);
            }
        }
    }
    acc = zk_max_sum_warp(acc);  // warps, then the block (fixed order)
    __shared__ zk_max_sum part[ZK_ARGMAX_THREADS / 32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) part[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        acc = zk_max_sum_warp(lane < ZK_ARGMAX_THREADS / 32 ? part[lane] : zk_max_sum_empty());
        if (lane == 0) {
            token[r] = acc.i == 0x7fffffff ? 0 : acc.i;  // NOTE: all-NaN row -> 0
            max_logit[r] = acc.m;
            lse[r] = acc.m + logf(acc.s);
        }
    }
    ZK_TL_END(ZK_TL_ARGMAX);
}

// ---- sample_rows: block helpers ----------------------------------------------------------------

#define ZK_SAMPLE_THREADS 512
#define ZK_SAMPLE_WARPS (ZK_SAMPLE_THREADS / 32)

// A (value, id) candidate ordered by value desc, then id asc; id < 0 = none.
struct zk_cand {
    float v;
    int i;
};
static __device__ __forceinline__ bool zk_before(zk_cand a, zk_cand b) {
    if (a.i < 0) return false;
    if (b.i < 0) return true;
    return a.v > b.v || (a.v == b.v && a.i < b.i);
}

struct zk_sample_smem {
    zk_cand cand[ZK_SAMPLE_WARPS];
    double dbl[ZK_SAMPLE_WARPS];
    unsigned long long u64[ZK_SAMPLE_WARPS];
    float f32[ZK_SAMPLE_WARPS];
    unsigned long long mass[256];   // radix-select histograms (mass or count)
    uint32_t sel_prefix;
    unsigned long long sel_acc;     // mass (or count) above the selected prefix
    int32_t token;
};

static __device__ zk_cand zk_block_best(zk_cand c, zk_sample_smem & sm) {
    for (int off = 16; off > 0; off >>= 1) {
        zk_cand o;
        o.v = __shfl_xor_sync(0xffffffffu, c.v, off);
        o.i = __shfl_xor_sync(0xffffffffu, c.i, off);
        if (zk_before(o, c)) c = o;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) sm.cand[warp] = c;
    __syncthreads();
    c = lane < ZK_SAMPLE_WARPS ? sm.cand[lane] : zk_cand{0.0f, -1};
    for (int off = 16; off > 0; off >>= 1) {
        zk_cand o;
        o.v = __shfl_xor_sync(0xffffffffu, c.v, off);
        o.i = __shfl_xor_sync(0xffffffffu, c.i, off);
        if (zk_before(o, c)) c = o;
    }
    return c;
}

static __device__ double zk_block_sum_f64(double v, zk_sample_smem & sm) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) sm.dbl[warp] = v;
    __syncthreads();
    v = lane < ZK_SAMPLE_WARPS ? sm.dbl[lane] : 0.0;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

static __device__ float zk_block_max_f32(float v, zk_sample_smem & sm) {
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) sm.f32[warp] = v;
    __syncthreads();
    v = lane < ZK_SAMPLE_WARPS ? sm.f32[lane] : -INFINITY;
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

// Exclusive prefix sum over the block (thread order); *total gets the block total. Integer: exact.
static __device__ unsigned long long zk_block_exclusive_scan(unsigned long long v, unsigned long long * total,
                                                             zk_sample_smem & sm) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    unsigned long long incl = v;
    for (int off = 1; off < 32; off <<= 1) {
        const unsigned long long o = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += o;
    }
    __syncthreads();
    if (lane == 31) sm.u64[warp] = incl;
    __syncthreads();
    unsigned long long before = 0, all = 0;
    for (int w = 0; w < ZK_SAMPLE_WARPS; ++w) {
        if (w < warp) before += sm.u64[w];
        all += sm.u64[w];
    }
    *total = all;
    return before + incl - v;
}

// Order-preserving key of a float (larger float -> larger key); NaN is mapped to -inf beforehand.
static __device__ __forceinline__ uint32_t zk_key(float x) {
    const uint32_t u = __float_as_uint(x);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The host's uniformAt(seed, position) (src/engine/cpu/sampler.ts), bit for bit.
static __device__ __forceinline__ uint32_t zk_fmix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}
static __device__ double zk_uniform_at(uint32_t lo, uint32_t hi, int32_t position) {
    const uint32_t pos = (uint32_t) position;
    const uint32_t a = zk_fmix32(zk_fmix32(lo ^ 0x9e3779b9u) ^ ((pos + 1u) * 0x27d4eb2fu) ^ zk_fmix32(hi + 0x165667b1u));
    const uint32_t b = zk_fmix32(a ^ 0x85ebca77u ^ zk_fmix32(pos ^ lo));
    return ((double) (a >> 5) * 67108864.0 + (double) (b >> 6)) / 9007199254740992.0;
}

#define ZK_MASS_ONE 1099511627776.0  // 2^40: fixed-point scale of a probability (the max token has 1)

struct zk_row_dist {
    const float * x;   // processed logits, NaN -> -inf
    int vocab;
    float max_x;
    double temperature;
    double min_p;      // <= 0: off
    uint32_t key_k;    // top-k floor (0: off)
    uint32_t key_p;    // top-p floor (0: off)
    // Fixed-point mass of token v, 0 when it is filtered out.
    __device__ unsigned long long mass(int v) const {
        const float xv = x[v];
        if (xv == -INFINITY) return 0;
        const uint32_t k = zk_key(xv);
        if (k < key_k || k < key_p) return 0;
        const double p = exp(((double) xv - (double) max_x) / temperature);
        if (!(p > 0.0) || (min_p > 0.0 && p < min_p)) return 0;
        const unsigned long long q = __double2ull_rn(p * ZK_MASS_ONE);
        return q > 0 ? q : 1;  // a kept token keeps a nonzero mass (p > 0 like the host's threshold)
    }
};

// Radix select, 8 bits per pass from the top: the largest key K with weight(keys >= K) >= target,
// where weight is a count (by_mass false: K = the target-th largest key) or the fixed-point mass.
static __device__ uint32_t zk_radix_select(const zk_row_dist & d, bool by_mass, double target, zk_sample_smem & sm) {
    if (threadIdx.x == 0) { sm.sel_prefix = 0; sm.sel_acc = 0; }
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = threadIdx.x; b < 256; b += blockDim.x) sm.mass[b] = 0;
        __syncthreads();
        const uint32_t prefix = sm.sel_prefix;
        const uint32_t high_mask = shift == 24 ? 0u : (0xffffffffu << (shift + 8));
        for (int v = threadIdx.x; v < d.vocab; v += blockDim.x) {
            const uint32_t k = zk_key(d.x[v]);
            if ((k & high_mask) != (prefix & high_mask)) continue;
            const unsigned long long w = by_mass ? d.mass(v) : 1ull;
            if (w) atomicAdd(&sm.mass[(k >> shift) & 255u], w);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            unsigned long long acc = sm.sel_acc;
            int b = 255;
            for (; b > 0; --b) {
                const unsigned long long next = acc + sm.mass[b];
                // by mass: the bin must carry mass (a zero target would otherwise pick an empty bin)
                if ((double) next >= target && (!by_mass || next > 0)) break;
                acc = next;
            }
            sm.sel_acc = acc;
            sm.sel_prefix = prefix | ((uint32_t) b << shift);
        }
        __syncthreads();
    }
    return sm.sel_prefix;
}

static __global__ __launch_bounds__(ZK_SAMPLE_THREADS) void sample_rows_kernel(
    int32_t * __restrict__ token_out, float * __restrict__ logprob_out, int32_t * __restrict__ top_ids,
    float * __restrict__ top_logprobs, float * __restrict__ work, const float * __restrict__ logits,
    const zk_sample_params * __restrict__ params, const zk_penalty_entry * __restrict__ penalties,
    const zk_bias_entry * __restrict__ biases, int vocab) {
    __shared__ zk_sample_smem sm;
    const int r = blockIdx.x;
    const zk_sample_params p = params[r];
    const float * raw = logits + (int64_t) p.logits_row * vocab;
    float * x = work + (int64_t) r * vocab;

    // raw log-normalizer (float64 sum like the host's logSoftmax)
    float m = -INFINITY;
    for (int v = threadIdx.x; v < vocab; v += blockDim.x) m = fmaxf(m, raw[v]);
    m = zk_block_max_f32(m, sm);
    double s = 0.0;
    for (int v = threadIdx.x; v < vocab; v += blockDim.x) {
        const float l = raw[v];
        if (l == l) s += exp((double) l - (double) m);
    }
    s = zk_block_sum_f64(s, sm);
    const double lse = (double) m + log(s);

    // processed logits: bias, then penalties (each entry touches its own token; lists hold unique ids)
    for (int v = threadIdx.x; v < vocab; v += blockDim.x) {
        const float l = raw[v];
        x[v] = l == l ? l : -INFINITY;
    }
    __syncthreads();
    for (int j = threadIdx.x; j < p.bias_count; j += blockDim.x) {
        const zk_bias_entry e = biases[p.bias_start + j];
        if (e.token >= 0 && e.token < vocab) x[e.token] = (float) ((double) x[e.token] + e.bias);
    }
    __syncthreads();
    for (int j = threadIdx.x; j < p.penalty_count; j += blockDim.x) {
        const zk_penalty_entry e = penalties[p.penalty_start + j];
        if (e.token < 0 || e.token >= vocab) continue;
        float v = x[e.token];
        if (p.repetition_penalty != 1.0) {
            v = (float) (v > 0.0f ? (double) v / p.repetition_penalty : (double) v * p.repetition_penalty);
        }
        if (e.output_count > 0) {
            v = (float) ((double) v - (p.presence_penalty + p.frequency_penalty * (double) e.output_count));
        }
        x[e.token] = v == v ? v : -INFINITY;
    }
    __syncthreads();

    // greedy pick (also the fallback of a row with nothing finite)
    zk_cand best{0.0f, -1};
    for (int v = threadIdx.x; v < vocab; v += blockDim.x) {
        const zk_cand c{x[v], v};
        if (c.v != -INFINITY && zk_before(c, best)) best = c;
    }
    best = zk_block_best(best, sm);
    const bool greedy = p.temperature <= 0.0 || best.i < 0;
    if (threadIdx.x == 0) sm.token = best.i < 0 ? 0 : best.i;
    __syncthreads();

    if (!greedy) {
        zk_row_dist d{x, vocab, best.v, p.temperature, p.min_p, 0u, 0u};
        if (p.top_k > 0 && p.top_k < vocab) d.key_k = zk_radix_select(d, false, (double) p.top_k, sm);
        if (p.top_p < 1.0) {
            unsigned long long kept = 0;
            for (int v = threadIdx.x; v < vocab; v += blockDim.x) kept += d.mass(v);
            unsigned long long total = 0;
            zk_block_exclusive_scan(kept, &total, sm);
            d.key_p = zk_radix_select(d, true, p.top_p * (double) total, sm);
        }
        // inverse CDF in token-id order: thread t owns ids [t*C, (t+1)*C)
        const int chunk = (vocab + blockDim.x - 1) / blockDim.x;
        const int v0 = threadIdx.x * chunk, v1 = min(vocab, v0 + chunk);
        unsigned long long own = 0;
        for (int v = v0; v < v1; ++v) own += d.mass(v);
        unsigned long long total = 0;
        const unsigned long long before = zk_block_exclusive_scan(own, &total, sm);
        if (total > 0) {
            const double u = zk_uniform_at(p.seed_lo, p.seed_hi, p.position);
            unsigned long long target = (unsigned long long) floor(u * (double) total);
            if (target >= total) target = total - 1;
            if (target >= before && target < before + own) {
                unsigned long long acc = before;
                for (int v = v0; v < v1; ++v) {
                    acc += d.mass(v);
                    if (acc > target) { sm.token = v; break; }
                }
            }
        }
        __syncthreads();
    }

    const int tok = sm.token;
    if (threadIdx.x == 0) {
        token_out[r] = tok;
        logprob_out[r] = (float) ((double) raw[tok] - lse);
    }
    // top N of the raw log-softmax: N passes, each the best candidate strictly after the previous one
    const int n_top = min(p.n_top, ZK_SAMPLE_MAX_TOP);
    zk_cand prev{INFINITY, -1};
    for (int n = 0; n < n_top; ++n) {
        zk_cand c{0.0f, -1};
        for (int v = threadIdx.x; v < vocab; v += blockDim.x) {
            const float l = raw[v];
            if (l != l) continue;
            const zk_cand e{(float) ((double) l - lse), v};
            if (prev.i >= 0 && !(zk_before(prev, e))) continue;  // already listed
            if (zk_before(e, c)) c = e;
        }
        c = zk_block_best(c, sm);
        if (threadIdx.x == 0) {
            top_ids[(int64_t) r * ZK_SAMPLE_MAX_TOP + n] = c.i;
            top_logprobs[(int64_t) r * ZK_SAMPLE_MAX_TOP + n] = c.i < 0 ? -INFINITY : c.v;
        }
        if (c.i < 0) break;
        prev = c;
    }
    for (int n = n_top + threadIdx.x; n < ZK_SAMPLE_MAX_TOP; n += blockDim.x) {
        top_ids[(int64_t) r * ZK_SAMPLE_MAX_TOP + n] = -1;
        top_logprobs[(int64_t) r * ZK_SAMPLE_MAX_TOP + n] = -INFINITY;
    }
}

// ---- launchers ---------------------------------------------------------------------------------

void logits_argmax_lse(int32_t * token, float * max_logit, float * lse, const float * logits,
                       int n_rows, int vocab, cudaStream_t stream) {
    if (n_rows <= 0) return;
    if (vocab % 4 == 0 && (uintptr_t) logits % 16 == 0) {
        zk_launch(logits_argmax_lse_kernel<4>, n_rows, ZK_ARGMAX_THREADS, 0, stream, token, max_logit, lse, logits, vocab);
    } else {
        zk_launch(logits_argmax_lse_kernel<1>, n_rows, ZK_ARGMAX_THREADS, 0, stream, token, max_logit, lse, logits, vocab);
    }
}

void sample_rows(int32_t * token, float * logprob, int32_t * top_ids, float * top_logprobs, float * work,
                 const float * logits, const zk_sample_params * params, const zk_penalty_entry * penalties,
                 const zk_bias_entry * biases, int n_rows, int vocab, cudaStream_t stream) {
    if (n_rows <= 0 || vocab <= 0) return;
    sample_rows_kernel<<<n_rows, ZK_SAMPLE_THREADS, 0, stream>>>(token, logprob, top_ids, top_logprobs, work, logits,
                                                                 params, penalties, biases, vocab);
}
