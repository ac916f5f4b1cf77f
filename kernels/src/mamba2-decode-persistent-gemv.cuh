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
// bf16 hi + lo (fp32-grade products). Warp w takes logical steps w, w + 8, .. of every segment; segment s reads them
// rotated by s (memory step (i + s) % steps, for its A rows and its B column alike), so that the 8 A rows of one
// load, 1 KB apart in the slot, fall on both halves of the banks: 4 wavefronts per load instead of 8. Its B fragments
// stay in registers for the phase. Partials go to red[(row S + s) 8 + warp]; the end sums them in order, times
// scale[q] for segment q where given (the gated norm folded in: pk_stage_gated).
// A slot is released as soon as its MMAs have their operands (before their sums).
template <typename Out>
__device__ inline void pk_consume_mma(int N, int K, pk_ring_pos & pos, const pk_params & p, const pk_smem & s,
                                      unsigned long long * waited, const float * scale, Out && out) {
    int r0, r1;
    pk_rows(N, blockIdx.x, gridDim.x, r0, r1);
    const int R = pk_rows_per_slot(K), S = pk_mma_segments(K), seg = K / S, steps = seg / 32;
    const int tid = threadIdx.x, warp = tid / ZK_WARP_SIZE, lane = tid % ZK_WARP_SIZE, g = lane / 4, t = lane % 4;
    const int n_steps = (steps - warp + PK_CONSUMER_WARPS - 1) / PK_CONSUMER_WARPS;  // this warp's (uniform)
    // B: x of segment g at this warp's steps (rotated by g), hi and lo (zero for columns past S)
    uint4 bh[PK_MMA_MAX_STEPS], bl[PK_MMA_MAX_STEPS];
#pragma unroll
    for (int i = 0; i < PK_MMA_MAX_STEPS; ++i) {
        bh[i] = bl[i] = make_uint4(0, 0, 0, 0);
        if (i < n_steps && g < S) {
            const float * xp = s.xs + g * seg + ((warp + PK_CONSUMER_WARPS * i + g) % steps) * 32 + 8 * t;
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
    int step_a[PK_MMA_MAX_STEPS], step_b[PK_MMA_MAX_STEPS];  // + the rotated steps' byte offsets, the same every slot
#pragma unroll
    for (int i = 0; i < PK_MMA_MAX_STEPS; ++i) {
        step_a[i] = offa + ((warp + PK_CONSUMER_WARPS * i + sa) % steps) * 64;
        step_b[i] = offb + ((warp + PK_CONSUMER_WARPS * i + sb) % steps) * 64;
    }
    for (int r = r0; r < r1; r += R, pos.advance(p.n_slots)) {
        const int nr = min(R, r1 - r), slot = pos.slot;
        unsigned long long * st = pk_wait_slot(pos, p, s, waited);
        const unsigned char * base = s.ring + (size_t) slot * PK_SLOT_BYTES;
        const bool va = offa >= 0 && ra < nr, vb = offb >= 0 && rb < nr;
        uint4 wa[PK_MMA_MAX_STEPS], wb[PK_MMA_MAX_STEPS];
#pragma unroll
        for (int i = 0; i < PK_MMA_MAX_STEPS; ++i) {  // the slot's loads first, then the MMAs
            wa[i] = wb[i] = make_uint4(0, 0, 0, 0);
            if (i >= n_steps) break;
            if (va) wa[i] = *reinterpret_cast<const uint4 *>(base + step_a[i]);
            if (vb) wb[i] = *reinterpret_cast<const uint4 *>(base + step_b[i]);
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
        // the MMAs were issued, so every lane's loads of the slot have landed in registers: release it
        __syncwarp();
        if (lane == 0) pk_mbar_arrive(&s.empty[slot]);
        float c[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) c[e] = (cl[0][e] + cl[1][e]) + (ch[0][e] + ch[1][e]);
        // D[m][s(m)]: row g's column sa is c0 (2t) or c1 (2t + 1) of lane t = sa / 2; row g + 8's likewise
        if (va && sa / 2 == t) s.red[(((r - r0) + ra) * S + sa) * PK_CONSUMER_WARPS + warp] = sa & 1 ? c[1] : c[0];
        if (vb && sb / 2 == t) s.red[(((r - r0) + rb) * S + sb) * PK_CONSUMER_WARPS + warp] = sb & 1 ? c[3] : c[2];
        if (st) { st[2] = zk_globaltimer_ns(); st[3] = st[2]; }
    }
    pk_sync();
    for (int j = tid; j < r1 - r0; j += PK_CONSUMERS) {
        float v = 0.0f;
        for (int q = 0; q < S; ++q) {
            float u = 0.0f;
#pragma unroll
            for (int w = 0; w < PK_CONSUMER_WARPS; ++w) {
                // warps without a step of this segment wrote nothing: only warps < steps
                if (w < steps) u += s.red[(j * S + q) * PK_CONSUMER_WARPS + w];
            }
            v += scale ? scale[q] * u : u;
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
// scale (shared memory, one factor per tensor-core segment, or null) is for the tensor-core form only: see
// pk_gated_folds.
template <typename Out>
__device__ inline void pk_gemv(int N, int K, pk_ring_pos & pos, const pk_params & p, const pk_smem & s,
                               unsigned long long * waited, const float * scale, Out && out) {
    if (pk_mma_segments(K) > 0) pk_consume_mma(N, K, pos, p, s, waited, scale, out);
    else pk_consume(N, K, pos, p, s, waited, out);
}

}  // namespace
