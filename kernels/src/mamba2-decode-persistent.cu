// A run of consecutive Mamba2 layers of a batch-1 decode step in one persistent launch (sm_90+).
//
// Why: at batch 1 every weight byte is read once per step, so the step is a stream of 3.5 GB (1.2B) that the GPU
// should read at full bandwidth. As separate launches (in_proj, the state step, out_proj per layer) each launch's
// CTAs can only ask for their weights once the previous launch's CTAs leave, and the memory system idles at every
// edge (kernels/NOTES.md run 37: a 1.2B Mamba2 layer takes ~29 us for ~12 us of weights). Here one CTA per SM owns
// a ring of shared-memory slots that a producer warp keeps filling with the SM's share of the weights, in the
// order the layers use them, with bulk copies (cp.async.bulk: no registers, no L1). The copies do not wait for
// anything but a free slot, so layer L+1's in_proj rows are already arriving while layer L's state step and
// out_proj run. The data dependencies inside the run are grid barriers (all CTAs are resident: one per SM).
//
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
// A row's dot product: each consumer thread sums its 8-element chunks in order, then a warp tree, then the 8
// warps in order: the same bits on every run. The SSM state is fp32, as in the other decode paths.
#include <cstdint>

#include "../include/zamba2-common.cuh"
#include "../include/zamba2-mma.cuh"

namespace {

constexpr int PK_CONSUMER_WARPS = 8;
constexpr int PK_CONSUMERS = PK_CONSUMER_WARPS * ZK_WARP_SIZE;  // 256 threads compute
constexpr int PK_THREADS = PK_CONSUMERS + ZK_WARP_SIZE;         // + one producer warp (its lane 0 copies)
constexpr int PK_SLOT_BYTES = 16384;                            // one ring slot: whole weight rows
constexpr int PK_MAX_SLOTS = 12;
constexpr int PK_MAX_ROWS = 8;       // rows per slot (fewer when a row is over 2 KB)
constexpr int PK_MAX_PASSES = 4;     // state rows per thread
constexpr int PK_MAX_VEC4 = 8;       // float4 per thread of a staged input vector: <= 8192 elements
constexpr int PK_SLOT_TRACE = 256;  // slots of CTA 0 the bench's trace records
constexpr int PK_MMA_MAX_STEPS = 2;  // 32-wide k steps of one segment per warp (segments <= 512)
constexpr int PK_CONV_FIELDS = 8;    // per conv row in shared memory: st0, st1, st2, w0..w3, bias

struct pk_params {
    mamba2_persist_args a;
    int d, cd, ipo;          // d_inner, conv channels (d + 2GN), in_proj rows (d + cd + nh)
    int split, units, unit_rows;  // state units: each head split into `split` units of unit_rows rows
    int gw;                  // threads per state row (d_state / 4)
    int n_slots;             // ring slots
    int max_in_rows;         // most in_proj rows of one CTA (conv staging)
    int xs_floats;           // max(H, d): the staged input vector
};

// Shared memory, in order: ring [n_slots][16 KB] | xs [xs_floats] | conv [max_in_rows][8] | xres [32] |
// red [rows][8 warps] | scratch [8] | ginv [8] | full [n_slots] | empty [n_slots] (mbarriers).
struct pk_smem {
    unsigned char * ring;
    float *xs, *conv, *xres, *red, *scratch, *ginv;
    uint64_t *full, *empty;
};

constexpr int PK_XRES_FLOATS = 32;  // out_proj rows of one CTA (H / nb <= 32)

// Rows of partial sums (8 per warp-segment pair): the CTA's rows of either matrix, times 8 segments.
__host__ __device__ inline int pk_red_rows(const pk_params & p) {
    return 8 * (p.max_in_rows > PK_XRES_FLOATS ? p.max_in_rows : PK_XRES_FLOATS);
}

__host__ __device__ inline size_t pk_smem_bytes(const pk_params & p) {
    size_t at = (size_t) p.n_slots * PK_SLOT_BYTES;
    at += (size_t) p.xs_floats * 4;
    at += (size_t) p.max_in_rows * PK_CONV_FIELDS * 4;
    at += PK_XRES_FLOATS * 4 + (size_t) pk_red_rows(p) * PK_CONSUMER_WARPS * 4 + 8 * 4 + 8 * 4;
    at = (at + 7) / 8 * 8;
    return at + (size_t) 2 * p.n_slots * 8;
}

__device__ inline pk_smem pk_carve(unsigned char * base, const pk_params & p) {
    pk_smem s;
    s.ring = base;
    size_t at = (size_t) p.n_slots * PK_SLOT_BYTES;
    s.xs = reinterpret_cast<float *>(base + at);
    at += (size_t) p.xs_floats * 4;
    s.conv = reinterpret_cast<float *>(base + at);
    at += (size_t) p.max_in_rows * PK_CONV_FIELDS * 4;
    s.xres = reinterpret_cast<float *>(base + at);
    at += PK_XRES_FLOATS * 4;
    s.red = reinterpret_cast<float *>(base + at);
    at += (size_t) pk_red_rows(p) * PK_CONSUMER_WARPS * 4;
    s.scratch = reinterpret_cast<float *>(base + at);
    at += 8 * 4;
    s.ginv = reinterpret_cast<float *>(base + at);
    at += 8 * 4;
    at = (at + 7) / 8 * 8;
    s.full = reinterpret_cast<uint64_t *>(base + at);
    s.empty = s.full + p.n_slots;
    return s;
}

// Rows [r0, r1) of an N-row matrix owned by CTA b of nb.
__device__ inline void pk_rows(int N, int b, int nb, int & r0, int & r1) {
    r0 = (int) ((int64_t) N * b / nb);
    r1 = (int) ((int64_t) N * (b + 1) / nb);
}
// Rows of K bf16 per ring slot.
__host__ __device__ inline int pk_rows_per_slot(int K) {
    const int r = PK_SLOT_BYTES / (2 * K);
    return r < PK_MAX_ROWS ? r : PK_MAX_ROWS;
}

// Tensor-core form of a slot (pk_consume_mma): the slot's R rows x S segments of K / S are the MMA's 16 A rows, the S
// segments of x its B columns. S: the most segments <= 8 with R S <= 16 and K / S a multiple of 32; 0: no such S
// (small K: the FMA form).
__host__ __device__ inline int pk_mma_segments(int K) {
    const int R = pk_rows_per_slot(K);
    for (int S = 8; S >= 1; --S) {
        if (R * S <= 16 && K % (32 * S) == 0 && K / S / 32 <= 8 * PK_MMA_MAX_STEPS) return S;
    }
    return 0;
}

// ---- mbarriers and bulk copies (sm_90) ----------------------------------------------------------

[[maybe_unused]] __device__ inline uint32_t pk_saddr(const void * p) { return (uint32_t) __cvta_generic_to_shared(p); }

__device__ inline void pk_mbar_init(uint64_t * bar, uint32_t count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(pk_saddr(bar)), "r"(count) : "memory");
#endif
}
__device__ inline void pk_mbar_wait(uint64_t * bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    uint32_t done = 0;
    do {
        asm volatile("{\n\t.reg .pred q;\n\tmbarrier.try_wait.parity.shared::cta.b64 q, [%1], %2;\n\tselp.u32 %0, 1, 0, q;\n\t}"
                     : "=r"(done) : "r"(pk_saddr(bar)), "r"(parity) : "memory");
    } while (!done);
#endif
}
__device__ inline void pk_mbar_arrive(uint64_t * bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(pk_saddr(bar)) : "memory");
#endif
}
// bytes (a multiple of 16, both addresses 16-byte aligned) from global src into shared dst; full counts them.
__device__ inline void pk_bulk_copy(void * dst, const void * src, uint32_t bytes, uint64_t * full) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(pk_saddr(full)), "r"(bytes) : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                 ::"r"(pk_saddr(dst)), "l"(src), "r"(bytes), "r"(pk_saddr(full)) : "memory");
#endif
}

