// Mamba2 SSD (chunked) form of the selective-state recurrence for prefill (spec §4.1), on tensor cores,
// over a packed varlen batch cut into chunks of at most 64 tokens that never cross sequences:
//   a_t = dt_t A_h,  Λ_i = Σ_{t<=i} a_t (within the chunk)
//   M_ij      = (C_i·B_j) exp(Λ_i − Λ_j) dt_j   (j <= i)                          [64 x 64]
//   y_i[p]    = Σ_j M_ij x_j[p] + exp(Λ_i) Σ_n C_i[n] S_{c−1}[p,n] + D x_i[p]
//   S_c[p,n]  = exp(Λ_last) S_{c−1}[p,n] + Σ_j exp(Λ_last − Λ_j) dt_j x_j[p] B_j[n]
// It equals the sequential recurrence (mamba2-scan.cu) to ~1e-5 relative.
//
// Design (kernels/notes/runs-06-12.md, runs 6-7: the tensor-core SSD):
// - One CTA per (chunk, head), 8 warps. Every product above is an mma.sync m16n8k16 bf16 product with
//   fp32 operands split as v = hi + lo (bf16 each) and three MMAs hi·hi + hi·lo + lo·hi: operands exact
//   to ~2^-17, so the result is fp32-grade (tf32 would give ~3e-4, plain bf16 ~3e-3).
// - State passing is a chain through the slot's state in place: the CTA of chunk c computes its local
//   chunk state first, then each warp waits for the same warp of chunk c−1 (a flag per (chunk, head,
//   warp)), reads S_{c−1} (the fragment it owns), writes S_c back into the slot and raises its flag.
//   CTAs take their (chunk, head) from an atomic ticket in chunk-major order, so every CTA waits only
//   on CTAs that already run: no deadlock whatever the scheduling, and no chunk states in DRAM.
// - C·B^T does not depend on the head: a prep kernel computes it once per (chunk, group) into the cb_buf
//   scratch [n_chunks, G, 64, 64] (16 KB per chunk and group, for every shape) and each head's CTA reads
//   its fragments from there. The chunk kernel is the prep kernel's programmatic dependent: its loads
//   of the step's inputs overlap the prep kernel (the ticket is zeroed by a memset before both).
// - Measured in session 3 (test-ssd-tc.cu, ZK_BENCH_SSD=1, its phase profile and no-chain-wait mode):
//   the chain is not the limit at T 2048 (skipping its waits changes nothing); each CTA's latency is
//   (loads, then MMAs out of shared memory, 2 CTAs per SM). Hence: every load issued before dependent math, split MMAs interleaved across
//   accumulators, PDL. Tried and dropped: clusters of 2-8 chunk CTAs passing the state through
//   distributed shared memory (st.async + mbarrier; no gain: co-scheduling gaps, serial waits inside
//   the cluster), and y computed transposed with S_{c−1} from registers as the A operand (slower: 128
//   registers, and S_{c−1}'s loads overlapped with phase D lengthened each hop).
#include "mamba2-ssd-operands.cuh"  // constants, arguments, shared-memory planes, B / C loads, split MMAs
#include "zamba2-launch.cuh"
#include "zamba2-mma.cuh"

#include <cstdint>

