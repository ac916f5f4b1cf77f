// The persistent Mamba2 decode's shared-memory weight ring and its synchronization (mamba2-decode-persistent.cu
// includes this once): launch plan and shared-memory layout, mbarriers and bulk copies, the consumer warps' block and
// grid barriers, and the producer that copies each CTA's weight rows into the ring.
#pragma once

#include <cstdint>

#include "../include/zamba2-common.cuh"

namespace {

constexpr int PK_CONSUMER_WARPS = 8;
constexpr int PK_CONSUMERS = PK_CONSUMER_WARPS * ZK_WARP_SIZE;  // 256 threads compute
// + a producer warpgroup: its first lane copies; its other warps exist so that setmaxnreg can hand the group's
// registers to the consumers (pk_take_registers)
constexpr int PK_THREADS = PK_CONSUMERS + 4 * ZK_WARP_SIZE;
constexpr int PK_PRODUCER_REGS = 40, PK_CONSUMER_REGS = 232;  // per thread: 128 x 40 + 256 x 232 <= 64 K
constexpr int PK_SLOT_BYTES = 16384;                            // one ring slot: whole weight rows
constexpr int PK_MAX_SLOTS = 12;
// Copies the producer keeps in flight at most (runs 87-89, us per layer: no cap 26.4, 6: 26.4, 4: 25.9, 3: 25.0,
// 2: 25.0, 1: 25.6). More queue up behind HBM, and every load and barrier poll of the consumers, all on the chain,
// waits behind them; the ring still fills while the consumers are between GEMVs.
constexpr int PK_IN_FLIGHT = 2;
constexpr int PK_MAX_ROWS = 8;       // rows per slot (fewer when a row is over 2 KB)
constexpr int PK_MAX_PASSES = 4;     // state rows per thread
constexpr int PK_MAX_VEC4 = 8;       // float4 per thread of a staged input vector: <= 8192 elements
constexpr int PK_SLOT_TRACE = 256;  // slots of CTA 0 the bench's trace records
constexpr int PK_CONV_FIELDS = 8;    // per conv row in shared memory: st0, st1, st2, w0..w3, bias
constexpr int PK_MAX_GROUPS = 8;     // n_groups (the gated norm's per-group factors in shared memory)
constexpr int PK_MAX_GSQ = 8;        // gsq terms per lane when a group's sum is taken: <= 256 state units per group

struct pk_params {
    mamba2_persist_args a;  // a.layers: null (a host address)
    // Every layer's pointers, in the launch's parameters (the constant bank), not in an array in global memory: no
    // L2 round trip before the loads through them can issue, and no device copy to keep (runs 94-95: within noise of
    // the array form)
    mamba2_persist_layer layers[PERSIST_MAX_LAYERS];
    int d, cd, ipo;          // d_inner, conv channels (d + 2GN), in_proj rows (d + cd + nh)
    int split, units, unit_rows;  // state units: each head split into `split` units of unit_rows rows
    int gw;                  // threads per state row (d_state / 4)
    int n_slots;             // ring slots
    int max_in_rows;         // most in_proj rows of one CTA (conv staging)
    int xs_floats;           // max(H, d, F / 2): the staged input vector (the down phase's: bf16)
    bool down;               // the run starts with the hybrid block's down GEMV (a.down_w)
};

// Shared memory, in order: ring [n_slots][16 KB] | xs [xs_floats] | conv [max_in_rows][8] | xres [32] |
// red [8 segments][8 warps][rows] | scratch [8] | ginv [8] | gscale [8] | full [n_slots] | empty [n_slots] (mbarriers).
struct pk_smem {
    unsigned char * ring;
    float *xs, *conv, *xres, *red, *scratch, *ginv, *gscale;
    uint64_t *full, *empty;
};

constexpr int PK_XRES_FLOATS = 32;  // out_proj rows of one CTA (H / nb <= 32)

// The partial sums red[(segment 8 + warp) stride + row]: rows innermost, so that the end's per-row sums (one thread
// per row) read consecutive words; stride = the most rows of either matrix one CTA owns, 8 segments x 8 warps of them.
__host__ __device__ inline int pk_red_stride(const pk_params & p) {
    return p.max_in_rows > PK_XRES_FLOATS ? p.max_in_rows : PK_XRES_FLOATS;
}
__host__ __device__ inline int pk_red_rows(const pk_params & p) { return 8 * pk_red_stride(p); }

__host__ __device__ inline size_t pk_smem_bytes(const pk_params & p) {
    size_t at = (size_t) p.n_slots * PK_SLOT_BYTES;
    at += (size_t) p.xs_floats * 4;
    at += (size_t) p.max_in_rows * PK_CONV_FIELDS * 4;
    at += PK_XRES_FLOATS * 4 + (size_t) pk_red_rows(p) * PK_CONSUMER_WARPS * 4 + 8 * 4 + 8 * 4 + 8 * 4;
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
    s.gscale = reinterpret_cast<float *>(base + at);
    at += 8 * 4;
    at = (at + 7) / 8 * 8;
    s.full = reinterpret_cast<uint64_t *>(base + at);
    s.empty = s.full + p.n_slots;
    return s;
}

// Rows [r0, r1) of an N-row matrix owned by CTA b of nb. In 32 bits (N nb < 2^32: pk_plan): a 64-bit division is a
// call with a fast path beside it, and where the two meet ptxas waits on every scoreboard, so on every load in flight
// (run 99: on the next layer's SSM-state loads, a whole HBM round trip before out_proj could start).
__device__ inline void pk_rows(int N, int b, int nb, int & r0, int & r1) {
    r0 = (int) ((unsigned) N * (unsigned) b / (unsigned) nb);
    r1 = (int) ((unsigned) N * (unsigned) (b + 1) / (unsigned) nb);
}
// Rows of K bf16 per ring slot.
__host__ __device__ inline int pk_rows_per_slot(int K) {
    const int r = PK_SLOT_BYTES / (2 * K);
    return r < PK_MAX_ROWS ? r : PK_MAX_ROWS;
}

// Tensor-core form of a slot (pk_consume_mma): the slot's R rows x S segments of K / S are the MMA's 16 A rows, the S
// segments of x its B columns. S: the most segments <= 8 with R S <= 16 and K / S a multiple of 64, of at most
// max_groups groups of 64 (8: one per warp; the down phase's 16: two); 0: no such S (small K: the FMA form).
__host__ __device__ inline int pk_mma_segments(int K, int max_groups = 8) {
    const int R = pk_rows_per_slot(K);
    for (int S = 8; S >= 1; --S) {
        if (R * S <= 16 && K % (64 * S) == 0 && K / S / 64 <= max_groups) return S;
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
    // a phase that has completed already (a resident slot): the non-blocking test, then the potentially blocking
    // try_wait only when it has not
    asm volatile("{\n\t.reg .pred q;\n\tmbarrier.test_wait.parity.shared::cta.b64 q, [%1], %2;\n\tselp.u32 %0, 1, 0, q;\n\t}"
                 : "=r"(done) : "r"(pk_saddr(bar)), "r"(parity) : "memory");
    while (!done) {
        asm volatile("{\n\t.reg .pred q;\n\tmbarrier.try_wait.parity.shared::cta.b64 q, [%1], %2;\n\tselp.u32 %0, 1, 0, q;\n\t}"
                     : "=r"(done) : "r"(pk_saddr(bar)), "r"(parity) : "memory");
    }
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

// ---- registers between the warpgroups (sm_90a) ----------------------------------------------------------

// 12 warps put 3 on each scheduler, so the launch gives every thread 168 registers; the consumers want more (ptxas:
// ~195-210 unbounded; at 168 they spilled, and every register held across a phase spilled more: runs 73, 78) and the
// producer needs few. setmaxnreg moves them, one warpgroup at a time (every thread of a warpgroup executes the same
// one). Run 84: 29.9 -> 27.2 us per layer from this alone.
__device__ inline void pk_release_registers() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(PK_PRODUCER_REGS));
#endif
}
__device__ inline void pk_take_registers() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(PK_CONSUMER_REGS));
#endif
}