// ---- consumer-side synchronization ---------------------------------------------------------------

// The 8 consumer warps only (the producer warp never joins after the start).
__device__ inline void pk_sync() { asm volatile("bar.sync 1, %0;" ::"n"(PK_CONSUMERS) : "memory"); }

// Sum over the consumer threads in a fixed order; every consumer gets it.
__device__ inline float pk_block_sum(float v, float * scratch) {
    v = zk_warp_sum(v);
    pk_sync();  // scratch may still be read by the previous call
    if (threadIdx.x % ZK_WARP_SIZE == 0) scratch[threadIdx.x / ZK_WARP_SIZE] = v;
    pk_sync();
    float t = 0.0f;
#pragma unroll
    for (int w = 0; w < PK_CONSUMER_WARPS; ++w) t += scratch[w];
    return t;
}

// A grid barrier in two halves, so that work that does not depend on it runs between them. Arrive: the CTA's
// writes so far are published (the block barrier orders them before thread 0's release). Wait: returns when all nb
// CTAs have arrived target / nb times; their writes are then visible (read them with __ldcg: L1 is not coherent
// across SMs).
__device__ inline void pk_grid_arrive(unsigned * counter) {
    pk_sync();
    if (threadIdx.x == 0) {
        __threadfence();
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(counter) : "memory");
    }
}
__device__ inline void pk_grid_wait(const unsigned * counter, unsigned target) {
    if (threadIdx.x == 0) {
        unsigned seen = 0;
        do {
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(counter) : "memory");
        } while (seen < target);
        __threadfence();
    }
    pk_sync();
}

// ---- the phase trace (the bench only: a.trace null otherwise) ----------------------------------------
#define PK_TRACE(L, k)                                                                                       \
    do {                                                                                                     \
        if (a.trace && threadIdx.x == 0)                                                                    \
            a.trace[((int64_t) blockIdx.x * a.n_layers + (L)) * PERSIST_TRACE_FIELDS + (k)] = zk_globaltimer_ns(); \
    } while (0)

// ---- the ring ----------------------------------------------------------------------------------------

// Where the next copy goes (producer) or the next slot is read (consumer): slot, the parity of its current use, and
// the count of slots so far (the bench's slot trace).
struct pk_ring_pos {
    int slot = 0, fill = 0;
    uint32_t phase = 0;
    __device__ void advance(int n_slots) {
        ++fill;
        if (++slot == n_slots) {
            slot = 0;
            phase ^= 1;
        }
    }
};