namespace {

// ---- kernels -----------------------------------------------------------------------------------

// Zeroes the flags, maps chunks to sequences and computes C·B^T per (chunk, group): one CTA
// per (chunk, group), launched with n_chunks * G blocks (the first two loops are grid-strided).
template <int NPAD, typename TX>
__global__ void __launch_bounds__(kThreads) ssd_prep_kernel(ssd_args<TX> a) {
    const int gt = blockIdx.x * kThreads + threadIdx.x, stride = gridDim.x * kThreads;
    zk_pdl_trigger();  // the chunk kernel may start its loads now (it waits for this grid before reading cb)
    for (int i = 1 + gt; i < a.n_sync; i += stride) a.sync[i] = 0;  // flags (the ticket: memset before this kernel)
    for (int s = gt; s < a.n_seqs; s += stride) {
        for (int c = a.seq_chunk0[s]; c < a.seq_chunk0[s] + a.seq_nchunks[s]; ++c) a.chunk_seq[c] = s;
    }
    extern __shared__ __align__(16) unsigned char smem_raw[];
    using SM = ssd_smem<NPAD>;
    __nv_bfloat16 * b_hi = reinterpret_cast<__nv_bfloat16 *>(smem_raw);
    __nv_bfloat16 * b_lo = b_hi + SM::kPlaneB, * c_hi = b_lo + SM::kPlaneB, * c_lo = c_hi + SM::kPlaneB;
    const int c = blockIdx.x / a.n_groups, g = blockIdx.x % a.n_groups;
    const int len = a.chunk_len[c];
    load_bc<NPAD>(b_hi, b_lo, c_hi, c_lo, a, (int64_t) a.chunk_t0[c], len, g);
    __syncthreads();
    float acc[4][4];
    cb_mma<NPAD>(acc, b_hi, b_lo, c_hi, c_lo, len);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane >> 2, tg = lane & 3;
    const int mi = warp & 3;
    float * out = a.cb + ((int64_t) c * a.n_groups + g) * kL * kL;                     // [64, 64]
#pragma unroll
    for (int t = 0; t < 4; ++t) {
        const int j = 32 * (warp >> 2) + 8 * t + 2 * tg, i = 16 * mi + gq;
        if (j - 2 * tg > 16 * mi + 15) continue;
        *reinterpret_cast<float2 *>(out + i * kL + j) = make_float2(acc[t][0], acc[t][1]);
        *reinterpret_cast<float2 *>(out + (i + 8) * kL + j) = make_float2(acc[t][2], acc[t][3]);
    }
}

// One CTA per (chunk, head), 8 warps; (chunk, head) from the ticket in chunk-major order (see the top).
// Launched after the prep kernel as its programmatic dependent (where the device has it): phase A reads
// only the step's inputs (written before the prep kernel started) and the ticket (zeroed by a memset
// before it), so it overlaps the prep kernel; zk_pdl_wait comes before C·B^T, chunk_seq and the flags.
template <int NPAD, typename TX>
__global__ void __launch_bounds__(kThreads, 2) ssd_chunk_kernel(ssd_args<TX> a) {
    using SM = ssd_smem<NPAD>;
    constexpr int kLdB = SM::kLdB;
    constexpr int kNtS = NPAD / 16;  // n8 tiles of the state per warp (the warp owns NPAD/2 columns)
    extern __shared__ __align__(16) unsigned char smem_raw[];
    __nv_bfloat16 * x_hi = reinterpret_cast<__nv_bfloat16 *>(smem_raw);
    __nv_bfloat16 * x_lo = x_hi + SM::kPlaneX;
    __nv_bfloat16 * xw_hi = x_lo + SM::kPlaneX;    // later M
    __nv_bfloat16 * xw_lo = xw_hi + SM::kPlaneX;
    __nv_bfloat16 * b_hi = xw_lo + SM::kPlaneX;    // later S_{c-1} [p][n]
    __nv_bfloat16 * b_lo = b_hi + SM::kPlaneB;
    __nv_bfloat16 * c_hi = b_lo + SM::kPlaneB;
    __nv_bfloat16 * c_lo = c_hi + SM::kPlaneB;
    float * dt_s = reinterpret_cast<float *>(c_lo + SM::kPlaneB);
    float * lam_s = dt_s + kL, * elam_s = lam_s + kL, * w_s = elam_s + kL;
    int * ticket_s = reinterpret_cast<int *>(w_s + kL);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, q = lane >> 3, r = lane & 7, gq = lane >> 2, tg = lane & 3;
    unsigned long long tp[8];  // phase stamps of thread 0 (a.prof only)
    if (a.prof && threadIdx.x == 0) tp[0] = zk_globaltimer_ns();
    if (threadIdx.x == 0) *ticket_s = atomicAdd(a.sync, 1);
    __syncthreads();
    const int ticket = *ticket_s;
    const int nh = a.n_heads, c = ticket / nh, h = ticket % nh;
    const int P = a.head_dim, N = a.d_state, d = nh * P;
    const int g = h / (nh / a.n_groups);
    const int64_t t0 = a.chunk_t0[c];
    const int len = a.chunk_len[c];

    // Phase A: the chunk's inputs, all loads in flight together: x (registers until w is known), the raw
    // dt (warp 0, two tokens per lane), B and C (into planes); then dt, Λ, exp(Λ) and w from the raw dt.
    constexpr int kItX = kL * (kP / 4) / kThreads;
    float4 xv[kItX];
#pragma unroll
    for (int it = 0; it < kItX; ++it) {
        const int e = it * kThreads + threadIdx.x, j = e / (kP / 4), p = (e % (kP / 4)) * 4;
        xv[it] = make_float4(0.f, 0.f, 0.f, 0.f);
        if (j < len && p < P) xv[it] = load4(a.xbc + (t0 + j) * a.ld_xbc + h * P, p, P, a.vec4);
    }
    float dt_raw[2] = {0.0f, 0.0f}, a_log = 0.0f, bias = 0.0f;
    if (warp == 0) {
        a_log = a.a_log[h];
        bias = a.dt_bias[h];
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            const int j = 2 * lane + k;
            if (j < len) dt_raw[k] = zk_to_f32(a.dt_raw[(t0 + j) * a.ld_dt + h]);  // [T, nh]
        }
    }
    load_bc<NPAD>(b_hi, b_lo, c_hi, c_lo, a, t0, len, g);
    if (warp == 0) {
        const float A = -expf(a_log);
        float dtv[2], v[2];
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            dtv[k] = 2 * lane + k < len ? zk_softplus(dt_raw[k] + bias) : 0.0f;
            v[k] = dtv[k] * A;
        }
        float incl = v[0] + v[1];
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
            const float o = __shfl_up_sync(0xffffffffu, incl, off);
            if (lane >= off) incl += o;
        }
        const float lam_last = __shfl_sync(0xffffffffu, incl, 31);  // dt = 0 past len: Λ_63 = Λ_{len-1}
        const float lam[2] = {incl - v[1], incl};
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            const int j = 2 * lane + k;
            dt_s[j] = dtv[k];
            lam_s[j] = lam[k];
            elam_s[j] = expf(lam[k]);
            w_s[j] = expf(lam_last - lam[k]) * dtv[k];
        }
    }
    __syncthreads();
    if (a.prof && threadIdx.x == 0) tp[1] = zk_globaltimer_ns();

    // The prep kernel's outputs from here: C·B^T fragments (used in phase D, in flight meanwhile).
    zk_pdl_wait();
    const int mi = warp & 3;  // 16-row block of C·B^T / M / y owned by this warp
    float cb[4][4];
