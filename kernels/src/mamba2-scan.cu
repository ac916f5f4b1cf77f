// Mamba2 selective-state recurrence over a packed varlen batch: prefill chunks and decode tokens
// share one kernel (a decode is a sequence of length 1). Per head h of group g = h / (nh / G):
//   dt_t = softplus(dt_raw_t + dt_bias_h)         (no floor: matches the CUDA-kernel path)
//   dA_t = exp(dt_t * A_h),   A_h = -exp(A_log_h)
//   S_t  = dA_t * S_{t-1} + dt_t * x_t (outer) B_{t,g}        S: [P, N], fp32
//   y_t  = S_t . C_{t,g} + D_h * x_t
// The state pool is fp32 ([slots, nh, P, N]): a bf16 pool would round the state after every step,
// which HF does too, but fp32 keeps long decodes from drifting; it costs 2x the slot bytes.
// NOTE: this is the exact sequential form (one warp per state row, N across lanes). The chunked
// SSD (matrix) form is future work for long prefills; both compute the same function (spec §4.1).
#include "zamba2-common.cuh"
#include "zamba2-launch.cuh"
#include "zamba2-timeline.cuh"

// ---- kernels -----------------------------------------------------------------------------------

// One warp per (sequence, head, row p of the state). Lane l owns state columns n = l + 32k.
template <int NPL, typename TX>
static __global__ void mamba2_scan_varlen_kernel(float * __restrict__ y, float * __restrict__ ssm_state,
                                                 const TX * __restrict__ xbc, int ld_xbc,
                                                 const TX * __restrict__ dt_raw, int ld_dt,
                                                 const float * __restrict__ dt_bias,
                                                 const float * __restrict__ a_log,
                                                 const float * __restrict__ d_skip,
                                                 const int32_t * __restrict__ cu_seqlens,
                                                 const int32_t * __restrict__ seq_slot, int n_seqs,
                                                 int n_heads, int head_dim, int n_groups, int d_state) {
    const int64_t warp_id = ((int64_t) blockIdx.x * blockDim.x + threadIdx.x) / ZK_WARP_SIZE;
    const int lane = threadIdx.x % ZK_WARP_SIZE;
    const int64_t rows_per_seq = (int64_t) n_heads * head_dim;
    if (warp_id >= (int64_t) n_seqs * rows_per_seq) return;
    const int s = (int) (warp_id / rows_per_seq);
    const int h = (int) ((warp_id % rows_per_seq) / head_dim);
    const int p = (int) (warp_id % head_dim);
    const int g = h / (n_heads / n_groups);
    const int d_inner = n_heads * head_dim;
    const int64_t t0 = cu_seqlens[s];
    const int64_t t1 = cu_seqlens[s + 1];

    // state row: ssm_state [slots, nh, P, N] -> [N]
    float * st = ssm_state + (((int64_t) seq_slot[s] * n_heads + h) * head_dim + p) * d_state;
    float S[NPL];
#pragma unroll
    for (int k = 0; k < NPL; ++k) {
        const int n = lane + ZK_WARP_SIZE * k;
        S[k] = n < d_state ? st[n] : 0.0f;
    }
    const float A = -expf(a_log[h]);
    const float Dh = d_skip[h];
    const float bias = dt_bias[h];
    const int b_off = d_inner + g * d_state;                 // B_g columns in xbc
    const int c_off = d_inner + n_groups * d_state + g * d_state;  // C_g columns in xbc

    // Tokens go in groups of 32: lane i first computes dt, dA and x of token i of the group (one
    // parallel load + softplus/exp instead of one dependent chain per token), then the warp walks
    // the group reading them back with shuffles; lane i keeps y of token i and stores it at the end.
    for (int64_t tg = t0; tg < t1; tg += ZK_WARP_SIZE) {
        const int nt = (int) min((int64_t) ZK_WARP_SIZE, t1 - tg);
        float dt_l = 0.0f, dA_l = 0.0f, x_l = 0.0f, y_l = 0.0f;
        if (lane < nt) {
            const int64_t t = tg + lane;
            dt_l = zk_softplus(zk_to_f32(dt_raw[t * ld_dt + h]) + bias);          // dt_raw: [T, nh]
            dA_l = expf(dt_l * A);
            x_l = zk_to_f32(xbc[t * ld_xbc + h * head_dim + p]);                 // xbc: [T, d + 2GN]
        }
#pragma unroll 4
        for (int i = 0; i < ZK_WARP_SIZE; ++i) {
            if (i >= nt) break;
            const float dt = __shfl_sync(0xffffffffu, dt_l, i);
            const float dA = __shfl_sync(0xffffffffu, dA_l, i);
            const float xv = __shfl_sync(0xffffffffu, x_l, i);
            const TX * row = xbc + (tg + i) * ld_xbc;
            const float dtx = dt * xv;
            float acc = 0.0f;
#pragma unroll
            for (int k = 0; k < NPL; ++k) {
                const int n = lane + ZK_WARP_SIZE * k;
                if (n < d_state) {
                    S[k] = S[k] * dA + dtx * zk_to_f32(row[b_off + n]);
                    acc += S[k] * zk_to_f32(row[c_off + n]);
                }
            }
            acc = zk_warp_sum(acc);
            if (lane == i) y_l = acc + Dh * xv;
        }
        if (lane < nt) y[(tg + lane) * d_inner + h * head_dim + p] = y_l;      // y: [T, d]
    }
#pragma unroll
    for (int k = 0; k < NPL; ++k) {
        const int n = lane + ZK_WARP_SIZE * k;
        if (n < d_state) st[n] = S[k];
    }
}