// Producer: the CTA's rows of every weight matrix in the order the consumers use them, one slot per copy.
__device__ inline void pk_produce(const bf16 * w, int N, int K, pk_ring_pos & pos, const pk_params & p, const pk_smem & s,
                                  unsigned long long * waited) {
    int r0, r1;
    pk_rows(N, blockIdx.x, gridDim.x, r0, r1);
    const int R = pk_rows_per_slot(K);
    for (int r = r0; r < r1; r += R, pos.advance(p.n_slots)) {
        const int nr = min(R, r1 - r), slot = pos.slot;
        const unsigned long long t0 = waited ? zk_globaltimer_ns() : 0;
        pk_mbar_wait(&s.empty[slot], pos.phase ^ 1);  // a fresh barrier's "previous phase" counts as complete
        if (waited) *waited += zk_globaltimer_ns() - t0;
        pk_bulk_copy(s.ring + (size_t) slot * PK_SLOT_BYTES, w + (int64_t) r * K, (uint32_t) (nr * K * 2), &s.full[slot]);
    }
}

// 8 bf16 weights . 8 fp32 inputs: two chains of 4 (half the dependent latency), then their sum.
__device__ inline float pk_dot8(const uint4 & w, const float4 & x0, const float4 & x1) {
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&w.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&w.y));
    const float2 c = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&w.z));
    const float2 d = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&w.w));
    float t0 = a.x * x0.x, t1 = c.x * x1.x;
    t0 = fmaf(a.y, x0.y, t0);
    t1 = fmaf(c.y, x1.y, t1);
    t0 = fmaf(b.x, x0.z, t0);
    t1 = fmaf(d.x, x1.z, t1);
    t0 = fmaf(b.y, x0.w, t0);
    t1 = fmaf(d.y, x1.w, t1);
    return t0 + t1;
}

// fp32 -> bf16 hi + bf16 lo (lo = bf16(f - hi)), 8 values packed in pairs.
__device__ inline void pk_split8(uint4 & hi, uint4 & lo, const float (&f)[8]) {
    uint32_t h[4], l[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) zk_split2(h[i], l[i], f[2 * i], f[2 * i + 1]);
    hi = make_uint4(h[0], h[1], h[2], h[3]);
    lo = make_uint4(l[0], l[1], l[2], l[3]);
}

