// skinny_gemm's state epilogue (kernels/src/skinny-gemm-item.cuh includes this once): in_proj of a decode step
// runs the Mamba2 state step of each head itself (skinny_state_epilogue in zamba2-kernels.h).
//
// Why: at batch 1 the state step is a separate launch that starts only when every in_proj tile is done, though a
// head needs only 17 of the 524 tiles (1.2B: its 4 z tiles, 4 x tiles, the dt tile and the 8 B / C tiles). Here
// each head has a counter: a CTA that finishes a tile adds one to the counter of every head the tile feeds, and
// the CTA that brings a counter to the head's tile count updates that head, while other CTAs still stream
// weights. The tile's outputs (zx, and x / B / C after the conv epilogue) are published before the count
// (__threadfence, then the atomic); the updating CTA reads them from L2 (__ldcg).
#pragma once

#include "skinny-gemm-input.cuh"

constexpr int ZK_SKINNY_STATE_MAX_HEADS = 256;  // the ready list's shared ints

// Column ranges of in_proj's output that head h reads, in increasing order: z_h, x_h (xBC's x part), all of B and C,
// dt_h.
static __device__ __forceinline__ void skinny_head_ranges(const skinny_state_epilogue & se, int h, int2 (&r)[4]) {
    const int d = se.d_inner, P = se.head_dim, GN = se.n_groups * se.d_state;
    r[0] = make_int2(h * P, h * P + P);
    r[1] = make_int2(d + h * P, d + h * P + P);
    r[2] = make_int2(2 * d, 2 * d + 2 * GN);
    r[3] = make_int2(2 * d + 2 * GN + h, 2 * d + 2 * GN + h + 1);
}

// The number of 16-column tiles head h reads (tiles shared by two of its ranges count once).
static __device__ __forceinline__ int skinny_head_tiles(const skinny_state_epilogue & se, int h) {
    int2 r[4];
    skinny_head_ranges(se, h, r);
    int count = 0, last = -1;  // tiles [lo, hi] of each range, minus those already counted (ranges ascend)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int lo = max(r[i].x / 16, last + 1), hi = (r[i].y - 1) / 16;
        if (hi >= lo) count += hi - lo + 1;
        last = max(last, hi);
    }
    return count;
}

static __device__ __forceinline__ bool skinny_tile_feeds_head(const skinny_state_epilogue & se, int n0, int h) {
    int2 r[4];
    skinny_head_ranges(se, h, r);
    bool hit = false;
#pragma unroll
    for (int i = 0; i < 4; ++i) hit = hit || (r[i].x < n0 + 16 && n0 < r[i].y);
    return hit;
}