// Decode specialization (every sequence has exactly one token): a group of N/4 threads owns one state
// row and moves it with 16-byte loads/stores (float4 of S, 8-byte B and C), so a warp covers
// 32 / (N/4) rows. The state pool read + write is the whole cost at large batch; this reads it at
// full width instead of the scan kernel's 4-byte-per-lane pattern.
static __device__ __forceinline__ float4 zk_load4(const bf16 * p) {
    const uint2 raw = *reinterpret_cast<const uint2 *>(p);
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&raw.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&raw.y));
    return make_float4(a.x, a.y, b.x, b.y);
}
static __device__ __forceinline__ float4 zk_load4(const float * p) { return *reinterpret_cast<const float4 *>(p); }

// A thread updates 4 state values (float4) of RP consecutive rows p of one head: the RP state loads are
// independent (in flight together) and share one B/C load and one dt/dA computation.
// GATED (decode steps feeding out_proj's SKINNY_X_GATED_NORM): y = (C.S + D x) * silu(z), and each block
// (whole rows of the chunk = (256 / GW) RP consecutive channels of one token) writes its sum of y^2 to gsq.
template <int GW, int RP, typename TX, bool GATED>  // threads per row = N / 4, a power of two <= 32; RP divides head_dim
static __global__ void mamba2_state_step_kernel(float * __restrict__ y, float * __restrict__ gsq,
                                                const float * __restrict__ z, int ld_z, float * __restrict__ ssm_state,
                                                const TX * __restrict__ xbc, int ld_xbc,
                                                const TX * __restrict__ dt_raw, int ld_dt,
                                                const float * __restrict__ dt_bias,
                                                const float * __restrict__ a_log,
                                                const float * __restrict__ d_skip,
                                                const int32_t * __restrict__ cu_seqlens,
                                                const int32_t * __restrict__ seq_slot, int n_seqs,
                                                int n_heads, int head_dim, int n_groups, int d_state, bool state_early,
                                                bool trigger_early) {
    // NOTE: state_early loads the state before the PDL wait: only this layer's state step (or scan / SSD) writes
    // its pool, once per step (steps are ordered by the host), so they overlap in_proj's tail. seq_slot and
    // cu_seqlens are the step's input, copied before the first kernel. Only for small batches: at b64-b256 the
    // early blocks hold their registers idle (b256 17.1 -> 17.6 ms, run 22).
    ZK_TL_BEGIN();
    const int64_t thread = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;
    const int rows_per_head = head_dim / RP;
    const int64_t n_groups_rows = (int64_t) n_seqs * n_heads * rows_per_head;
    const int64_t rg_raw = thread / GW;
    const bool valid = rg_raw < n_groups_rows;
    const int64_t rg = valid ? rg_raw : n_groups_rows - 1;   // clamped: idle threads still shuffle
    const int s = (int) (rg / ((int64_t) n_heads * rows_per_head));
    const int h = (int) ((rg / rows_per_head) % n_heads);
    const int p0 = (int) (rg % rows_per_head) * RP;
    const int g = h / (n_heads / n_groups);
    const int d_inner = n_heads * head_dim;
    const int n0 = (int) (thread % GW) * 4;
    const int64_t t = cu_seqlens[s];
    const TX * xrow = xbc + t * ld_xbc;                       // xbc: [T, d + 2GN]
    float4 * st = reinterpret_cast<float4 *>(ssm_state + (((int64_t) seq_slot[s] * n_heads + h) * head_dim + p0) * d_state + n0);
    float4 S[RP];
#pragma unroll
    for (int r = 0; r < RP; ++r) S[r] = make_float4(0.f, 0.f, 0.f, 0.f);
    if (state_early) {
#pragma unroll
        for (int r = 0; r < RP; ++r) if (valid) S[r] = __ldcs(st + (int64_t) r * (d_state / 4));  // [RP rows, 4]
    }
    // the per-head parameters are constants: loaded before the wait, so the step's only round trip after it is
    // the one for in_proj's outputs (z included)
    const float bias_h = dt_bias[h], neg_a_h = -expf(a_log[h]), d_h = d_skip[h];
    if (trigger_early) {  // out_proj's CTAs may take the slots in_proj's CTAs free before in_proj completes
        zk_pdl_trigger();
        zk_pdl_wait();
    } else {
        zk_pdl_prologue();
    }
    ZK_TL_WAITED();
    if (!state_early) {
#pragma unroll
        for (int r = 0; r < RP; ++r) if (valid) S[r] = __ldcs(st + (int64_t) r * (d_state / 4));
    }
    const float dt_in = zk_to_f32(dt_raw[t * ld_dt + h]);  // dt_raw: [T, nh]
    const float4 b = zk_load4(xrow + d_inner + g * d_state + n0);
    const float4 cc = zk_load4(xrow + d_inner + n_groups * d_state + g * d_state + n0);
    float acc[RP], xv[RP], zv[RP];
#pragma unroll
    for (int r = 0; r < RP; ++r) {
        xv[r] = zk_to_f32(xrow[h * head_dim + p0 + r]);
        zv[r] = GATED && n0 == 0 ? z[t * ld_z + h * head_dim + p0 + r] : 0.0f;  // z: [T, d] stride ld_z
    }
    const float dt = zk_softplus(dt_in + bias_h);
    const float dA = expf(dt * neg_a_h);
#pragma unroll
    for (int r = 0; r < RP; ++r) {
        const float dtx = dt * xv[r];
        S[r].x = S[r].x * dA + dtx * b.x;
        S[r].y = S[r].y * dA + dtx * b.y;
        S[r].z = S[r].z * dA + dtx * b.z;
        S[r].w = S[r].w * dA + dtx * b.w;
        acc[r] = S[r].x * cc.x + S[r].y * cc.y + S[r].z * cc.z + S[r].w * cc.w;
    }
#pragma unroll
    for (int off = GW / 2; off > 0; off >>= 1) {
#pragma unroll
        for (int r = 0; r < RP; ++r) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], off);
    }
    ZK_TL_MARK(0);
    float ss = 0.0f;
    if (valid) {
#pragma unroll
        for (int r = 0; r < RP; ++r) __stcs(st + (int64_t) r * (d_state / 4), S[r]);
        if (n0 == 0) {
#pragma unroll
            for (int r = 0; r < RP; ++r) {
                const int ch = h * head_dim + p0 + r;
                float out = acc[r] + d_h * xv[r];
                if (GATED) {
                    out *= zk_silu(zv[r]);  // gated_rms_norm's v = y * silu(z)
                    ss += out * out;
                }
                y[t * d_inner + ch] = out;  // y: [T, d]
            }
        }
    }
    if (GATED) {  // every block is full (the launcher checks), so every thread reaches the barrier
        __shared__ float scratch[32];
        ss = zk_block_sum(ss, scratch);
        ZK_TL_MARK(1);
        const int chunk = (int) (blockDim.x / GW) * RP;
        const int64_t rg0 = (int64_t) blockIdx.x * (blockDim.x / GW);
        const int64_t per_seq = (int64_t) n_heads * rows_per_head;
        if (threadIdx.x == 0) {
            const int s0 = (int) (rg0 / per_seq);
            const int c0 = (int) (rg0 % per_seq) * RP;  // first channel of the block
            gsq[(int64_t) cu_seqlens[s0] * (d_inner / chunk) + c0 / chunk] = ss;  // gsq: [T, d / chunk]
        }
    }
    ZK_TL_END(ZK_TL_STATE_STEP);
}