// Consumers, tensor-core form: as pk_consume (same out, same slots), for K with pk_mma_segments(K) = S > 0.
// A slot of R rows is one m16n8k16 A operand per 32-wide k step: A row m = r S + s is row r over segment s
// (k in [s K / S, (s + 1) K / S)), B column n is x over segment n, so D[m][s] is row r's partial dot product over
// the step's part of segment s; the other columns are discarded. Lane (g, t) loads 8 consecutive k at 8t of the step
// for A rows g and g + 8 (the k order inside an MMA is free as long as A and B agree, as in skinny_gemm), and x as
// bf16 hi + lo (fp32-grade products). Warp w takes steps w, w + 8, .. of every segment: its B fragments stay in
// registers for the phase. Partials go to red[(row S + s) 8 + warp]; the end sums them in order.
template <typename Out>
__device__ inline void pk_consume_mma(int N, int K, pk_ring_pos & pos, const pk_params & p, const pk_smem & s,
                                      unsigned long long * waited, Out && out) {
    int r0, r1;
    pk_rows(N, blockIdx.x, gridDim.x, r0, r1);
    const int R = pk_rows_per_slot(K), S = pk_mma_segments(K), seg = K / S, steps = seg / 32;
    const int tid = threadIdx.x, warp = tid / ZK_WARP_SIZE, lane = tid % ZK_WARP_SIZE, g = lane / 4, t = lane % 4;
    const int n_steps = (steps - warp + PK_CONSUMER_WARPS - 1) / PK_CONSUMER_WARPS;  // this warp's (uniform)
    // B: x of segment g at this warp's steps, hi and lo (zero for columns past S)
    uint4 bh[PK_MMA_MAX_STEPS], bl[PK_MMA_MAX_STEPS];
#pragma unroll
    for (int i = 0; i < PK_MMA_MAX_STEPS; ++i) {
        bh[i] = bl[i] = make_uint4(0, 0, 0, 0);
        if (i < n_steps && g < S) {
            const float * xp = s.xs + g * seg + (warp + PK_CONSUMER_WARPS * i) * 32 + 8 * t;
            float f[8];
#pragma unroll
            for (int e = 0; e < 8; ++e) f[e] = xp[e];
            pk_split8(bh[i], bl[i], f);
        }
    }
    // A rows of this lane: m = g and g + 8 -> (row, segment); byte offsets within a slot (-1: no such row)
    const int ma = g, mb = g + 8;
    const int ra = ma / S, sa = ma % S, rb = mb / S, sb = mb % S;
    const int offa = ma < R * S ? ra * K * 2 + (sa * seg + 8 * t) * 2 : -1;
    const int offb = mb < R * S ? rb * K * 2 + (sb * seg + 8 * t) * 2 : -1;
    for (int r = r0; r < r1; r += R, pos.advance(p.n_slots)) {
        const int nr = min(R, r1 - r), slot = pos.slot, fill = pos.fill;
        const unsigned long long t0 = waited ? zk_globaltimer_ns() : 0;
        pk_mbar_wait(&s.full[slot], pos.phase);
        if (waited) *waited += zk_globaltimer_ns() - t0;
        unsigned long long * st = waited && blockIdx.x == 0 && fill < PK_SLOT_TRACE
                                      ? p.a.trace + (int64_t) gridDim.x * p.a.n_layers * PERSIST_TRACE_FIELDS + fill * 4 : nullptr;
        if (st) { st[0] = t0; st[1] = zk_globaltimer_ns(); }
        const unsigned char * base = s.ring + (size_t) slot * PK_SLOT_BYTES;
        const bool va = offa >= 0 && ra < nr, vb = offb >= 0 && rb < nr;
        uint4 wa[PK_MMA_MAX_STEPS], wb[PK_MMA_MAX_STEPS];
#pragma unroll
        for (int i = 0; i < PK_MMA_MAX_STEPS; ++i) {  // the slot's loads first, then the MMAs
            wa[i] = wb[i] = make_uint4(0, 0, 0, 0);
            if (i >= n_steps) break;
            const int kb = (warp + PK_CONSUMER_WARPS * i) * 64;  // step's byte offset within a segment
            if (va) wa[i] = *reinterpret_cast<const uint4 *>(base + offa + kb);
            if (vb) wb[i] = *reinterpret_cast<const uint4 *>(base + offb + kb);
        }
        // four accumulators (step parity x hi / lo): chains of <= 2 dependent MMAs, summed in a fixed order
        float ch[2][4] = {}, cl[2][4] = {};
#pragma unroll
        for (int i = 0; i < PK_MMA_MAX_STEPS; ++i) {
            if (i >= n_steps) break;
            const uint32_t a03[4] = {wa[i].x, wb[i].x, wa[i].y, wb[i].y};  // k slots <- k+0..3
            const uint32_t a47[4] = {wa[i].z, wb[i].z, wa[i].w, wb[i].w};  // k slots <- k+4..7
            zk_mma_bf16(cl[i & 1], a03, bl[i].x, bl[i].y);
            zk_mma_bf16(ch[i & 1], a03, bh[i].x, bh[i].y);
            zk_mma_bf16(cl[i & 1], a47, bl[i].z, bl[i].w);
            zk_mma_bf16(ch[i & 1], a47, bh[i].z, bh[i].w);
        }
        float c[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) c[e] = (cl[0][e] + cl[1][e]) + (ch[0][e] + ch[1][e]);
        __syncwarp();
        if (lane == 0) pk_mbar_arrive(&s.empty[slot]);  // this warp is done reading the slot
        // D[m][s(m)]: row g's column sa is c0 (2t) or c1 (2t + 1) of lane t = sa / 2; row g + 8's likewise
        if (va && sa / 2 == t) s.red[(((r - r0) + ra) * S + sa) * PK_CONSUMER_WARPS + warp] = sa & 1 ? c[1] : c[0];
        if (vb && sb / 2 == t) s.red[(((r - r0) + rb) * S + sb) * PK_CONSUMER_WARPS + warp] = sb & 1 ? c[3] : c[2];
        if (st) { st[2] = zk_globaltimer_ns(); st[3] = st[2]; }
    }
    pk_sync();
    for (int j = tid; j < r1 - r0; j += PK_CONSUMERS) {
        float v = 0.0f;
        for (int q = 0; q < S; ++q) {
#pragma unroll
            for (int w = 0; w < PK_CONSUMER_WARPS; ++w) {
                // warps without a step of this segment wrote nothing: only warps < steps
                if (w < steps) v += s.red[(j * S + q) * PK_CONSUMER_WARPS + w];
            }
        }
        out(r0 + j, j, v);
    }
}

// The sums over a warp of 8 values per lane, each in a fixed order (a transposing tree: 9 shuffles, not 40). Returns,
// in lanes with lane % 4 == 0, the sum of v[row] for row = 4 (lane / 16 % 2) + 2 (lane / 8 % 2) + lane / 4 % 2.
__device__ inline float pk_warp_sum8(const float (&v)[PK_MAX_ROWS], int lane) {
    const bool b4 = lane & 16, b3 = lane & 8, b2 = lane & 4;
    float h[4], q[2];
#pragma unroll
    for (int i = 0; i < 4; ++i) h[i] = (b4 ? v[i + 4] : v[i]) + __shfl_xor_sync(0xffffffffu, b4 ? v[i] : v[i + 4], 16);
#pragma unroll
    for (int i = 0; i < 2; ++i) q[i] = (b3 ? h[i + 2] : h[i]) + __shfl_xor_sync(0xffffffffu, b3 ? h[i] : h[i + 2], 8);
    float t = (b2 ? q[1] : q[0]) + __shfl_xor_sync(0xffffffffu, b2 ? q[0] : q[1], 4);
    t += __shfl_xor_sync(0xffffffffu, t, 2);
    return t + __shfl_xor_sync(0xffffffffu, t, 1);
}

