// A run of consecutive Mamba2 layers of a batch-1 decode step in one persistent launch (sm_90+).
//
// Why: at batch 1 every weight byte is read once per step, so the step is a stream of 3.5 GB (1.2B) that the GPU
// should read at full bandwidth. As separate launches (in_proj, the state step, out_proj per layer) each launch's
// CTAs can only ask for their weights once the previous launch's CTAs leave, and the memory system idles at every
// edge (kernels/NOTES.md run 37: a 1.2B Mamba2 layer takes ~29 us for ~12 us of weights). Here one CTA per SM owns
// a ring of shared-memory slots that a producer thread keeps filling with the SM's share of the weights, in the
// order the layers use them, with bulk copies (cp.async.bulk: no registers, no L1). The copies do not wait for
// anything but a free slot, so layer L+1's in_proj rows are already arriving while layer L's state step and
// out_proj run. The data dependencies inside the run are grid barriers (all CTAs are resident: one per SM).
//
// A run after a hybrid layer can start with that block's last GEMV (a.down_w: down and W_linear merged), so that its
// 34 MB stream through the ring and the first layer's in_proj rows arrive right behind them, as between layers:
//   down:     xs = bf16(gelu(g) * u) (gu from the previous kernel); tr[n] = W_down[n] . xs for its rows n
//   barrier D
// Per layer, each CTA (b of nb; rows split evenly, each output row computed by one CTA):
//   in_proj:  s = x (+ tr on the run's first, hybrid, layer); xs = w_in * (s * rsqrt(mean(s^2) + eps))    [H]
//             zx[n] = W_in[n] . xs for its rows n; conv rows (d <= n < d + cd) also
//             xbc[c] = silu(b + w . (st0, st1, st2, zx[n])), conv state <- (st1, st2, zx[n])         c = n - d
//   barrier A
//   state:    unit u = (head h, rows [p0, p0 + rows)): S = exp(dt A) S + dt x B^T; y = (S C + D x) * silu(z);
//             gsq[u] = sum of y^2 over the unit                              dt = softplus(zx[dt, h] + dt_bias)
//   barrier B
//   out_proj: ys = w_norm * (y * rsqrt(sum of its group's gsq / group + eps)); x[n] += W_out[n] . ys
//   barrier C (not after the last layer: the launch's end publishes x)
// Every row's dot product and every block sum runs in a fixed order (mamba2-decode-persistent-gemv.cuh): the same
// bits on every run. The SSM state is fp32, as in the other decode paths. The ring and the barriers:
// mamba2-decode-persistent-ring.cuh; the stagings and the state step: mamba2-decode-persistent-phases.cuh.
// Status: the engine's batch-1 decode path on sm_90+ since run 101 (ZAMBA2_PERSIST=0 turns it off): 1.36-1.39 ms
// per 1.2B b1 step against the fused per-layer kernels' 1.51 (runs 100-103; tests/test-mamba-persist.cu, the goldens;
// kernels/notes/runs-65-.md on). Launched cooperatively: where its CTAs cannot all be resident (an SM limit under MPS)
// the launch is refused and the engine runs the per-layer kernels, instead of a grid barrier waiting forever. Its
// ~227 KB of shared memory leaves the SMs at the largest carveout, so the engine has the other kernels of decode
// steps prefer 50% (include/zamba2-launch.cuh says why).
#include <algorithm>
#include <cstdint>

#include "mamba2-decode-persistent-gemv.cuh"
#include "mamba2-decode-persistent-phases.cuh"
#include "mamba2-decode-persistent-ring.cuh"
#include "zamba2-timeline.cuh"

