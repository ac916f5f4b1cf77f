// FP8 (e4m3) copies for the lo term of split GEMM inputs on large steps.
//
// A split input x = hi + lo (hi = bf16(x), |lo| <= 2^-8 |x|) times a bf16 weight W is exact to fp32 when
// both halves go through bf16 GEMMs, at twice the FLOPs. Large (compute-bound) steps instead compute
//   y = hi . W^T  (bf16)  +  (lo8 . W8^T) * w_scale / ZK_LO_FP8_SCALE  (FP8, twice the rate of bf16)
// with lo8 = e4m3(lo * ZK_LO_FP8_SCALE) and W8 = e4m3(W / w_scale), w_scale = max|W| / 448. Each e4m3
// value carries 2^-4 relative error, so the lo term adds ~2^-12 |x||W| instead of bf16 rounding's 2^-9.
// Compiles without cuBLAS headers (the GEMM itself is gemm_fp8_accumulate in zamba2-gemm.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

// lo is at most 2^-8 |v|, so |v| up to ~112 maps below e4m3's 448; larger values saturate, which leaves
// that element no worse than an unsplit bf16 input.
#define ZK_LO_FP8_SCALE 1024.0f
#define ZK_E4M3_MAX 448.0f

// *absmax (device, fp32) = max(*absmax, max |w[i]|): the caller zeroes it first. NaNs are ignored.
void fp8_absmax_bf16(float * absmax, const __nv_bfloat16 * w, size_t n, cudaStream_t stream);

// q[i] = e4m3_satfinite(w[i] * inv_scale), n elements.
void fp8_quantize_bf16(uint8_t * q, const __nv_bfloat16 * w, size_t n, float inv_scale, cudaStream_t stream);

// lo[r, k] = bf16(decode(lo8[r, k]) / ZK_LO_FP8_SCALE): bf16 lo rows back from FP8 ones, for the GEMMs of an
// FP8 step that still take the split [hi; lo] bf16 form (LoRA, a shape cuBLASLt's FP8 path refuses).
void fp8_lo_to_bf16(__nv_bfloat16 * lo, const uint8_t * lo8, int n_rows, int n_cols, cudaStream_t stream);
