// skinny_gemm's weight ring (kernels/src/skinny-gemm.cu includes this once): the decode kernel (M <= 8 rows, input
// staged in shared memory) whose weights reach the warps through shared memory, moved there by bulk copies.
//
// Why: the register kernel holds a warp's 8 steps of W loads in registers (126 registers x 256 threads), so two
// of its CTAs fill an SM's register file: the next kernel of the decode chain cannot place a CTA until these
// leave, and only 4 steps per warp are in flight across the PDL wait. Here the copy unit moves whole row chunks
// (16 W rows x 512 k: 16 KB per stage) into a ring of S stages that the warps read: S x 16 KB in flight per CTA
// with no registers held, the whole ring requested before the PDL wait, and at ~108 KB of shared memory and
// <= 128 registers per CTA two kernels' CTAs fit on one SM, so the next GEMV's ring fills while this one ends.
//
// Per CTA (persistent, items b, b + grid, ...): chunk q of the CTA's sequence (its items in order, each item's
// K slice in chunks of 16 steps) lives in slot q % S.
//   full[slot]:  count 1; warp 0's lane 0 announces the chunk's bytes, lanes 0..15 copy one W row each.
//   empty[slot]: count 8; each warp releases the slot once its W fragments are in registers.
// Warp 0 refills slot (q-1) % S with chunk q-1+S when it starts chunk q (one chunk of slack: it rarely waits).
// Warp w takes steps w and w + 8 of each chunk: the steps the register kernel gives it, in the same order,
// so the two kernels' results are bitwise the same.
// Measured (kernels/NOTES.md runs 28-29), hence opt-in (skinny_gemm_args::ring): slower. One 1-D bulk copy per W row
// costs ~100 ns per SM (in_proj at M = 1: 28.3 us vs 11.3 with 1 KB copies, equal with 2 KB ones), and the
// co-residency it buys did not pay in the decode chain (b1 1.873 vs 1.833 ms at 2 KB copies).
#pragma once

#include "zamba2-bulk.cuh"

constexpr int ZK_RING_CHUNK_STEPS = 2 * ZK_SKINNY_WARPS;  // 32-wide k steps per stage by default: two per warp
// A slot: 16 W rows of `chunk_steps` x 64 bytes, each row padded by 64 bytes (rows g, g+1 on other banks).
static __host__ __device__ __forceinline__ int zk_ring_row_stride(int chunk_steps) { return chunk_steps * 64 + 64; }
static __host__ __device__ __forceinline__ int zk_ring_stage_bytes(int chunk_steps) { return 16 * zk_ring_row_stride(chunk_steps); }
constexpr int ZK_RING_MAX_STAGES = 8;
constexpr int ZK_RING_MIN_STAGES = 3;  // fewer: the register kernel (a larger staged input, e.g. M = 8 at K 2048)
// Dynamic shared memory per CTA (staged input + ring): with ~4.7 KB static, two CTAs fit in an SM's 228 KB.
constexpr size_t ZK_RING_DYN_SMEM_BYTES = 104 * 1024;

// The producer's position in the CTA's chunk sequence.
struct skinny_ring_cursor {
    int item, chunk;
};

// The 32-wide k steps [begin, end) of K slice ks.
static __device__ __forceinline__ int2 skinny_slice_steps(const skinny_launch & L, int ks) {
    const int begin = ks * L.steps_per_slice;
    return make_int2(begin, min((L.a.K + 31) / 32, begin + L.steps_per_slice));
}