namespace {

// ---- the phase trace (the bench only: the kernel's kTrace instance, with a.trace set) ---------------------------
#define PK_TRACE(L, k)                                                                                       \
    do {                                                                                                     \
        if (trace && threadIdx.x == 0)                                                                      \
            trace[((int64_t) blockIdx.x * a.n_layers + (L)) * PERSIST_TRACE_FIELDS + (k)] = zk_globaltimer_ns(); \
    } while (0)

// kTrace: the bench's traced instance. The untraced one has none of the trace's code: its predicated instructions
// sat in the slot loop's wait path and held registers (run 99). kDown: the run starts with the down phase (p.down),
// an instance of its own, so that the runs without it keep the tree's code (run 111: one instance for both, with a
// consumer generalized for both, made the layers ~28 us per 1.2B step slower).
template <bool kTrace, bool kDown>
__global__ void __launch_bounds__(PK_THREADS, 1) mamba2_decode_persistent_kernel(const __grid_constant__ pk_params p) {
    extern __shared__ __align__(128) unsigned char pk_dyn[];
    ZK_TL_BEGIN();  // the timeline build only (mark 0: layer 0 done; mark 1: the last layer's input in place)
    const pk_smem s = pk_carve(pk_dyn, p);
    const mamba2_persist_args & a = p.a;
    unsigned long long * const trace = kTrace ? a.trace : nullptr;
    const int tid = threadIdx.x, nb = gridDim.x, b = blockIdx.x;
    if (tid == 0) {
        for (int i = 0; i < p.n_slots; ++i) {
            pk_mbar_init(&s.full[i], 1);                  // the producer's arrive (+ the copy's bytes)
            pk_mbar_init(&s.empty[i], PK_CONSUMER_WARPS);  // one arrive per consumer warp
        }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");  // the inits, seen by the copy engine
#endif
    }
    __syncthreads();

    if (tid >= PK_CONSUMERS) {  // the producer warpgroup: weights are constants, so it never waits for earlier kernels
        pk_release_registers();
        if (tid == PK_CONSUMERS) {
            pk_ring_pos pos;
            if constexpr (kDown) pk_produce(a.down_w, a.hidden, a.ffn, pos, p, s, nullptr);
            for (int L = 0; L < a.n_layers; ++L) {
                unsigned long long waited = 0, * w = trace ? &waited : nullptr;
                pk_produce(p.layers[L].in_proj, p.ipo, a.hidden, pos, p, s, w);
                pk_produce(p.layers[L].out_proj, a.hidden, p.d, pos, p, s, w);
                if (trace) {
                    unsigned long long * t = trace + ((int64_t) blockIdx.x * a.n_layers + L) * PERSIST_TRACE_FIELDS;
                    t[8] = waited;
                    t[9] = zk_globaltimer_ns();
                }
            }
        }
        return;
    }

    pk_take_registers();
    // The sequence's slot is the step's input, read before the wait.
    const int slot = a.seq_slot[0];
    const int d = p.d, cd = p.cd;
    const bool fold = pk_gated_folds(p);
    unsigned barriers = 0;
    pk_ring_pos pos;
    // Everything of a layer that no other CTA writes (its SSM state and conv rows, written only by its own phases,
    // later; its constants) is loaded a GEMV phase ahead: HBM reads while the ring's copies keep HBM busy take
    // microseconds, so issued after a barrier they would be on the chain. Where they are issued relative to the
    // barriers was measured (runs 83-, 101-103): layer 0's before the launch's wait; layer L + 1's as soon as layer
    // L's state step has used its registers, between barrier B's arrive and its wait (us per layer: after the gated
    // staging 21.6, after the wait 21.2, just before the arrive 21.15, between the two 20.8); the norm weights after
    // the staging that used the previous ones.
    pk_state_regs st;
    pk_head_consts hc{};
    pk_conv_regs cr;
    const int conv_ch = pk_conv_channel(p);
    pk_vec_weights nw;
    auto prefetch = [&](const mamba2_persist_layer & lw) {
        if (b < p.units) {
            hc = pk_load_head(p, lw, b);
            pk_load_state(st, p, lw, slot, b);
        }
        pk_load_conv(cr, p, lw, slot, conv_ch);
    };
    prefetch(p.layers[0]);
    pk_load_vec_weights(nw, p.layers[0].input_norm, a.hidden);
    int o0, o1;  // this CTA's out_proj rows: x[o0, o1) is written by this CTA only
    pk_rows(a.hidden, b, nb, o0, o1);
    if constexpr (kDown) {  // the hybrid block's down GEMV: tr, which the first layer's input norm reads after barrier D
        zk_pdl_wait();  // gu comes from the previous kernel
        ZK_TL_WAITED();
        pk_stage_gelu_mul(p, s);
        pk_consume_mma_bf16x(a.hidden, a.ffn, pos, p, s, [&](int n, int, float v) { a.tr[n] = v; });
        pk_grid_arrive(a.sync);  // D: tr complete
        pk_grid_wait(a.sync, ++barriers * nb);
    }
    for (int L = 0; L < a.n_layers; ++L) {
        // read in place where used (the layer array is never written; held as a copy it took 22 registers across the
        // layer and the code around the GEMV loops spilled)
        const mamba2_persist_layer & lw = p.layers[L];
        unsigned long long waited = 0, * wt = trace && tid == 0 ? &waited : nullptr;
        unsigned long long * marks = wt ? trace + ((int64_t) blockIdx.x * a.n_layers + L) * PERSIST_TRACE_FIELDS : nullptr;
        PK_TRACE(L, 0);
        if (L == 0) {
            if constexpr (!kDown) {
                zk_pdl_wait();  // x and tr come from the previous kernels
                ZK_TL_WAITED();
            }
        } else {
            pk_grid_wait(a.sync, barriers * nb);  // C: x complete
        }
        if (L == a.n_layers - 1) ZK_TL_MARK(1);
        PK_TRACE(L, 1);
        pk_store_conv(cr, s, conv_ch);  // read by in_proj's end, after pk_stage_rmsnorm's barrier
        pk_stage_rmsnorm(p, s, nw, L == 0 ? a.tr : nullptr);
        pk_load_vec_weights(nw, lw.norm, d);  // the gated norm's, in flight during in_proj

        // in_proj (+ conv). Before barrier A only what the state step reads: z and dt into zx, the conv's output into
        // xbc (xBC before the conv is read by no one); barrier A's release waits for every store before it. The conv
        // state (this thread's row at most: pk_plan) is stored after the arrive: only the next step reads it.
        float * conv_state = lw.conv_state + (int64_t) slot * 3 * cd;  // [3, cd]
        int conv_c = -1;
        float conv_st1 = 0.0f, conv_st2 = 0.0f, conv_in = 0.0f;
        pk_gemv(p.ipo, a.hidden, pos, p, s, wt, nullptr, marks ? marks + 11 : nullptr, [&](int n, int j, float v) {
            const int c = n - d;
            if (c >= 0 && c < cd) {
                const float * f = s.conv + j * PK_CONV_FIELDS;
                const float acc = f[7] + f[3] * f[0] + f[4] * f[1] + f[5] * f[2] + f[6] * v;
                a.xbc[c] = zk_silu(acc);
                conv_c = c;
                conv_st1 = f[1];
                conv_st2 = f[2];
                conv_in = v;
            } else {
                a.zx[n] = v;  // z | dt
            }
        });
        PK_TRACE(L, 2);
        pk_grid_arrive(a.sync);  // A: zx, xbc complete
        if (conv_c >= 0) {
            conv_state[conv_c] = conv_st1;
            conv_state[cd + conv_c] = conv_st2;
            conv_state[2 * cd + conv_c] = conv_in;
        }
        pk_grid_wait(a.sync, ++barriers * nb);
        PK_TRACE(L, 3);

        for (int u = b; u < p.units; u += nb) {
            if (u != b) {
                pk_load_state(st, p, lw, slot, u);
                hc = pk_load_head(p, lw, u);
            }
            pk_state_unit(st, p, s, lw, slot, u, hc);
        }
        PK_TRACE(L, 4);
        pk_grid_arrive(a.sync);  // B: y, gsq complete
        if (L + 1 < a.n_layers) prefetch(p.layers[L + 1]);  // in flight during the staging and out_proj
        if (tid < o1 - o0) s.xres[tid] = __ldcg(a.x + o0 + tid);
        pk_grid_wait(a.sync, ++barriers * nb);
        PK_TRACE(L, 5);
        if (L == a.n_layers - 1) zk_pdl_trigger();  // every CTA is resident and past its last barrier

        pk_stage_gated(p, s, nw, fold);
        PK_TRACE(L, 10);
        if (L + 1 < a.n_layers) pk_load_vec_weights(nw, p.layers[L + 1].input_norm, a.hidden);
        PK_TRACE(L, 15);
        pk_gemv(a.hidden, d, pos, p, s, wt, fold ? s.gscale : nullptr, marks ? marks + 13 : nullptr,
                [&](int n, int j, float v) { a.x[n] = s.xres[j] + v; });
        PK_TRACE(L, 6);
        if (L == 0) ZK_TL_MARK(0);
        if (wt) trace[((int64_t) blockIdx.x * a.n_layers + L) * PERSIST_TRACE_FIELDS + 7] = waited;
        if (L + 1 < a.n_layers) {
            pk_grid_arrive(a.sync);  // C: x complete (waited for after the next layer's loads)
            ++barriers;
        }
    }

    // The last CTA out resets the counters for the next launch (every CTA has left its last barrier by then).
    pk_sync();
    ZK_TL_END_SYNCED(ZK_TL_PERSIST);  // the producer warpgroup has left: no __syncthreads
    if (tid == 0) {
        __threadfence();
        if (atomicAdd(a.sync + 1, 1u) == (unsigned) nb - 1) {
            a.sync[0] = 0;
            a.sync[1] = 0;
        }
    }
}

bool pk_plan(pk_params & p, const mamba2_persist_args & a, int n_sm) {
    const int H = a.hidden, P = a.head_dim, N = a.d_state, G = a.n_groups, nh = a.n_heads;
    if (a.n_layers < 1 || a.n_layers > PERSIST_MAX_LAYERS || !a.layers) return false;
    if (!a.x || !a.zx || !a.xbc || !a.y || !a.gsq || !a.sync || !a.seq_slot) return false;
    if (H <= 0 || P <= 0 || N <= 0 || G <= 0 || G > PK_MAX_GROUPS || nh <= 0 || nh % G != 0) return false;
    p.a = a;
    p.a.layers = nullptr;
    for (int L = 0; L < a.n_layers; ++L) p.layers[L] = a.layers[L];
    p.d = nh * P;
    p.cd = p.d + 2 * G * N;
    p.ipo = p.d + p.cd + nh;
    if ((int64_t) (p.ipo > H ? p.ipo : H) * n_sm >= ((int64_t) 1 << 32)) return false;  // pk_rows in 32 bits
    const int group = p.d / G;
    // 16-byte rows and float4 staging; rows of at most one slot; staged vectors of at most 8192 elements
    if (H % 8 != 0 || p.d % 8 != 0 || group % 4 != 0 || N % 4 != 0) return false;
    if (pk_rows_per_slot(H) < 1 || pk_rows_per_slot(p.d) < 1) return false;
    if (H > 4 * PK_CONSUMERS * PK_MAX_VEC4 || p.d > 4 * PK_CONSUMERS * PK_MAX_VEC4) return false;
    // each matrix in the tensor-core form, or K small enough for the FMA form
    for (const int K : {H, p.d}) {
        if (pk_mma_segments(K) == 0 && K > 8 * PK_CONSUMERS * PK_MAX_CPL) return false;
    }
    p.gw = N / 4;
    if (p.gw > ZK_WARP_SIZE || (p.gw & (p.gw - 1)) != 0) return false;
    const int nb = n_sm;
    if ((H + nb - 1) / nb > PK_XRES_FLOATS) return false;
    p.split = 1;
    for (int sp = 4; sp > 1; sp /= 2) {
        if (P % sp == 0 && nh * sp <= nb) { p.split = sp; break; }
    }
    p.units = nh * p.split;
    if (p.units / G > ZK_WARP_SIZE * PK_MAX_GSQ) return false;  // a group's gsq terms: PK_MAX_GSQ per lane
    p.unit_rows = P / p.split;
    if (p.unit_rows > PK_MAX_PASSES * (PK_CONSUMERS / p.gw)) return false;
    p.max_in_rows = (p.ipo + nb - 1) / nb;
    if (p.max_in_rows > PK_CONSUMERS) return false;  // a conv row per consumer thread at most (pk_conv_regs)
    p.down = a.down_w != nullptr;
    if (p.down) {  // bf16 inputs staged as float4 pairs; the tensor-core form with up to two groups per warp
        const int F = a.ffn;
        if (!a.gu || !a.tr || F <= 0 || F % 8 != 0 || F > 4 * PK_CONSUMERS * PK_MAX_VEC4) return false;
        if (pk_rows_per_slot(F) < 1 || pk_mma_segments(F, 2 * PK_CONSUMER_WARPS) == 0) return false;
    }
    p.xs_floats = std::max(std::max(H, p.d), p.down ? (a.ffn + 1) / 2 : 0);
    p.n_slots = PK_MAX_SLOTS;
    int max_smem = 0, dev = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    while (p.n_slots > 2 && pk_smem_bytes(p) > (size_t) max_smem) --p.n_slots;
    return pk_smem_bytes(p) <= (size_t) max_smem;
}

}  // namespace