#pragma unroll
    for (int t = 0; t < 4; ++t) cb[t][0] = cb[t][1] = cb[t][2] = cb[t][3] = 0.0f;
    {
        const float * src = a.cb + ((int64_t) c * a.n_groups + g) * kL * kL;
#pragma unroll
        for (int t = 0; t < 4; ++t) {
            const int j = 32 * (warp >> 2) + 8 * t + 2 * tg, i = 16 * mi + gq;
            if (j - 2 * tg > 16 * mi + 15) continue;  // above the diagonal block: never read in phase D
            const float2 lo = *reinterpret_cast<const float2 *>(src + i * kL + j);
            const float2 hi = *reinterpret_cast<const float2 *>(src + (i + 8) * kL + j);
            cb[t][0] = lo.x; cb[t][1] = lo.y; cb[t][2] = hi.x; cb[t][3] = hi.y;
        }
    }
    const int s = a.chunk_seq[c], sc0 = a.seq_chunk0[s];
    const bool first = c == sc0, last = c == sc0 + a.seq_nchunks[s] - 1;

    // Phase B: x and x·w planes from the registers loaded in phase A.
#pragma unroll
    for (int it = 0; it < kItX; ++it) {
        const int e = it * kThreads + threadIdx.x, j = e / (kP / 4), p = (e % (kP / 4)) * 4;
        const float4 v = xv[it];
        const float w = w_s[j];
        const int o = j * kLdX + p;
        zk_store_split4(x_hi + o, x_lo + o, v);
        zk_store_split4(xw_hi + o, xw_lo + o, make_float4(v.x * w, v.y * w, v.z * w, v.w * w));
    }
    __syncthreads();
    if (a.prof && threadIdx.x == 0) tp[2] = zk_globaltimer_ns();

    // Phase C: local chunk state s[p, n] = Σ_j xw[j, p] B[j, n]; warp: rows 16*(w%4).., columns (w/4)*NPAD/2..
    const int pm = warp & 3, nbase = (warp >> 2) * (NPAD / 2);
    float acc_s[kNtS][4];