constexpr int PK_MAX_CPL = 1;  // 8-element chunks per lane of one row in the FMA form: K <= 2048

// Consumers: y[n] = W[n] . xs for the CTA's rows n of an N x K matrix; out(n, j, v) with j the row's index within the
// CTA's rows, called once per row at the end (one thread per row).
// Warp w owns the same K range of every row (lane: chunks (w cpl + i) 32 + lane), so its inputs stay in registers
// for the whole phase and the warps never wait for each other: each reduces its partial dot products over its lanes
// and writes them to red[row][w]; the 8 partials of a row are summed in order at the end. (The first form, a block
// barrier and a block reduction per slot with the inputs read from shared memory, took ~1 us per 16 KB slot.)
template <typename Out>
__device__ inline void pk_consume(int N, int K, pk_ring_pos & pos, const pk_params & p, const pk_smem & s,
                                  unsigned long long * waited, Out && out) {
    int r0, r1;
    pk_rows(N, blockIdx.x, gridDim.x, r0, r1);
    const int R = pk_rows_per_slot(K), n_chunks = K / 8, cpl = (n_chunks + PK_CONSUMERS - 1) / PK_CONSUMERS;
    const int tid = threadIdx.x, warp = tid / ZK_WARP_SIZE, lane = tid % ZK_WARP_SIZE;
    const float4 * xs4 = reinterpret_cast<const float4 *>(s.xs);
    float4 xr[PK_MAX_CPL][2];  // this lane's inputs
    int cix[PK_MAX_CPL];       // and their chunk indices (-1: none)
#pragma unroll
    for (int i = 0; i < PK_MAX_CPL; ++i) {
        const int c = (warp * cpl + i) * ZK_WARP_SIZE + lane;
        cix[i] = i < cpl && c < n_chunks ? c : -1;
        xr[i][0] = cix[i] >= 0 ? xs4[2 * c] : make_float4(0.f, 0.f, 0.f, 0.f);
        xr[i][1] = cix[i] >= 0 ? xs4[2 * c + 1] : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    for (int r = r0; r < r1; r += R, pos.advance(p.n_slots)) {
        const int nr = min(R, r1 - r), slot = pos.slot, fill = pos.fill;
        const unsigned long long t0 = waited ? zk_globaltimer_ns() : 0;
        pk_mbar_wait(&s.full[slot], pos.phase);
        if (waited) *waited += zk_globaltimer_ns() - t0;
        // the bench's per-slot trace of CTA 0: after the slot's trace fields, [fill][4] ns
        unsigned long long * st = waited && blockIdx.x == 0 && fill < PK_SLOT_TRACE
                                      ? p.a.trace + (int64_t) gridDim.x * p.a.n_layers * PERSIST_TRACE_FIELDS + fill * 4 : nullptr;
        if (st) { st[0] = t0; st[1] = zk_globaltimer_ns(); }
        const unsigned char * base = s.ring + (size_t) slot * PK_SLOT_BYTES;
        float acc[PK_MAX_ROWS];
#pragma unroll
        for (int i = 0; i < PK_MAX_ROWS; ++i) acc[i] = 0.0f;
        // per chunk of this lane: the slot's rows loaded together, then used (loads behind their uses would wait one
        // shared-memory round trip each); nr and cpl are the same in every lane, so the guards are uniform
#pragma unroll
        for (int q = 0; q < PK_MAX_CPL; ++q) {
            if (q >= cpl) break;
            const int c = cix[q] >= 0 ? cix[q] : 0;  // lanes past K: inputs 0
            uint4 w[PK_MAX_ROWS];
#pragma unroll
            for (int i = 0; i < PK_MAX_ROWS; ++i) {
                if (i < nr) w[i] = reinterpret_cast<const uint4 *>(base + (size_t) i * K * 2)[c];  // row i: [K] bf16
            }
#pragma unroll
            for (int i = 0; i < PK_MAX_ROWS; ++i) {
                if (i < nr) acc[i] += pk_dot8(w[i], xr[q][0], xr[q][1]);
            }
        }
        __syncwarp();
        if (lane == 0) pk_mbar_arrive(&s.empty[slot]);  // this warp is done reading the slot
        const float t = pk_warp_sum8(acc, lane);
        const int row = 4 * ((lane >> 4) & 1) + 2 * ((lane >> 3) & 1) + ((lane >> 2) & 1);
        if ((lane & 3) == 0 && row < nr) s.red[(r - r0 + row) * PK_CONSUMER_WARPS + warp] = t;
        if (st) { st[2] = zk_globaltimer_ns(); st[3] = st[2]; }
    }
    pk_sync();
    for (int j = tid; j < r1 - r0; j += PK_CONSUMERS) {
        float v = 0.0f;
#pragma unroll
        for (int w = 0; w < PK_CONSUMER_WARPS; ++w) v += s.red[j * PK_CONSUMER_WARPS + w];
        out(r0 + j, j, v);
    }
}

// The CTA's rows of an N x K matrix times xs: tensor cores where K allows, else FMAs.
template <typename Out>
__device__ inline void pk_gemv(int N, int K, pk_ring_pos & pos, const pk_params & p, const pk_smem & s,
                               unsigned long long * waited, Out && out) {
    if (pk_mma_segments(K) > 0) pk_consume_mma(N, K, pos, p, s, waited, out);
    else pk_consume(N, K, pos, p, s, waited, out);
}

// ---- the phases ------------------------------------------------------------------------------------

// Loads v[0..n) of this consumer thread's float4s (k = 4 (tid + 256 i)) with __ldcg.
__device__ inline void pk_load_vec(float4 (&v)[PK_MAX_VEC4], const float * src, int n) {
#pragma unroll
    for (int i = 0; i < PK_MAX_VEC4; ++i) {
        const int k = 4 * ((int) threadIdx.x + PK_CONSUMERS * i);
        v[i] = k < n ? __ldcg(reinterpret_cast<const float4 *>(src + k)) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
}

// in_proj's input: xs = w * (s * rsqrt(mean(s^2) + eps)), s = x (+ tr).
__device__ inline void pk_stage_rmsnorm(const pk_params & p, const pk_smem & s, const bf16 * w, const float * tr) {
    const int H = p.a.hidden;
    float4 v[PK_MAX_VEC4];
    pk_load_vec(v, p.a.x, H);
    if (tr) {
        float4 t[PK_MAX_VEC4];
        pk_load_vec(t, tr, H);
#pragma unroll
        for (int i = 0; i < PK_MAX_VEC4; ++i) { v[i].x += t[i].x; v[i].y += t[i].y; v[i].z += t[i].z; v[i].w += t[i].w; }
    }
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < PK_MAX_VEC4; ++i) ss += v[i].x * v[i].x + v[i].y * v[i].y + v[i].z * v[i].z + v[i].w * v[i].w;
    const float inv = rsqrtf(pk_block_sum(ss, s.scratch) / (float) H + p.a.eps);
#pragma unroll
    for (int i = 0; i < PK_MAX_VEC4; ++i) {
        const int k = 4 * ((int) threadIdx.x + PK_CONSUMERS * i);
        if (k >= H) break;
        const float2 w01 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(w + k));
        const float2 w23 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(w + k + 2));
        *reinterpret_cast<float4 *>(s.xs + k) =
            make_float4(w01.x * (v[i].x * inv), w01.y * (v[i].y * inv), w23.x * (v[i].z * inv), w23.y * (v[i].w * inv));
    }
    pk_sync();
}

