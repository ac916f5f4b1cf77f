// The persistent Mamba2 decode's GEMV over the ring (mamba2-decode-persistent.cu includes this once): a CTA's rows
// of one weight matrix times the staged input, slot by slot, in the tensor-core form where K allows and in the FMA
// form otherwise. Every row's sum runs in a fixed order: the same bits on every run.
#pragma once

#include "../include/zamba2-mma.cuh"
#include "mamba2-decode-persistent-ring.cuh"

namespace {

// Waits until the consumers' next slot (pos) has arrived. With the bench's trace (waited not null): the wait is
// added to *waited, and CTA 0 gets its per-slot record ([fill][4] ns after the phase fields; the first two, the
// wait's start and end, set here), else nullptr.
__device__ inline unsigned long long * pk_wait_slot(const pk_ring_pos & pos, const pk_params & p, const pk_smem & s,
                                                    unsigned long long * waited) {
    const unsigned long long t0 = waited ? zk_globaltimer_ns() : 0;
    pk_mbar_wait(&s.full[pos.slot], pos.phase);
    if (waited) *waited += zk_globaltimer_ns() - t0;
    unsigned long long * st = waited && blockIdx.x == 0 && pos.fill < PK_SLOT_TRACE
                                  ? p.a.trace + (int64_t) gridDim.x * p.a.n_layers * PERSIST_TRACE_FIELDS + pos.fill * 4
                                  : nullptr;
    if (st) { st[0] = t0; st[1] = zk_globaltimer_ns(); }
    return st;
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

// Consumers, tensor-core form: as pk_consume (same out, same slots), for K with pk_mma_segments(K) = S > 0.
// A slot of R rows is a 16-row A operand: A row m = r S + s is row r over segment s (k in [s K / S, (s + 1) K / S)),
// B column n is x over segment n, so D[m][s] is row r's partial dot product over the block's part of segment s; the
// other columns are discarded. x enters as bf16 hi + lo (fp32-grade products). Each segment is cut into groups of
// 64 k (128 bytes of a row); warp w owns group w of every segment, four k16 blocks, so its B fragments stay in
// registers for the phase and each A block is one ldmatrix.x4 in the MMA's own register layout. Within a group,
// segment s keeps its 16-byte chunks rotated by s (logical chunk c at (c + s) % 8), for its A rows and its B column
// alike: the 8 rows of one ldmatrix matrix, 1 KB apart in the slot, then fall on different banks (S = 8: none
// shared; S = 4: pairs). Partials go to red[(s 8 + warp) stride + row]; the end sums them in order, times scale[q] for
// segment q where given (the gated norm folded in: pk_stage_gated). A slot is released as soon as its MMAs have their
// operands (before their sums).
template <typename Out>
__device__ inline void pk_consume_mma(int N, int K, pk_ring_pos & pos, const pk_params & p, const pk_smem & s,
                                      unsigned long long * waited, const float * scale, unsigned long long * marks,
                                      Out && out) {
    int r0, r1;
    pk_rows(N, blockIdx.x, gridDim.x, r0, r1);
    const int R = pk_rows_per_slot(K), S = pk_mma_segments(K), seg = K / S, groups = seg / 64, rs = pk_red_stride(p);
    const int tid = threadIdx.x, warp = tid / ZK_WARP_SIZE, lane = tid % ZK_WARP_SIZE, g = lane / 4, t = lane % 4;
    const int n_slots = p.n_slots;
    const bool has_group = warp < groups;  // warp-uniform
    // where logical k (0..63) of segment sg's group lies in memory: chunk rotation by sg
    auto phys_k = [](int k, int sg) { return (((k / 8) + sg) % 8) * 8 + k % 8; };
    // B of block b: column g = x over segment g at k 16b + 2t, +1 (b0) and 16b + 8 + 2t, +1 (b1); hi and lo
    uint32_t bh[4][2], bl[4][2];
#pragma unroll
    for (int b = 0; b < 4; ++b) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            bh[b][h] = bl[b][h] = 0;
            if (has_group && g < S) {
                const float * xg = s.xs + g * seg + warp * 64;
                const int k = 16 * b + 8 * h + 2 * t;
                zk_split2(bh[b][h], bl[b][h], xg[phys_k(k, g)], xg[phys_k(k + 1, g)]);
            }
        }
    }
    // ldmatrix.x4 row addresses: lane l gives row l % 8 of matrix l / 8 (matrices: rows 0-7 | 8-15, k 0-7 | 8-15)
    const int lm = lane % 8 + 8 * ((lane / 8) % 2), lkh = lane / 16;
    const int lr = lm / S, ls = lm % S;
    // this lane's row and group (byte offset within a slot; row 0 for rows past the slot's) and its first chunk
    const int a_row = lm < R * S ? lr * K * 2 + ls * seg * 2 + warp * 128 : 0, a_chunk = lkh + ls;
    // A rows of this lane's D fragment: m = g and g + 8 -> (row, segment)
    const int ma = g, mb = g + 8;
    const int ra = ma / S, sa = ma % S, rb = mb / S, sb = mb % S;
    for (int r = r0; r < r1; r += R, pos.advance(n_slots)) {
        const int nr = min(R, r1 - r), slot = pos.slot;
        unsigned long long * st = pk_wait_slot(pos, p, s, waited);
        const unsigned char * base = s.ring + (size_t) slot * PK_SLOT_BYTES;
        // four accumulators (block parity x hi / lo): chains of 2 dependent MMAs, summed in a fixed order
        float ch[2][4] = {}, cl[2][4] = {};
        if (has_group) {
            uint32_t a[4][4];
#pragma unroll
            for (int b = 0; b < 4; ++b) {
                zk_ldmatrix_x4(a[b], reinterpret_cast<const bf16 *>(base + a_row + ((a_chunk + 2 * b) % 8) * 16));
            }
#pragma unroll
            for (int b = 0; b < 4; ++b) {
                zk_mma_bf16(cl[b & 1], a[b], bl[b][0], bl[b][1]);
                zk_mma_bf16(ch[b & 1], a[b], bh[b][0], bh[b][1]);
            }
        }
        // the MMAs were issued, so every lane's loads of the slot have landed in registers: release it
        __syncwarp();
        if (lane == 0) pk_mbar_arrive(&s.empty[slot]);
        float c[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) c[e] = (cl[0][e] + cl[1][e]) + (ch[0][e] + ch[1][e]);
        // D[m][s(m)]: row g's column sa is c0 (2t) or c1 (2t + 1) of lane t = sa / 2; row g + 8's likewise
        const bool va = ma < R * S && ra < nr, vb = mb < R * S && rb < nr;
        if (has_group && va && sa / 2 == t) s.red[(sa * PK_CONSUMER_WARPS + warp) * rs + (r - r0) + ra] = sa & 1 ? c[1] : c[0];
        if (has_group && vb && sb / 2 == t) s.red[(sb * PK_CONSUMER_WARPS + warp) * rs + (r - r0) + rb] = sb & 1 ? c[3] : c[2];
        if (st) { st[2] = zk_globaltimer_ns(); st[3] = st[2]; }
    }
    if (marks) marks[0] = zk_globaltimer_ns();
    pk_sync();
    if (marks) marks[1] = zk_globaltimer_ns();
    for (int j = tid; j < r1 - r0; j += PK_CONSUMERS) {
        float v = 0.0f;
        for (int q = 0; q < S; ++q) {
            float u = 0.0f;
#pragma unroll
            for (int w = 0; w < PK_CONSUMER_WARPS; ++w) {
                if (w < groups) u += s.red[(q * PK_CONSUMER_WARPS + w) * rs + j];  // warps past the groups wrote nothing
            }
            v += scale ? scale[q] * u : u;
        }
        out(r0 + j, j, v);
    }
}