// ---- launchers ---------------------------------------------------------------------------------

template <typename TX>
static void scan_launch(float * y, float * ssm_state, const TX * xbc, int ld_xbc,
                        const TX * dt_raw, int ld_dt, const float * dt_bias, const float * a_log,
                        const float * d_skip, const int32_t * cu_seqlens, const int32_t * seq_slot,
                        int n_seqs, int n_heads, int head_dim, int n_groups, int d_state,
                        cudaStream_t stream) {
    if (n_seqs <= 0) return;
    const int64_t n_warps = (int64_t) n_seqs * n_heads * head_dim;
    const int threads = 128;
    const int64_t blocks = (n_warps * ZK_WARP_SIZE + threads - 1) / threads;
#define ZK_SCAN_LAUNCH(NPL)                                                                        \
    mamba2_scan_varlen_kernel<NPL, TX><<<(unsigned) blocks, threads, 0, stream>>>(                      \
        y, ssm_state, xbc, ld_xbc, dt_raw, ld_dt, dt_bias, a_log, d_skip, cu_seqlens, seq_slot,    \
        n_seqs, n_heads, head_dim, n_groups, d_state)
    if (d_state <= 32) ZK_SCAN_LAUNCH(1);
    else if (d_state <= 64) ZK_SCAN_LAUNCH(2);
    else if (d_state <= 128) ZK_SCAN_LAUNCH(4);
    else if (d_state <= 256) ZK_SCAN_LAUNCH(8);
#undef ZK_SCAN_LAUNCH
}