// The conv operands of the CTA's xBC rows (state of the sequence's slot, weights, bias) into shared memory.
__device__ inline void pk_stage_conv(const pk_params & p, const pk_smem & s, const mamba2_persist_layer & lw, int slot) {
    int r0, r1;
    pk_rows(p.ipo, blockIdx.x, gridDim.x, r0, r1);
    const float * st = lw.conv_state + (int64_t) slot * 3 * p.cd;  // [3, cd]
    for (int j = threadIdx.x; j < r1 - r0; j += PK_CONSUMERS) {
        const int c = r0 + j - p.d;
        if (c < 0 || c >= p.cd) continue;
        float * f = s.conv + j * PK_CONV_FIELDS;
        f[0] = st[c];
        f[1] = st[p.cd + c];
        f[2] = st[2 * p.cd + c];
#pragma unroll
        for (int i = 0; i < 4; ++i) f[3 + i] = zk_to_f32(lw.conv_w[(int64_t) c * 4 + i]);  // w: [cd, 4]
        f[7] = lw.conv_b ? zk_to_f32(lw.conv_b[c]) : 0.0f;
    }
}

// One state unit's rows held by this thread: pass i is row p0 + i (256 / gw) + tid / gw, columns n0..n0+3.
struct pk_state_regs {
    float4 S[PK_MAX_PASSES];
};

__device__ inline float4 * pk_state_ptr(const pk_params & p, const mamba2_persist_layer & lw, int slot, int u, int pass) {
    const int h = u / p.split, rpp = PK_CONSUMERS / p.gw;
    const int row = (u % p.split) * p.unit_rows + pass * rpp + (int) threadIdx.x / p.gw, n0 = ((int) threadIdx.x % p.gw) * 4;
    const int P = p.a.head_dim, N = p.a.d_state;
    return reinterpret_cast<float4 *>(lw.ssm_state + (((int64_t) slot * p.a.n_heads + h) * P + row) * N + n0);  // [slots, nh, P, N]
}

__device__ inline bool pk_pass_valid(const pk_params & p, int pass) {
    return pass * (PK_CONSUMERS / p.gw) + (int) threadIdx.x / p.gw < p.unit_rows;
}

__device__ inline void pk_load_state(pk_state_regs & r, const pk_params & p, const mamba2_persist_layer & lw, int slot, int u) {
#pragma unroll
    for (int i = 0; i < PK_MAX_PASSES; ++i) {
        r.S[i] = make_float4(0.f, 0.f, 0.f, 0.f);
        if (pk_pass_valid(p, i)) r.S[i] = __ldcs(pk_state_ptr(p, lw, slot, u, i));
    }
}