// The down phase's consumers: pk_consume_mma's tensor-core form (the same slots, A layout, chunk rotation, partial sums
// and fixed-order end) for K up to 8192, where a segment has up to 16 groups of 64: warp w owns groups w and w + 8.
// x is staged in xs as bf16 values (bf16(gelu(g) * u), exact in bf16): the B fragments are those values, with no lo
// term, so one MMA per k16 block. Its own function: with pk_consume_mma generalized for both (and one kernel instance
// for launches with and without the down phase) the layers were ~28 us per 1.2B b1 step slower (run 111).
template <typename Out>
__device__ inline void pk_consume_mma_bf16x(int N, int K, pk_ring_pos & pos, const pk_params & p, const pk_smem & s,
                                            Out && out) {
    constexpr int GPW = 2;  // groups per warp
    int r0, r1;
    pk_rows(N, blockIdx.x, gridDim.x, r0, r1);
    const int R = pk_rows_per_slot(K), S = pk_mma_segments(K, GPW * PK_CONSUMER_WARPS), seg = K / S, groups = seg / 64;
    const int rs = pk_red_stride(p);
    const int tid = threadIdx.x, warp = tid / ZK_WARP_SIZE, lane = tid % ZK_WARP_SIZE, g = lane / 4, t = lane % 4;
    const int n_slots = p.n_slots;
    auto phys_k = [](int k, int sg) { return (((k / 8) + sg) % 8) * 8 + k % 8; };  // as pk_consume_mma's
    // B of group warp + 8 j, block b: column g = x over segment g at k 16b + 2t, +1 (b0) and 16b + 8 + 2t, +1 (b1):
    // two adjacent bf16 (phys_k keeps k % 8), one 32-bit load
    const bf16 * xs = reinterpret_cast<const bf16 *>(s.xs);  // [K] bf16
    uint32_t bx[GPW][4][2];
#pragma unroll
    for (int j = 0; j < GPW; ++j) {
        const int gi = warp + PK_CONSUMER_WARPS * j;  // warp-uniform
#pragma unroll
        for (int b = 0; b < 4; ++b) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int k = 16 * b + 8 * h + 2 * t;
                bx[j][b][h] = gi < groups && g < S ? *reinterpret_cast<const uint32_t *>(xs + g * seg + gi * 64 + phys_k(k, g)) : 0u;
            }
        }
    }
    const int lm = lane % 8 + 8 * ((lane / 8) % 2), lkh = lane / 16;  // ldmatrix.x4 rows, as pk_consume_mma's
    const int lr = lm / S, ls = lm % S;
    const int a_row = lm < R * S ? lr * K * 2 + ls * seg * 2 + warp * 128 : 0, a_chunk = lkh + ls;
    const int ma = g, mb = g + 8;
    const int ra = ma / S, sa = ma % S, rb = mb / S, sb = mb % S;
    const bool has_group = warp < groups;
    for (int r = r0; r < r1; r += R, pos.advance(n_slots)) {
        const int nr = min(R, r1 - r), slot = pos.slot;
        pk_wait_slot(pos, p, s, nullptr);
        const unsigned char * base = s.ring + (size_t) slot * PK_SLOT_BYTES;
        float acc[2][4] = {};  // block parity: chains of GPW x 2 dependent MMAs, summed in a fixed order
#pragma unroll
        for (int j = 0; j < GPW; ++j) {
            if (warp + PK_CONSUMER_WARPS * j < groups) {
                uint32_t a[4][4];
#pragma unroll
                for (int b = 0; b < 4; ++b) {
                    zk_ldmatrix_x4(a[b], reinterpret_cast<const bf16 *>(base + a_row + j * PK_CONSUMER_WARPS * 128 +
                                                                         ((a_chunk + 2 * b) % 8) * 16));
                }
#pragma unroll
                for (int b = 0; b < 4; ++b) zk_mma_bf16(acc[b & 1], a[b], bx[j][b][0], bx[j][b][1]);
            }
        }
        __syncwarp();  // the MMAs have their operands: the slot is free
        if (lane == 0) pk_mbar_arrive(&s.empty[slot]);
        float c[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) c[e] = acc[0][e] + acc[1][e];
        const bool va = ma < R * S && ra < nr, vb = mb < R * S && rb < nr;
        if (has_group && va && sa / 2 == t) s.red[(sa * PK_CONSUMER_WARPS + warp) * rs + (r - r0) + ra] = sa & 1 ? c[1] : c[0];
        if (has_group && vb && sb / 2 == t) s.red[(sb * PK_CONSUMER_WARPS + warp) * rs + (r - r0) + rb] = sb & 1 ? c[3] : c[2];
    }
    pk_sync();
    for (int j = tid; j < r1 - r0; j += PK_CONSUMERS) {
        float v = 0.0f;
        for (int q = 0; q < S; ++q) {
            float u = 0.0f;
#pragma unroll
            for (int w = 0; w < PK_CONSUMER_WARPS; ++w) {
                if (w < groups) u += s.red[(q * PK_CONSUMER_WARPS + w) * rs + j];
            }
            v += u;
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
// and writes them to red[w][row]; the 8 partials of a row are summed in order at the end. (The first form, a block
// barrier and a block reduction per slot with the inputs read from shared memory, took ~1 us per 16 KB slot.)
template <typename Out>
__device__ inline void pk_consume(int N, int K, pk_ring_pos & pos, const pk_params & p, const pk_smem & s,
                                  unsigned long long * waited, unsigned long long * marks, Out && out) {
    int r0, r1;
    pk_rows(N, blockIdx.x, gridDim.x, r0, r1);
    const int R = pk_rows_per_slot(K), n_chunks = K / 8, cpl = (n_chunks + PK_CONSUMERS - 1) / PK_CONSUMERS;
    const int rs = pk_red_stride(p);
    const int tid = threadIdx.x, warp = tid / ZK_WARP_SIZE, lane = tid % ZK_WARP_SIZE;
    const int n_slots = p.n_slots;
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
    for (int r = r0; r < r1; r += R, pos.advance(n_slots)) {
        const int nr = min(R, r1 - r), slot = pos.slot;
        unsigned long long * st = pk_wait_slot(pos, p, s, waited);
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
        if ((lane & 3) == 0 && row < nr) s.red[warp * rs + r - r0 + row] = t;
        if (st) { st[2] = zk_globaltimer_ns(); st[3] = st[2]; }
    }
    if (marks) marks[0] = zk_globaltimer_ns();
    pk_sync();
    if (marks) marks[1] = zk_globaltimer_ns();
    for (int j = tid; j < r1 - r0; j += PK_CONSUMERS) {
        float v = 0.0f;
#pragma unroll
        for (int w = 0; w < PK_CONSUMER_WARPS; ++w) v += s.red[w * rs + j];
        out(r0 + j, j, v);
    }
}

// The CTA's rows of an N x K matrix times xs: tensor cores where K allows, else FMAs.
// scale (shared memory, one factor per tensor-core segment, or null) is for the tensor-core form only: see
// pk_gated_folds.
template <typename Out>
__device__ inline void pk_gemv(int N, int K, pk_ring_pos & pos, const pk_params & p, const pk_smem & s,
                               unsigned long long * waited, const float * scale, unsigned long long * marks, Out && out) {
    if (pk_mma_segments(K) > 0) pk_consume_mma(N, K, pos, p, s, waited, scale, marks, out);
    else pk_consume(N, K, pos, p, s, waited, marks, out);
}

}  // namespace