constexpr int ZK_STEP_BLOCK = 256;
constexpr int ZK_STEP_EARLY_MAX_SEQS = 8;  // batches whose state loads start before the PDL wait

template <typename TX, bool GATED>
static bool state_step_launch(float * y, float * gsq, const float * z, int ld_z, float * ssm_state, const TX * xbc,
                              int ld_xbc, const TX * dt_raw, int ld_dt, const float * dt_bias, const float * a_log,
                              const float * d_skip, const int32_t * cu_seqlens, const int32_t * seq_slot, int n_seqs,
                              int n_heads, int head_dim, int n_groups, int d_state, cudaStream_t stream) {
    const int gw = d_state / 4;
    // 4-wide B/C loads need 4-aligned columns: ld_xbc and d_inner multiples of 4, 16-byte state rows
    if (d_state % 4 != 0 || gw > 32 || (gw & (gw - 1)) != 0 || ld_xbc % 4 != 0 || (n_heads * head_dim) % 4 != 0) return false;
    const int rp = head_dim % 4 == 0 ? 4 : 1;
    if (GATED) {
        const int chunk = mamba2_state_step_chunk(head_dim, d_state);
        if (chunk <= 0 || (n_heads * head_dim) % chunk != 0 || !gsq || !z) return false;
    }
    if (n_seqs <= 0) return true;
    const int64_t threads = (int64_t) n_seqs * n_heads * (head_dim / rp) * gw;
    const unsigned blocks = (unsigned) ((threads + ZK_STEP_BLOCK - 1) / ZK_STEP_BLOCK);
    const bool state_early = n_seqs <= ZK_STEP_EARLY_MAX_SEQS;
#define ZK_STEP_ARGS y, gsq, z, ld_z, ssm_state, xbc, ld_xbc, dt_raw, ld_dt, dt_bias, a_log, d_skip, cu_seqlens, seq_slot, \
                     n_seqs, n_heads, head_dim, n_groups, d_state, state_early, GATED && zk_state_step_early_trigger()
#define ZK_STEP_LAUNCH(GW)                                                                                           \
    if (rp == 4) zk_launch(mamba2_state_step_kernel<GW, 4, TX, GATED>, blocks, ZK_STEP_BLOCK, 0, stream, ZK_STEP_ARGS); \
    else zk_launch(mamba2_state_step_kernel<GW, 1, TX, GATED>, blocks, ZK_STEP_BLOCK, 0, stream, ZK_STEP_ARGS)
    switch (gw) {
        case 1: ZK_STEP_LAUNCH(1); break;
        case 2: ZK_STEP_LAUNCH(2); break;
        case 4: ZK_STEP_LAUNCH(4); break;
        case 8: ZK_STEP_LAUNCH(8); break;
        case 16: ZK_STEP_LAUNCH(16); break;
        default: ZK_STEP_LAUNCH(32); break;
    }
#undef ZK_STEP_LAUNCH
#undef ZK_STEP_ARGS
    return true;
}