#pragma unroll
    for (int t = 0; t < kNtS; ++t) acc_s[t][0] = acc_s[t][1] = acc_s[t][2] = acc_s[t][3] = 0.0f;
    if (16 * pm < P) {
        constexpr int kPairsS = kNtS / 2 >= 2 ? 2 : 1;  // B fragment pairs per MMA batch
#pragma unroll
        for (int ks = 0; ks < 4; ++ks) {
            if (16 * ks >= len) break;
            uint32_t ah[4], al[4];
            const int aoff = (16 * ks + r + 8 * (q >> 1)) * kLdX + 16 * pm + 8 * (q & 1);
            zk_ldmatrix_x4_trans(ah, xw_hi + aoff);
            zk_ldmatrix_x4_trans(al, xw_lo + aoff);
#pragma unroll
            for (int pb = 0; pb < kNtS / 2; pb += kPairsS) {
                uint32_t bh[kPairsS][4], bl[kPairsS][4];
#pragma unroll
                for (int u = 0; u < kPairsS; ++u) {
                    const int boff = (16 * ks + r + 8 * (q & 1)) * kLdB + nbase + 16 * (pb + u) + 8 * (q >> 1);
                    zk_ldmatrix_x4_trans(bh[u], b_hi + boff);
                    zk_ldmatrix_x4_trans(bl[u], b_lo + boff);
                }
                mma_x3_tiles<kPairsS>(acc_s + 2 * pb, ah, al, bh, bl);
            }
        }
    }
    __syncthreads();  // xw and B planes are free from here
    if (a.prof && threadIdx.x == 0) tp[3] = zk_globaltimer_ns();

    // Phase D: M = C·B^T ∘ exp(Λ_i − Λ_j) dt_j (j <= i < len) into the xw planes.
