// Tensor-core building blocks shared by the mma.sync kernels (skinny-gemm.cu, attention-prefill-tc.cu,
// mamba2-ssd.cu); sm_80 and up. Operands that must stay fp32-exact are split as v = hi + lo (bf16 each,
// zk_split2 in zamba2-common.cuh) and multiplied with two or three MMAs.
#pragma once

#include "zamba2-common.cuh"

// c[16x8] += a[16x16] . b[16x8], bf16 operands, fp32 accumulate; fragments in the PTX ISA layout
// (g = lane / 4, c = lane % 4): a0 (row g, k 2c..2c+1), a1 (row g+8, k 2c..), a2 (row g, k 8+2c..),
// a3 (row g+8, k 8+2c..); b0 (k 2c..2c+1, col g), b1 (k 8+2c.., col g); c0,c1 (row g, cols 2c, 2c+1),
// c2,c3 (row g+8, cols 2c, 2c+1).
static __device__ __forceinline__ void zk_mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// c += (ah + al) . (bh + bl) without the al . bl term (2^-18 relative): fp32-grade from bf16 MMAs.
static __device__ __forceinline__ void zk_mma_bf16x3(float (&c)[4], const uint32_t (&ah)[4], const uint32_t (&al)[4],
                                                     uint32_t bh0, uint32_t bh1, uint32_t bl0, uint32_t bl1) {
    zk_mma_bf16(c, al, bh0, bh1);
    zk_mma_bf16(c, ah, bl0, bl1);
    zk_mma_bf16(c, ah, bh0, bh1);
}

// Four 8x8 bf16 matrices from shared memory; lane l gives the address of row l % 8 of matrix l / 8.
// Thread T receives (row T / 4, cols 2(T % 4), +1) of each matrix (transposed with .trans).
static __device__ __forceinline__ void zk_ldmatrix_x4(uint32_t (&r)[4], const bf16 * p) {
    const uint32_t a = (uint32_t) __cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a) : "memory");
}
static __device__ __forceinline__ void zk_ldmatrix_x4_trans(uint32_t (&r)[4], const bf16 * p) {
    const uint32_t a = (uint32_t) __cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a) : "memory");
}