// Warp 0: copy the cursor's chunk into `slot` (announced on `full` before any lane copies), advance the cursor.
static __device__ __forceinline__ void skinny_ring_issue(const skinny_launch & L, skinny_ring_cursor & c,
                                                         unsigned char * slot, uint64_t * full, int lane) {
    const skinny_item_pos p = skinny_locate(L, c.item);
    const skinny_segment & sg = L.a.seg[p.seg];
    const int2 slice = skinny_slice_steps(L, p.ks);
    const int s0 = slice.x + c.chunk * L.ring_chunk_steps, s1 = min(slice.y, s0 + L.ring_chunk_steps);
    const int k0 = s0 * 32, k1 = min(L.a.K, s1 * 32);  // K % 8 == 0: rows of whole 16-byte units
    const uint32_t row_bytes = (uint32_t) (k1 - k0) * sizeof(bf16);
    const int rows = min(16, sg.n - p.n0);
    if (lane == 0) zk_mbar_arrive_expect_tx(full, (uint32_t) rows * row_bytes);
    __syncwarp();
    if (lane < rows) {
        zk_bulk_copy_g2s(slot + lane * zk_ring_row_stride(L.ring_chunk_steps), sg.w + (int64_t) (p.n0 + lane) * L.a.K + k0, row_bytes, full);  // w: [n, K]
    }
    if (s1 >= slice.y) {
        c.chunk = 0;
        c.item += gridDim.x;
    } else {
        ++c.chunk;
    }
}

// The CTA's shared ring: S slots of zk_ring_stage_bytes and their barriers; q = chunks consumed so far.
struct skinny_ring {
    unsigned char * slots;
    uint64_t * full, * empty;
    int S, q;
    int chunk_steps, row_stride, stage_bytes;
    skinny_ring_cursor next;  // the producer's next chunk (warp 0's copy is the one that counts)
};

// One work item from the ring: the 8 warps' MMAs over the item's chunks, its LoRA term, its reduction.
template <int XMODE, bool OUT_F32>
static __device__ __forceinline__ void skinny_ring_item(const skinny_launch & L, int item, int n_items, const skinny_x_view & X,
                                                        float (&red)[ZK_SKINNY_WARPS][4][ZK_WARP_SIZE], bool & last_block,
                                                        skinny_ring & R) {
    const skinny_item_pos p = skinny_locate(L, item);
    const skinny_segment & sg = L.a.seg[p.seg];
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE, g = lane / 4, t = lane % 4;
    const bool ok_a = p.n0 + g < sg.n, ok_b = p.n0 + g + 8 < sg.n;  // W rows n0+g, n0+g+8 exist
    const int2 slice = skinny_slice_steps(L, p.ks);
    if (XMODE == SKINNY_X_RMSNORM && L.a.conv.out) skinny_conv_prefetch(L.a, p.seg, p.n0);
    float acc[1][4] = {{0.0f, 0.0f, 0.0f, 0.0f}};
    const uint4 zero = make_uint4(0, 0, 0, 0);
    for (int s0 = slice.x; s0 < slice.y; s0 += R.chunk_steps, ++R.q) {
        if (warp == 0 && R.q >= 1 && R.next.item < n_items) {  // refill the slot that chunk q-1 used
            const int prev = R.q - 1, slot = prev % R.S;
            zk_mbar_wait(R.empty + slot, (uint32_t) (prev / R.S) & 1);
            skinny_ring_issue(L, R.next, R.slots + slot * R.stage_bytes, R.full + slot, lane);
        }
        const int slot = R.q % R.S;
        zk_mbar_wait(R.full + slot, (uint32_t) (R.q / R.S) & 1);
        const unsigned char * st = R.slots + slot * R.stage_bytes;  // [16 rows][row_stride]
        const int s_chunk_end = min(slice.y, s0 + R.chunk_steps);
        uint4 wa[4], wb[4];  // steps warp + 8u of the chunk (u < chunk_steps / 8)
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const int j = warp + u * ZK_SKINNY_WARPS;  // step within the chunk
            const int k = (s0 + j) * 32 + 8 * t;
            // past the chunk or K the slot holds stale bytes (maybe NaN patterns): zeros instead, as x is
            const bool in = s0 + j < s_chunk_end && k < L.a.K;
            wa[u] = ok_a && in ? *reinterpret_cast<const uint4 *>(st + g * R.row_stride + j * 64 + 16 * t) : zero;
            wb[u] = ok_b && in ? *reinterpret_cast<const uint4 *>(st + (g + 8) * R.row_stride + j * 64 + 16 * t) : zero;
        }
        __syncwarp();
        if (lane == 0) zk_mbar_arrive(R.empty + slot);
        zk_skinny_group<1, XMODE, 4, true>(acc, wa, wb, X, L.a.M, s_chunk_end, s0 + warp, g, t);
    }
    skinny_item_w2<1>(L, p, acc);
    skinny_item_finish<1, XMODE, OUT_F32>(L, p, acc, red, last_block);
}

