// Mamba2 SSD (chunked) form of the selective-state recurrence for prefill (spec §4.1), over a packed
// varlen batch cut into chunks of at most ZK_SSD_CHUNK tokens that never cross sequences:
//   a_t = dt_t A_h,  Λ_i = Σ_{t<=i} a_t (within the chunk)
//   s_c[p,n]  = Σ_j exp(Λ_last − Λ_j) dt_j x_j[p] B_j[n]                 (chunk-local end state)
//   S_c       = exp(Λ_last) S_{c−1} + s_c,  S_{−1} = the slot's state      (sequential over chunks)
//   y_i[p]    = Σ_{j<=i} (C_i·B_j) exp(Λ_i − Λ_j) dt_j x_j[p] + exp(Λ_i) Σ_n C_i[n] S_{c−1}[p,n] + D x_i[p]
// It equals the sequential recurrence (mamba2-scan.cu) up to fp32 rounding; the work is matrix-shaped
// (CUDA-core FMA over shared-memory tiles here; tensor cores are the next step).
#include "zamba2-common.cuh"

#define ZK_SSD_CHUNK 64
#define ZK_SSD_THREADS 256

// ---- kernels -----------------------------------------------------------------------------------

// dt and the inclusive cumsum Λ of dt*A per (chunk, head): one warp, two tokens per lane.
template <typename TX>
static __global__ void ssd_chunk_prep_kernel(float * __restrict__ dt_out, float * __restrict__ lam_out,
                                             const TX * __restrict__ dt_raw, int ld_dt,
                                             const float * __restrict__ dt_bias, const float * __restrict__ a_log,
                                             const int32_t * __restrict__ chunk_t0, const int32_t * __restrict__ chunk_len,
                                             int n_heads) {
    const int c = blockIdx.x, h = blockIdx.y, lane = threadIdx.x;
    const int64_t t0 = chunk_t0[c];
    const int len = chunk_len[c];
    const float A = -expf(a_log[h]);
    float v[2], dt[2];
    for (int k = 0; k < 2; ++k) {
        const int j = lane * 2 + k;
        dt[k] = j < len ? zk_softplus(zk_to_f32(dt_raw[(t0 + j) * ld_dt + h]) + dt_bias[h]) : 0.0f;  // [T, nh]
        v[k] = dt[k] * A;
    }
    float incl = v[0] + v[1];
    for (int off = 1; off < 32; off <<= 1) {
        const float o = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += o;
    }
    const float excl = incl - v[0] - v[1];
    float * dto = dt_out + ((int64_t) c * n_heads + h) * ZK_SSD_CHUNK;                 // [C, nh, L]
    float * lo = lam_out + ((int64_t) c * n_heads + h) * ZK_SSD_CHUNK;                 // [C, nh, L]
    dto[lane * 2] = dt[0];
    dto[lane * 2 + 1] = dt[1];
    lo[lane * 2] = excl + v[0];
    lo[lane * 2 + 1] = excl + v[0] + v[1];
}

// s_c for one (chunk, head): Xw[j][p] = exp(Λ_last − Λ_j) dt_j x_j[p]; s[p][n] = Σ_j Xw[j][p] B_j[n].
template <typename TX>
static __global__ void ssd_chunk_state_kernel(float * __restrict__ states, const TX * __restrict__ xbc, int ld_xbc,
                                              const float * __restrict__ dt_in, const float * __restrict__ lam_in,
                                              const int32_t * __restrict__ chunk_t0, const int32_t * __restrict__ chunk_len,
                                              int n_heads, int head_dim, int n_groups, int d_state) {
    extern __shared__ float smem[];
    const int c = blockIdx.x, h = blockIdx.y;
    const int P = head_dim, N = d_state, L = ZK_SSD_CHUNK;
    const int g = h / (n_heads / n_groups), d_inner = n_heads * P;
    float * xw = smem;             // [L, P]
    float * bs = smem + L * P;     // [L, N]
    const int64_t t0 = chunk_t0[c];
    const int len = chunk_len[c];
    const float * dt = dt_in + ((int64_t) c * n_heads + h) * L;
    const float * lam = lam_in + ((int64_t) c * n_heads + h) * L;
    const float lam_last = lam[len - 1];
    for (int e = threadIdx.x; e < L * P; e += blockDim.x) {
        const int j = e / P, p = e % P;
        xw[e] = j < len ? expf(lam_last - lam[j]) * dt[j] * zk_to_f32(xbc[(t0 + j) * ld_xbc + h * P + p]) : 0.0f;
    }
    for (int e = threadIdx.x; e < L * N; e += blockDim.x) {
        const int j = e / N, n = e % N;
        bs[e] = j < len ? zk_to_f32(xbc[(t0 + j) * ld_xbc + d_inner + g * N + n]) : 0.0f;
    }
    __syncthreads();
    float * out = states + ((int64_t) c * n_heads + h) * P * N;                        // [C, nh, P, N]
    for (int e = threadIdx.x; e < P * N; e += blockDim.x) {
        const int p = e / N, n = e % N;
        float acc = 0.0f;
        for (int j = 0; j < len; ++j) acc += xw[j * P + p] * bs[j * N + n];
        out[e] = acc;
    }
}