static const char * pk_refusal = "";

const char * mamba2_decode_persistent_refusal() { return pk_refusal; }

bool mamba2_decode_persistent(const mamba2_persist_args & a, cudaStream_t stream) {
    auto refuse = [](const char * why) {
        pk_refusal = why;
        return false;
    };
    const zk_device_facts & dev = zk_device();
    if (dev.major < 9) return refuse("compute capability below 9.0");  // bulk copies, mbarrier transaction counts
    pk_params p{};
    if (!pk_plan(p, a, dev.n_sm)) return refuse("dims or buffers it does not take");
    const size_t smem = pk_smem_bytes(p);
    // Every CTA must be resident at once (grid barriers): one per SM, and the launch refused if one does not fit.
    constexpr int kMaxDevices = 64;
    static size_t smem_set[kMaxDevices] = {};  // the attribute is per device
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) return refuse("no device");
    auto * const kernel = a.trace ? (p.down ? mamba2_decode_persistent_kernel<true, true> : mamba2_decode_persistent_kernel<true, false>)
                                  : (p.down ? mamba2_decode_persistent_kernel<false, true> : mamba2_decode_persistent_kernel<false, false>);
    if (smem > smem_set[device]) {
        for (auto * k : {mamba2_decode_persistent_kernel<true, false>, mamba2_decode_persistent_kernel<false, false>,
                         mamba2_decode_persistent_kernel<true, true>, mamba2_decode_persistent_kernel<false, true>}) {
            if (cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) smem) != cudaSuccess) {
                cudaGetLastError();
                return refuse("shared memory attribute refused");
            }
        }
        smem_set[device] = smem;
    }
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, PK_THREADS, smem) != cudaSuccess || per_sm < 1) {
        cudaGetLastError();
        return refuse("a CTA does not fit on an SM");
    }
    if (zk_launch_coresident(kernel, dim3(dev.n_sm), dim3(PK_THREADS), smem, stream, p) != cudaSuccess) {
        cudaGetLastError();
        return refuse("launch failed");
    }
    pk_refusal = "";
    return true;
}