#pragma unroll
    for (int t = 0; t < 4; ++t) {
        const int j = 32 * (warp >> 2) + 8 * t + 2 * tg;
        if (j - 2 * tg > 16 * mi + 15) continue;
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) {
            const int i = 16 * mi + gq + 8 * hr;
            float m0 = 0.0f, m1 = 0.0f;
            if (i < len) {
                if (j <= i) m0 = cb[t][2 * hr] * expf(lam_s[i] - lam_s[j]) * dt_s[j];
                if (j + 1 <= i) m1 = cb[t][2 * hr + 1] * expf(lam_s[i] - lam_s[j + 1]) * dt_s[j + 1];
            }
            const int o = i * kLdX + j;
            zk_store_split2(xw_hi + o, xw_lo + o, m0, m1);
        }
    }

    // Chain: this warp's fragment of S_{c-1} (the slot's initial state, or the slot after the same warp of
    // chunk c-1 raised its flag); S_c = exp(Λ_last) S_{c-1} + s back into the slot (+ flag unless last);
    // S_{c-1} into the planes for y.
    float sp[kNtS][4];
    {
        float * st = a.ssm_state + ((int64_t) a.seq_slot[s] * nh + h) * P * N;            // [P, N]
        const bool pair_ok = (N % 2) == 0;
        if (a.prof && threadIdx.x == 0) tp[4] = zk_globaltimer_ns();
        if (!first && a.mode != 2) {
            const int * flag = a.sync + 1 + ((int64_t) (c - 1) * nh + h) * kWarps + warp;
            if (a.mode == 1) {
                while (ld_acquire(flag) == 0) {}
            } else {
                while (ld_acquire(flag) == 0) __nanosleep(20);
            }
        }
        if (a.prof && threadIdx.x == 0) tp[5] = zk_globaltimer_ns();
#pragma unroll
        for (int t = 0; t < kNtS; ++t) {  // every load issued before the first store
            const int n = nbase + 8 * t + 2 * tg;
#pragma unroll
            for (int hr = 0; hr < 2; ++hr) {
                const int p = 16 * pm + gq + 8 * hr;
                sp[t][2 * hr] = sp[t][2 * hr + 1] = 0.0f;
                if (p < P && n < N) {
                    const float * e = st + p * N + n;
                    if (pair_ok) {
                        const float2 v = __ldcg(reinterpret_cast<const float2 *>(e));
                        sp[t][2 * hr] = v.x;
                        sp[t][2 * hr + 1] = v.y;
                    } else {
                        sp[t][2 * hr] = __ldcg(e);
                        if (n + 1 < N) sp[t][2 * hr + 1] = __ldcg(e + 1);
                    }
                }
            }
        }
        const float decay = elam_s[kL - 1];
#pragma unroll
        for (int t = 0; t < kNtS; ++t)
#pragma unroll
            for (int k = 0; k < 4; ++k) acc_s[t][k] = decay * sp[t][k] + acc_s[t][k];  // S_c
#pragma unroll
        for (int t = 0; t < kNtS; ++t) {
            const int n = nbase + 8 * t + 2 * tg;
#pragma unroll
            for (int hr = 0; hr < 2; ++hr) {
                const int p = 16 * pm + gq + 8 * hr;
                if (p < P && n < N) {
                    float * e = st + p * N + n;
                    if (pair_ok) {
                        __stcg(reinterpret_cast<float2 *>(e), make_float2(acc_s[t][2 * hr], acc_s[t][2 * hr + 1]));
                    } else {
                        __stcg(e, acc_s[t][2 * hr]);
                        if (n + 1 < N) __stcg(e + 1, acc_s[t][2 * hr + 1]);
                    }
                }
            }
        }
        // Release after the warp's stores (CUTLASS's barrier pattern: bar then one st.release.gpu); the
        // next chunk's warp reads with ld.acquire.gpu and L1-bypassing loads.
        if (!last) {
            __syncwarp();
            if (lane == 0) st_release(a.sync + 1 + ((int64_t) c * nh + h) * kWarps + warp, 1);
        }
        if (a.prof && threadIdx.x == 0) tp[6] = zk_globaltimer_ns();
    }
#pragma unroll
    for (int t = 0; t < kNtS; ++t) {
        const int n = nbase + 8 * t + 2 * tg;
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) {
            const int o = (16 * pm + gq + 8 * hr) * kLdB + n;
            zk_store_split2(b_hi + o, b_lo + o, sp[t][2 * hr], sp[t][2 * hr + 1]);
        }
    }
    __syncthreads();

    // Phase E: y rows 16*mi.. , head columns 32*(w/4).. (4 n8 tiles; 2 when the head ends at +16).
    if (16 * mi >= len) return;
    const int pbase = 32 * (warp >> 2);
    if (pbase >= P) return;
    const bool two = pbase + 16 < P;
    float acc[4][4];
#pragma unroll
    for (int t = 0; t < 4; ++t) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < NPAD / 16; ++ks) {  // C_i · S_{c-1}^T
        uint32_t ah[4], al[4], bh[2][4], bl[2][4];
        const int aoff = (16 * mi + r + 8 * (q & 1)) * kLdB + 16 * ks + 8 * (q >> 1);
        zk_ldmatrix_x4(ah, c_hi + aoff);
        zk_ldmatrix_x4(al, c_lo + aoff);
#pragma unroll
        for (int pr = 0; pr < 2; ++pr) {
            if (pr == 1 && !two) continue;
            const int boff = (pbase + 16 * pr + r + 8 * (q >> 1)) * kLdB + 16 * ks + 8 * (q & 1);
            zk_ldmatrix_x4(bh[pr], b_hi + boff);
            zk_ldmatrix_x4(bl[pr], b_lo + boff);
        }
        if (two) mma_x3_tiles<2>(acc, ah, al, bh, bl);
        else mma_x3_tiles<1>(acc, ah, al, bh, bl);
    }
    const float e0 = elam_s[16 * mi + gq], e1 = elam_s[16 * mi + gq + 8];