// Channels per block of the gated step: 256 threads / (d_state / 4 threads per row) x rows per thread. The
// blocks then tile whole rows exactly when d is a multiple of it.
bool & zk_state_step_early_trigger() {
    static bool on = false;
    return on;
}

int mamba2_state_step_chunk(int head_dim, int d_state) {
    const int gw = d_state / 4;
    if (d_state % 4 != 0 || gw < 1 || gw > 32 || (gw & (gw - 1)) != 0) return 0;
    return ZK_STEP_BLOCK / gw * (head_dim % 4 == 0 ? 4 : 1);
}

#define ZK_SCAN_ARGS                                                                               \
    y, ssm_state, xbc, ld_xbc, dt_raw, ld_dt, dt_bias, a_log, d_skip, cu_seqlens, seq_slot, n_seqs, n_heads, \
        head_dim, n_groups, d_state, stream
#define ZK_SCAN_PARAMS(TX)                                                                         \
    float *y, float *ssm_state, const TX *xbc, int ld_xbc, const TX *dt_raw, int ld_dt, const float *dt_bias, \
        const float *a_log, const float *d_skip, const int32_t *cu_seqlens, const int32_t *seq_slot, int n_seqs, \
        int n_heads, int head_dim, int n_groups, int d_state, cudaStream_t stream
void mamba2_scan_varlen(ZK_SCAN_PARAMS(bf16)) { scan_launch(ZK_SCAN_ARGS); }
void mamba2_scan_varlen(ZK_SCAN_PARAMS(float)) { scan_launch(ZK_SCAN_ARGS); }
bool mamba2_state_step(ZK_SCAN_PARAMS(bf16)) {
    return state_step_launch<bf16, false>(y, nullptr, nullptr, 0, ssm_state, xbc, ld_xbc, dt_raw, ld_dt, dt_bias, a_log, d_skip,
                                          cu_seqlens, seq_slot, n_seqs, n_heads, head_dim, n_groups, d_state, stream);
}
bool mamba2_state_step(ZK_SCAN_PARAMS(float)) {
    return state_step_launch<float, false>(y, nullptr, nullptr, 0, ssm_state, xbc, ld_xbc, dt_raw, ld_dt, dt_bias, a_log,
                                           d_skip, cu_seqlens, seq_slot, n_seqs, n_heads, head_dim, n_groups, d_state, stream);
}
bool mamba2_state_step_gated(float * y, float * gsq, const float * z, int ld_z, float * ssm_state, const float * xbc,
                             int ld_xbc, const float * dt_raw, int ld_dt, const float * dt_bias, const float * a_log,
                             const float * d_skip, const int32_t * cu_seqlens, const int32_t * seq_slot, int n_seqs,
                             int n_heads, int head_dim, int n_groups, int d_state, cudaStream_t stream) {
    return state_step_launch<float, true>(y, gsq, z, ld_z, ssm_state, xbc, ld_xbc, dt_raw, ld_dt, dt_bias, a_log, d_skip,
                                          cu_seqlens, seq_slot, n_seqs, n_heads, head_dim, n_groups, d_state, stream);
}