// Sequential over each sequence's chunks, parallel over (p, n): replaces s_c by S_{c−1} (the state
// entering chunk c) in place and writes the final state back to the slot.
static __global__ void ssd_state_pass_kernel(float * __restrict__ states, float * __restrict__ ssm_state,
                                             const float * __restrict__ lam_in, const int32_t * __restrict__ chunk_len,
                                             const int32_t * __restrict__ seq_chunk0, const int32_t * __restrict__ seq_nchunks,
                                             const int32_t * __restrict__ seq_slot, int n_heads, int pn) {
    const int s = blockIdx.x, h = blockIdx.y;
    const int e = blockIdx.z * blockDim.x + threadIdx.x;
    if (e >= pn) return;
    float * slot = ssm_state + ((int64_t) seq_slot[s] * n_heads + h) * pn;             // [slots, nh, P*N]
    float S = slot[e];
    const int c0 = seq_chunk0[s];
    for (int c = c0; c < c0 + seq_nchunks[s]; ++c) {
        float * sc = states + ((int64_t) c * n_heads + h) * pn;
        const float local = sc[e];
        sc[e] = S;
        S = expf(lam_in[((int64_t) c * n_heads + h) * ZK_SSD_CHUNK + chunk_len[c] - 1]) * S + local;
    }
    slot[e] = S;
}

// y for one (chunk, head): intra-chunk (masked CB^T with decays) plus the entering state's share.
template <typename TX>
static __global__ void ssd_chunk_output_kernel(float * __restrict__ y, const float * __restrict__ states,
                                               const TX * __restrict__ xbc, int ld_xbc,
                                               const float * __restrict__ dt_in, const float * __restrict__ lam_in,
                                               const float * __restrict__ d_skip,
                                               const int32_t * __restrict__ chunk_t0, const int32_t * __restrict__ chunk_len,
                                               int n_heads, int head_dim, int n_groups, int d_state) {
    extern __shared__ float smem[];
    const int c = blockIdx.x, h = blockIdx.y;
    const int P = head_dim, N = d_state, L = ZK_SSD_CHUNK, NP = N + 1;  // NP: padded rows, no bank conflicts
    const int g = h / (n_heads / n_groups), d_inner = n_heads * P;
    float * cs = smem;                 // [L, N]   C_i
    float * bs = cs + L * N;           // [L, NP]  B_j, later the entering state [P, NP]
    float * ms = bs + L * NP;          // [L, L]   (C_i·B_j) exp(Λ_i − Λ_j) dt_j, j <= i
    float * xs = ms + L * L;           // [L, P]   x_j
    const int64_t t0 = chunk_t0[c];
    const int len = chunk_len[c];
    const float * dt = dt_in + ((int64_t) c * n_heads + h) * L;
    const float * lam = lam_in + ((int64_t) c * n_heads + h) * L;
    for (int e = threadIdx.x; e < L * N; e += blockDim.x) {
        const int j = e / N, n = e % N;
        const TX * row = xbc + (t0 + j) * ld_xbc;                                      // xbc: [T, d + 2GN]
        cs[e] = j < len ? zk_to_f32(row[d_inner + n_groups * N + g * N + n]) : 0.0f;
        bs[j * NP + n] = j < len ? zk_to_f32(row[d_inner + g * N + n]) : 0.0f;
    }
    for (int e = threadIdx.x; e < L * P; e += blockDim.x) {
        const int j = e / P, p = e % P;
        xs[e] = j < len ? zk_to_f32(xbc[(t0 + j) * ld_xbc + h * P + p]) : 0.0f;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < L * L; e += blockDim.x) {
        const int i = e / L, j = e % L;
        float v = 0.0f;
        if (j <= i && i < len) {
            for (int n = 0; n < N; ++n) v += cs[i * N + n] * bs[j * NP + n];
            v *= expf(lam[i] - lam[j]) * dt[j];
        }
        ms[e] = v;
    }
    __syncthreads();
    const float * S = states + ((int64_t) c * n_heads + h) * P * N;                   // entering state [P, N]
    for (int e = threadIdx.x; e < P * N; e += blockDim.x) bs[(e / N) * NP + e % N] = S[e];
    __syncthreads();
    const float Dh = d_skip[h];
    for (int e = threadIdx.x; e < len * P; e += blockDim.x) {
        const int i = e / P, p = e % P;
        float diag = 0.0f, off = 0.0f;
        for (int j = 0; j <= i; ++j) diag += ms[i * L + j] * xs[j * P + p];
        for (int n = 0; n < N; ++n) off += cs[i * N + n] * bs[p * NP + n];
        y[(t0 + i) * d_inner + h * P + p] = diag + expf(lam[i]) * off + Dh * xs[i * P + p];  // y: [T, d]
    }
}