#pragma unroll
    for (int t = 0; t < 4; ++t) {
        acc[t][0] *= e0; acc[t][1] *= e0; acc[t][2] *= e1; acc[t][3] *= e1;
    }
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {  // + M · x
        if (ks > mi || 16 * ks >= len) break;
        uint32_t ah[4], al[4], bh[2][4], bl[2][4];
        const int aoff = (16 * mi + r + 8 * (q & 1)) * kLdX + 16 * ks + 8 * (q >> 1);
        zk_ldmatrix_x4(ah, xw_hi + aoff);
        zk_ldmatrix_x4(al, xw_lo + aoff);
#pragma unroll
        for (int pr = 0; pr < 2; ++pr) {
            if (pr == 1 && !two) continue;
            const int boff = (16 * ks + r + 8 * (q & 1)) * kLdX + pbase + 16 * pr + 8 * (q >> 1);
            zk_ldmatrix_x4_trans(bh[pr], x_hi + boff);
            zk_ldmatrix_x4_trans(bl[pr], x_lo + boff);
        }
        if (two) mma_x3_tiles<2>(acc, ah, al, bh, bl);
        else mma_x3_tiles<1>(acc, ah, al, bh, bl);
    }
    const float Dh = a.d_skip[h];
    const bool pair_y = (P % 2) == 0;  // (p, p + 1) adjacent and 8-byte aligned in y
#pragma unroll
    for (int t = 0; t < 4; ++t) {
        const int p = pbase + 8 * t + 2 * tg;
        if (p >= P) continue;
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) {
            const int i = 16 * mi + gq + 8 * hr;
            if (i >= len) continue;
            float * yrow = a.y + (t0 + i) * d + h * P;                                  // y: [T, d]
            const float y0 = acc[t][2 * hr] + Dh * bf16_pair_sum(x_hi, x_lo, i * kLdX + p);
            const float y1 = acc[t][2 * hr + 1] + Dh * bf16_pair_sum(x_hi, x_lo, i * kLdX + p + 1);
            if (pair_y) {
                *reinterpret_cast<float2 *>(yrow + p) = make_float2(y0, y1);
            } else {
                yrow[p] = y0;
                if (p + 1 < P) yrow[p + 1] = y1;
            }
        }
    }
    if (a.prof && threadIdx.x == 0) {  // warp 0 always gets here (rows 0..15, columns 0..31)
        tp[7] = zk_globaltimer_ns();
        for (int k = 0; k < 7; ++k) atomicAdd(a.prof + k, tp[k + 1] - tp[k]);
        atomicAdd(a.prof + 7, 1ull);
        atomicMin(a.prof + 8, tp[0]);
        atomicMax(a.prof + 9, tp[7]);
    }
}

// ---- launchers ---------------------------------------------------------------------------------

int g_debug_mode = 0;
unsigned long long * g_debug_prof = nullptr;
int g_debug_variant = 0;  // mamba2_ssd_debug_variant: 0 default, 1 without PDL

template <int NPAD, typename TX>
bool ssd_launch_n(const ssd_args<TX> & a, cudaStream_t stream) {
    using SM = ssd_smem<NPAD>;
    static const bool attrs_ok = [] {
        const size_t prep = (size_t) 4 * SM::kPlaneB * 2;
        return cudaFuncSetAttribute(ssd_chunk_kernel<NPAD, TX>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int) SM::kBytes) == cudaSuccess &&
               cudaFuncSetAttribute(ssd_prep_kernel<NPAD, TX>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int) prep) == cudaSuccess;
    }();
    if (!attrs_ok) return false;
    if (cudaMemsetAsync(a.sync, 0, sizeof(int), stream) != cudaSuccess) return false;  // the ticket
    const size_t prep_smem = (size_t) 4 * SM::kPlaneB * 2;
    ssd_prep_kernel<NPAD, TX><<<a.n_chunks * a.n_groups, kThreads, prep_smem, stream>>>(a);
    if (a.mode == 3) return true;
    // the chunk kernel overlaps the prep kernel's tail (PDL) unless the debug variant turns it off
    return zk_launch_pdl(g_debug_variant == 0, ssd_chunk_kernel<NPAD, TX>, dim3(a.n_chunks * a.n_heads), dim3(kThreads),
                         SM::kBytes, stream, a) == cudaSuccess;
}