// The state update of unit u (state already in r), y and gsq[u] written.
// The per-head constants of unit u's head: dt_bias, -exp(A_log), D (loaded before the barrier they do not need).
struct pk_head_consts {
    float dt_bias, neg_a, d_skip;
};
__device__ inline pk_head_consts pk_load_head(const pk_params & p, const mamba2_persist_layer & lw, int u) {
    const int h = u / p.split;
    return {lw.dt_bias[h], -expf(lw.a_log[h]), lw.d_skip[h]};
}

__device__ inline void pk_state_unit(pk_state_regs & r, const pk_params & p, const pk_smem & s, const mamba2_persist_layer & lw,
                                     int slot, int u, const pk_head_consts & hc) {
    const mamba2_persist_args & a = p.a;
    const int P = a.head_dim, N = a.d_state, G = a.n_groups, d = p.d, gw = p.gw, rpp = PK_CONSUMERS / gw;
    const int h = u / p.split, g = h / (a.n_heads / G), n0 = ((int) threadIdx.x % gw) * 4;
    const int row0 = (u % p.split) * p.unit_rows + (int) threadIdx.x / gw;
    const float dt = zk_softplus(__ldcg(a.zx + d + p.cd + h) + hc.dt_bias);
    const float dA = expf(dt * hc.neg_a), d_h = hc.d_skip;
    const float4 B = __ldcg(reinterpret_cast<const float4 *>(a.xbc + d + g * N + n0));
    const float4 C = __ldcg(reinterpret_cast<const float4 *>(a.xbc + d + G * N + g * N + n0));
    float xv[PK_MAX_PASSES], zv[PK_MAX_PASSES];
#pragma unroll
    for (int i = 0; i < PK_MAX_PASSES; ++i) {
        const int ch = h * P + row0 + i * rpp;
        const bool ok = pk_pass_valid(p, i);
        xv[i] = ok ? __ldcg(a.xbc + ch) : 0.0f;
        zv[i] = ok && n0 == 0 ? __ldcg(a.zx + ch) : 0.0f;
    }
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < PK_MAX_PASSES; ++i) {
        if (i * rpp >= p.unit_rows) break;  // block-uniform: the shuffles below need every lane
        const bool ok = pk_pass_valid(p, i);
        float4 & S = r.S[i];
        const float dtx = dt * xv[i];
        S.x = S.x * dA + dtx * B.x;
        S.y = S.y * dA + dtx * B.y;
        S.z = S.z * dA + dtx * B.z;
        S.w = S.w * dA + dtx * B.w;
        float acc = S.x * C.x + S.y * C.y + S.z * C.z + S.w * C.w;
        for (int off = gw / 2; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
        if (ok) {
            __stcs(pk_state_ptr(p, lw, slot, u, i), S);
            if (n0 == 0) {
                const float out = (acc + d_h * xv[i]) * zk_silu(zv[i]);
                a.y[h * P + row0 + i * rpp] = out;
                ss += out * out;
            }
        }
    }
    ss = pk_block_sum(ss, s.scratch);
    if (threadIdx.x == 0) a.gsq[u] = ss;
}

// out_proj's input: ys = w * (y * rsqrt(sum of the group's gsq / group + eps)).
__device__ inline void pk_stage_gated(const pk_params & p, const pk_smem & s, const bf16 * w) {
    const mamba2_persist_args & a = p.a;
    const int d = p.d, G = a.n_groups, group = d / G, per = p.units / G;
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE;
    float4 v[PK_MAX_VEC4];
    pk_load_vec(v, a.y, d);
    for (int gi = warp; gi < G; gi += PK_CONSUMER_WARPS) {
        float t = 0.0f;
        for (int c = lane; c < per; c += ZK_WARP_SIZE) t += __ldcg(a.gsq + gi * per + c);
        t = zk_warp_sum(t);
        if (lane == 0) s.ginv[gi] = rsqrtf(t / (float) group + a.gated_eps);
    }
    pk_sync();
#pragma unroll
    for (int i = 0; i < PK_MAX_VEC4; ++i) {
        const int k = 4 * ((int) threadIdx.x + PK_CONSUMERS * i);
        if (k >= d) break;
        const float inv = s.ginv[k / group];  // group % 4 == 0: a float4 lies in one group
        const float2 w01 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(w + k));
        const float2 w23 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(w + k + 2));
        *reinterpret_cast<float4 *>(s.xs + k) =
            make_float4(w01.x * (v[i].x * inv), w01.y * (v[i].y * inv), w23.x * (v[i].z * inv), w23.y * (v[i].w * inv));
    }
    pk_sync();
}