// Head h for all M rows (row m = sequence m, slot conv.seq_slot[m]); ys: M * head_dim floats of shared scratch.
// One thread per (row, channel) walks the channel's d_state states (16-byte loads); the per-head sums of y^2 are
// summed by one thread per row in channel order (deterministic).
static __device__ __forceinline__ void skinny_state_head(const skinny_gemm_args & a, int h, float * ys) {
    const skinny_state_epilogue & se = a.state;
    const skinny_conv_epilogue & cv = a.conv;
    const int P = se.head_dim, N = se.d_state, d = se.d_inner, GN = se.n_groups * N;
    const int g = h / (se.n_heads / se.n_groups);
    const float * zx = static_cast<const float *>(a.seg[0].y);  // zx: [M, ld] = [z | xBC | dt]
    const int ld = a.seg[0].ld_y;
    const float a_h = -expf(se.a_log[h]), d_h = se.d_skip[h], bias_h = se.dt_bias[h];
    for (int i = threadIdx.x; i < a.M * P; i += blockDim.x) {
        const int m = i / P, c = i % P, ch = h * P + c;
        const float dt = zk_softplus(__ldcg(zx + (int64_t) m * ld + 2 * d + 2 * GN + h) + bias_h);
        const float dA = expf(dt * a_h);
        const float * xr = cv.out + (int64_t) m * cv.n;  // xbc: [M, d + 2GN] = [x | B | C] after the conv
        const float x = __ldcg(xr + ch);
        const float4 * B = reinterpret_cast<const float4 *>(xr + d + g * N);
        const float4 * C = reinterpret_cast<const float4 *>(xr + d + GN + g * N);
        float4 * S = reinterpret_cast<float4 *>(se.ssm_state + (((int64_t) cv.seq_slot[m] * se.n_heads + h) * P + c) * N);
        const float dtx = dt * x;
        float acc = 0.0f;
#pragma unroll 4
        for (int n4 = 0; n4 < N / 4; ++n4) {  // S: [N] of channel c
            float4 s = __ldcs(S + n4);
            const float4 b = __ldcg(B + n4), cc = __ldcg(C + n4);
            s.x = s.x * dA + dtx * b.x;
            s.y = s.y * dA + dtx * b.y;
            s.z = s.z * dA + dtx * b.z;
            s.w = s.w * dA + dtx * b.w;
            acc += s.x * cc.x + s.y * cc.y + s.z * cc.z + s.w * cc.w;
            __stcs(S + n4, s);
        }
        const float out = (acc + d_h * x) * zk_silu(__ldcg(zx + (int64_t) m * ld + ch));
        se.y[(int64_t) m * d + ch] = out;  // y: [M, d]
        ys[i] = out * out;
    }
    __syncthreads();
    if ((int) threadIdx.x < a.M) {
        float t = 0.0f;
        for (int c = 0; c < P; ++c) t += ys[threadIdx.x * P + c];
        se.gsq[(int64_t) threadIdx.x * se.n_heads + h] = t;  // gsq: [M, n_heads]
    }
    if (threadIdx.x == 0) se.head_counters[h] = 0;  // ready for the next launch
    __syncthreads();  // ys is reused by the next head
}

// After the CTA wrote tile n0's outputs (and their conv epilogue): count the tile for every head it feeds, then
// update the heads this tile completed. ready: n_heads ints of shared scratch; ys: M * head_dim floats.
static __device__ __forceinline__ void skinny_state_after_tile(const skinny_gemm_args & a, int n0, int * ready, int & n_ready,
                                                               float * ys) {
    const skinny_state_epilogue & se = a.state;
    __threadfence();  // this thread's zx / xbc / conv-state writes, before any thread's count
    if (threadIdx.x == 0) n_ready = 0;
    __syncthreads();
    for (int h = threadIdx.x; h < se.n_heads; h += blockDim.x) {
        if (skinny_tile_feeds_head(se, n0, h) && atomicAdd(se.head_counters + h, 1) == skinny_head_tiles(se, h) - 1) {
            ready[atomicAdd(&n_ready, 1)] = h;
        }
    }
    __syncthreads();
    const int n = n_ready;
    if (n == 0) return;  // block-uniform
    __threadfence();     // the other CTAs' tiles, counted before ours, are visible from here (read through L2)
    for (int i = 0; i < n; ++i) skinny_state_head(a, ready[i], ys);
}

// Before the PDL wait: bring this layer's states of the step's sequences into L2 (only this kernel writes them),
// spread over the grid, one 128-byte line per thread at most a few times.
static __device__ __forceinline__ void skinny_state_prefetch(const skinny_gemm_args & a) {
    const skinny_state_epilogue & se = a.state;
    const int64_t per_seq = (int64_t) se.n_heads * se.head_dim * se.d_state * (int64_t) sizeof(float) / 128;  // lines
    for (int64_t line = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; line < per_seq * a.M;
         line += (int64_t) gridDim.x * blockDim.x) {
        const int m = (int) (line / per_seq);
        const char * base = reinterpret_cast<const char *>(se.ssm_state) +
                            (int64_t) a.conv.seq_slot[m] * per_seq * 128;  // pool: [slots, nh, P, N] fp32
        asm volatile("prefetch.global.L2 [%0];" ::"l"(base + (line % per_seq) * 128));
    }
}