template <typename TX>
bool ssd_launch(float * y, float * ssm_state, float * cb_buf, float * dt_buf, float * lam_buf, const TX * xbc,
                int ld_xbc, const TX * dt_raw, int ld_dt, const float * dt_bias, const float * a_log,
                const float * d_skip, const int32_t * chunk_t0, const int32_t * chunk_len, const int32_t * seq_chunk0,
                const int32_t * seq_nchunks, const int32_t * seq_slot, int n_chunks, int n_seqs, int n_heads,
                int head_dim, int n_groups, int d_state, cudaStream_t stream) {
    if (head_dim < 1 || head_dim > kP || d_state < 1 || d_state > 128 || n_groups < 1 || n_heads % n_groups) return false;
    if (n_chunks <= 0) return true;
    ssd_args<TX> a;
    a.y = y;
    a.ssm_state = ssm_state;
    a.cb = cb_buf;                                    // [n_chunks, G, 64, 64]
    a.sync = reinterpret_cast<int *>(dt_buf);         // 1 + n_chunks*nh*8 <= n_chunks*nh*64 ints
    a.chunk_seq = reinterpret_cast<int *>(lam_buf);   // n_chunks <= n_chunks*nh*64 ints
    a.xbc = xbc;
    a.dt_raw = dt_raw;
    a.dt_bias = dt_bias;
    a.a_log = a_log;
    a.d_skip = d_skip;
    a.chunk_t0 = chunk_t0;
    a.chunk_len = chunk_len;
    a.seq_chunk0 = seq_chunk0;
    a.seq_nchunks = seq_nchunks;
    a.seq_slot = seq_slot;
    a.ld_xbc = ld_xbc;
    a.ld_dt = ld_dt;
    a.n_chunks = n_chunks;
    a.n_seqs = n_seqs;
    a.n_heads = n_heads;
    a.head_dim = head_dim;
    a.n_groups = n_groups;
    a.d_state = d_state;
    a.n_sync = 1 + n_chunks * n_heads * kWarps;
    a.mode = g_debug_mode;
    a.prof = g_debug_prof;
    const int d = n_heads * head_dim;
    a.vec4 = sizeof(TX) == 4 && ld_xbc % 4 == 0 && d % 4 == 0 && head_dim % 4 == 0 && d_state % 4 == 0 &&
             (reinterpret_cast<uintptr_t>(xbc) & 15) == 0;
    if (d_state <= 32) return ssd_launch_n<32>(a, stream);
    if (d_state <= 64) return ssd_launch_n<64>(a, stream);
    return ssd_launch_n<128>(a, stream);
}

}  // namespace

void mamba2_ssd_debug(int mode, unsigned long long * prof) {
    g_debug_mode = mode;
    g_debug_prof = prof;
}
void mamba2_ssd_debug_variant(int variant) { g_debug_variant = variant; }

#define ZK_SSD_PARAMS(TX)                                                                          \
    float *y, float *ssm_state, float *cb_buf, float *dt_buf, float *lam_buf, const TX *xbc, int ld_xbc, \
        const TX *dt_raw, int ld_dt, const float *dt_bias, const float *a_log, const float *d_skip,            \
        const int32_t *chunk_t0, const int32_t *chunk_len, const int32_t *seq_chunk0, const int32_t *seq_nchunks, \
        const int32_t *seq_slot, int n_chunks, int n_seqs, int n_heads, int head_dim, int n_groups, int d_state, \
        cudaStream_t stream
#define ZK_SSD_ARGS                                                                                \
    y, ssm_state, cb_buf, dt_buf, lam_buf, xbc, ld_xbc, dt_raw, ld_dt, dt_bias, a_log, d_skip, chunk_t0, \
        chunk_len, seq_chunk0, seq_nchunks, seq_slot, n_chunks, n_seqs, n_heads, head_dim, n_groups, d_state, stream
bool mamba2_ssd_varlen(ZK_SSD_PARAMS(bf16)) { return ssd_launch(ZK_SSD_ARGS); }
bool mamba2_ssd_varlen(ZK_SSD_PARAMS(float)) { return ssd_launch(ZK_SSD_ARGS); }