// ---- consumer-side synchronization ---------------------------------------------------------------

// The 8 consumer warps only (the producer warpgroup never joins after the start).
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
// CTAs have arrived target / nb times; their writes are then visible (thread 0's acquire, then the block barrier;
// read them with __ldcg: L1 is not coherent across SMs). Release and acquire at GPU scope are the whole fence: no
// __threadfence on either side (as CUTLASS's generic barrier).
__device__ inline void pk_grid_arrive(unsigned * counter) {
    pk_sync();
    if (threadIdx.x == 0) asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(counter) : "memory");
}
__device__ inline void pk_grid_wait(const unsigned * counter, unsigned target) {
    if (threadIdx.x == 0) {
        unsigned seen = 0;
        do {
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(counter) : "memory");
        } while (seen < target);
    }
    pk_sync();
}

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
        if (PK_IN_FLIGHT < p.n_slots && pos.fill >= PK_IN_FLIGHT) {  // the copy issued PK_IN_FLIGHT ago has landed
            const int k = slot - PK_IN_FLIGHT;                          // (its slot, in this lap or the previous one)
            pk_mbar_wait(&s.full[k < 0 ? k + p.n_slots : k], k < 0 ? pos.phase ^ 1 : pos.phase);
        }
        if (waited) *waited += zk_globaltimer_ns() - t0;
        pk_bulk_copy(s.ring + (size_t) slot * PK_SLOT_BYTES, w + (int64_t) r * K, (uint32_t) (nr * K * 2), &s.full[slot]);
    }
}

}  // namespace