__global__ void __launch_bounds__(PK_THREADS, 1) mamba2_decode_persistent_kernel(const __grid_constant__ pk_params p) {
    extern __shared__ __align__(128) unsigned char pk_dyn[];
    const pk_smem s = pk_carve(pk_dyn, p);
    const mamba2_persist_args & a = p.a;
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

    if (tid >= PK_CONSUMERS) {  // the producer warp: weights are constants, so it never waits for earlier kernels
        if (tid == PK_CONSUMERS) {
            pk_ring_pos pos;
            for (int L = 0; L < a.n_layers; ++L) {
                unsigned long long waited = 0, * w = a.trace ? &waited : nullptr;
                pk_produce(a.layers[L].in_proj, p.ipo, a.hidden, pos, p, s, w);
                pk_produce(a.layers[L].out_proj, a.hidden, p.d, pos, p, s, w);
                if (a.trace) {
                    unsigned long long * t = a.trace + ((int64_t) blockIdx.x * a.n_layers + L) * PERSIST_TRACE_FIELDS;
                    t[8] = waited;
                    t[9] = zk_globaltimer_ns();
                }
            }
        }
        return;
    }

    // The sequence's slot and the pools are the step's (written by earlier steps only), read before the wait.
    // Everything a phase needs that its barrier does not publish (constants, this CTA's own rows of the pools and
    // of x) is loaded between the barrier's arrive and its wait.
    const int slot = a.seq_slot[0];
    const int d = p.d, cd = p.cd;
    unsigned barriers = 0;
    pk_ring_pos pos;
    pk_state_regs st;
    int o0, o1;  // this CTA's out_proj rows: x[o0, o1) is written by this CTA only
    pk_rows(a.hidden, b, nb, o0, o1);
    for (int L = 0; L < a.n_layers; ++L) {
        const mamba2_persist_layer lw = a.layers[L];  // a copy: the stores below cannot alias it
        unsigned long long waited = 0, * wt = a.trace && tid == 0 ? &waited : nullptr;
        PK_TRACE(L, 0);
        pk_stage_conv(p, s, lw, slot);
        pk_head_consts hc{};
        if (b < p.units) hc = pk_load_head(p, lw, b);
        if (L == 0) zk_pdl_wait();  // x and tr come from the previous kernels
        else pk_grid_wait(a.sync, barriers * nb);  // C: x complete
        PK_TRACE(L, 1);
        pk_stage_rmsnorm(p, s, lw.input_norm, L == 0 ? a.tr : nullptr);

        // in_proj (+ conv)
        float * conv_state = lw.conv_state + (int64_t) slot * 3 * cd;  // [3, cd]
        pk_gemv(p.ipo, a.hidden, pos, p, s, wt, [&](int n, int j, float v) {
            a.zx[n] = v;  // z | xBC before the conv | dt
            const int c = n - d;
            if (c >= 0 && c < cd) {
                const float * f = s.conv + j * PK_CONV_FIELDS;
                const float acc = f[7] + f[3] * f[0] + f[4] * f[1] + f[5] * f[2] + f[6] * v;
                a.xbc[c] = zk_silu(acc);
                conv_state[c] = f[1];
                conv_state[cd + c] = f[2];
                conv_state[2 * cd + c] = v;
            }
        });
        PK_TRACE(L, 2);
        pk_grid_arrive(a.sync);  // A: zx, xbc complete
        if (b < p.units) pk_load_state(st, p, lw, slot, b);  // in flight during the wait (not held across in_proj)
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
        if (tid < o1 - o0) s.xres[tid] = __ldcg(a.x + o0 + tid);
        pk_grid_wait(a.sync, ++barriers * nb);
        PK_TRACE(L, 5);
        if (L == a.n_layers - 1) zk_pdl_trigger();  // every CTA is resident and past its last barrier

        pk_stage_gated(p, s, lw.norm);
        pk_gemv(a.hidden, d, pos, p, s, wt, [&](int n, int j, float v) { a.x[n] = s.xres[j] + v; });
        PK_TRACE(L, 6);
        if (wt) a.trace[((int64_t) blockIdx.x * a.n_layers + L) * PERSIST_TRACE_FIELDS + 7] = waited;
        if (L + 1 < a.n_layers) {
            pk_grid_arrive(a.sync);  // C: x complete (waited for after the next layer's loads)
            ++barriers;
        }
    }

    // The last CTA out resets the counters for the next launch (every CTA has left its last barrier by then).
    pk_sync();
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
    if (a.n_layers < 1 || !a.layers || !a.x || !a.zx || !a.xbc || !a.y || !a.gsq || !a.sync || !a.seq_slot) return false;
    if (H <= 0 || P <= 0 || N <= 0 || G <= 0 || nh <= 0 || nh % G != 0) return false;
    p.a = a;
    p.d = nh * P;
    p.cd = p.d + 2 * G * N;
    p.ipo = p.d + p.cd + nh;
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
    p.unit_rows = P / p.split;
    if (p.unit_rows > PK_MAX_PASSES * (PK_CONSUMERS / p.gw)) return false;
    p.max_in_rows = (p.ipo + nb - 1) / nb;
    p.xs_floats = H > p.d ? H : p.d;
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
    if (smem > smem_set[device]) {
        if (cudaFuncSetAttribute(mamba2_decode_persistent_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) smem) != cudaSuccess) {
            cudaGetLastError();
            return refuse("shared memory attribute refused");
        }
        smem_set[device] = smem;
    }
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, mamba2_decode_persistent_kernel, PK_THREADS, smem) != cudaSuccess ||
        per_sm < 1) {
        cudaGetLastError();
        return refuse("a CTA does not fit on an SM");
    }
    if (zk_launch(mamba2_decode_persistent_kernel, dim3(dev.n_sm), dim3(PK_THREADS), smem, stream, p) != cudaSuccess) {
        cudaGetLastError();
        return refuse("launch failed");
    }
    pk_refusal = "";
    return true;
}