// CTA b takes items b, b + gridDim.x, ... (one CTA per SM). Before its PDL wait it only reads weights: the ring's
// first S chunks are requested then.
template <int XMODE, bool OUT_F32>
static __global__ void __launch_bounds__(ZK_SKINNY_WARPS * ZK_WARP_SIZE, 2)
    skinny_ring_kernel(const __grid_constant__ skinny_launch L) {
    extern __shared__ __align__(128) unsigned char smem[];  // staged input [0, ring_offset), then the ring
    constexpr bool NORM = XMODE == SKINNY_X_RMSNORM || XMODE == SKINNY_X_GATED_NORM;
    __shared__ float red[ZK_SKINNY_WARPS][4][ZK_WARP_SIZE];  // per-warp partial tiles
    __shared__ bool last_block;
    __shared__ float inv[NORM ? ZK_SKINNY_NORM_MAX_M * ZK_SKINNY_NORM_MAX_GROUPS : 1];
    __shared__ float part[ZK_SKINNY_WARPS][ZK_SKINNY_NORM_MAX_M];  // the norm modes' per-warp row sums
    __shared__ __align__(8) uint64_t full[ZK_RING_MAX_STAGES], empty[ZK_RING_MAX_STAGES];
    zk_pdl_trigger();  // the next kernel may place its CTAs beside these and start its own weight loads
    const int n_items = L.tiles * L.KS;
    const int warp = threadIdx.x / ZK_WARP_SIZE, lane = threadIdx.x % ZK_WARP_SIZE;
    skinny_ring R = {smem + L.ring_offset, full, empty, L.ring_stages, 0, L.ring_chunk_steps,
                     zk_ring_row_stride(L.ring_chunk_steps), zk_ring_stage_bytes(L.ring_chunk_steps), {(int) blockIdx.x, 0}};
    if (threadIdx.x == 0) {
        for (int s = 0; s < R.S; ++s) {
            zk_mbar_init(full + s, 1);
            zk_mbar_init(empty + s, ZK_SKINNY_WARPS);
        }
        zk_mbar_init_fence();
    }
    __syncthreads();
    auto fill = [&] {  // warp 0: chunks 0 .. S-1 into the fresh slots
        for (int s = 0; s < R.S && R.next.item < n_items; ++s) {
            skinny_ring_issue(L, R.next, R.slots + s * R.stage_bytes, R.full + s, lane);
        }
    };
    if (warp == 0 && !L.a.late_weights) fill();
    if (NORM) {  // the norm weight is a constant: into L1 before the wait (the staging reads it right after)
        for (int line = threadIdx.x; line * 64 < L.a.K; line += blockDim.x) {
            asm volatile("prefetch.global.L1 [%0];" ::"l"(L.a.norm.w + line * 64));
        }
    }
    zk_pdl_wait();
    if (warp == 0 && L.a.late_weights) fill();
    skinny_x_view X = {L.a.x, L.a.x_lo, L.a.ld_x, L.a.K, &L.a.norm, inv, smem, L.stage_stride, L.a.M * L.stage_stride};
    if (NORM && L.a.M * L.a.K <= (int) blockDim.x * 8 * ZK_SKINNY_ONE_PASS_PACKS) {
        skinny_stage_one_pass<XMODE>(L.a, X, inv, part, smem);
    } else {
        if (NORM) skinny_norm_prologue<XMODE>(L.a, inv, part);
        skinny_stage_input<XMODE>(X, L.a.M, smem);
    }
    for (int it = blockIdx.x; it < n_items; it += gridDim.x) {
        skinny_ring_item<XMODE, OUT_F32>(L, it, n_items, X, red, last_block, R);
        __syncthreads();  // red and last_block are reused by the next item
    }
}