// ---- launchers ---------------------------------------------------------------------------------


template <typename TX>
static bool ssd_launch(float * y, float * ssm_state, float * chunk_states, float * dt_buf, float * lam_buf,
                       const TX * xbc, int ld_xbc, const TX * dt_raw, int ld_dt, const float * dt_bias,
                       const float * a_log, const float * d_skip, const int32_t * chunk_t0, const int32_t * chunk_len,
                       const int32_t * seq_chunk0, const int32_t * seq_nchunks, const int32_t * seq_slot, int n_chunks,
                       int n_seqs, int n_heads, int head_dim, int n_groups, int d_state, cudaStream_t stream) {
    if (head_dim > ZK_SSD_CHUNK) return false;  // the output kernel reuses B's [L, N+1] rows for the [P, N+1] state
    const size_t smem_out = (size_t) (ZK_SSD_CHUNK * d_state + ZK_SSD_CHUNK * (d_state + 1) + ZK_SSD_CHUNK * ZK_SSD_CHUNK +
                                      ZK_SSD_CHUNK * head_dim) * sizeof(float);
    const size_t smem_state = (size_t) (ZK_SSD_CHUNK * head_dim + ZK_SSD_CHUNK * d_state) * sizeof(float);
    int dev = 0, max_optin = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (smem_out > (size_t) max_optin || smem_state > (size_t) max_optin) return false;
    if (n_chunks <= 0) return true;
    cudaFuncSetAttribute(ssd_chunk_output_kernel<TX>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) smem_out);
    cudaFuncSetAttribute(ssd_chunk_state_kernel<TX>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) smem_state);
    const dim3 ch(n_chunks, n_heads);
    ssd_chunk_prep_kernel<TX><<<ch, 32, 0, stream>>>(dt_buf, lam_buf, dt_raw, ld_dt, dt_bias, a_log, chunk_t0, chunk_len, n_heads);
    ssd_chunk_state_kernel<TX><<<ch, ZK_SSD_THREADS, smem_state, stream>>>(chunk_states, xbc, ld_xbc, dt_buf, lam_buf, chunk_t0,
                                                                       chunk_len, n_heads, head_dim, n_groups, d_state);
    const int pn = head_dim * d_state;
    const dim3 sp(n_seqs, n_heads, (pn + 255) / 256);
    ssd_state_pass_kernel<<<sp, 256, 0, stream>>>(chunk_states, ssm_state, lam_buf, chunk_len, seq_chunk0, seq_nchunks,
                                                  seq_slot, n_heads, pn);
    ssd_chunk_output_kernel<TX><<<ch, ZK_SSD_THREADS, smem_out, stream>>>(y, chunk_states, xbc, ld_xbc, dt_buf, lam_buf, d_skip,
                                                                      chunk_t0, chunk_len, n_heads, head_dim, n_groups, d_state);
    return true;
}

#define ZK_SSD_PARAMS(TX)                                                                          \
    float *y, float *ssm_state, float *chunk_states, float *dt_buf, float *lam_buf, const TX *xbc, int ld_xbc, \
        const TX *dt_raw, int ld_dt, const float *dt_bias, const float *a_log, const float *d_skip,            \
        const int32_t *chunk_t0, const int32_t *chunk_len, const int32_t *seq_chunk0, const int32_t *seq_nchunks, \
        const int32_t *seq_slot, int n_chunks, int n_seqs, int n_heads, int head_dim, int n_groups, int d_state, \
        cudaStream_t stream
#define ZK_SSD_ARGS                                                                                \
    y, ssm_state, chunk_states, dt_buf, lam_buf, xbc, ld_xbc, dt_raw, ld_dt, dt_bias, a_log, d_skip, chunk_t0, \
        chunk_len, seq_chunk0, seq_nchunks, seq_slot, n_chunks, n_seqs, n_heads, head_dim, n_groups, d_state, stream
bool mamba2_ssd_varlen(ZK_SSD_PARAMS(bf16)) { return ssd_launch(ZK_SSD_ARGS); }
bool mamba2_ssd_varlen(ZK_SSD_PARAMS(float)) { return ssd_launch(ZK_SSD_ARGS); }
