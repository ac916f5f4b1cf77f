// Dense GEMMs of the engine through cuBLASLt (bf16 operands, fp32 accumulation). Opaque handle so
// that callers do not need the cuBLAS headers (only gemm-cublaslt.cc includes them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

struct gemm_context;

enum gemm_out_type { GEMM_OUT_BF16 = 0, GEMM_OUT_F32 = 1 };

// Returns nullptr on failure (message in *error when error is not null).
gemm_context * gemm_context_create(size_t workspace_bytes, const char ** error);
void gemm_context_destroy(gemm_context * ctx);

// y[M, N] = x[M, K] . w[N, K]^T + beta * y
//   x: bf16 rows of stride ld_x; w: bf16 [N, K] (a PyTorch Linear weight, row-major);
//   y: bf16 or f32 rows of stride ld_y (y may be read when beta != 0: in-place accumulate).
// Returns 0 on success, else a cuBLAS status (message in gemm_last_error).
int gemm_bf16(gemm_context * ctx, void * y, gemm_out_type y_type, int ld_y, const __nv_bfloat16 * x, int ld_x,
              const __nv_bfloat16 * w, int M, int N, int K, float beta, cudaStream_t stream);
// y[M, N] += alpha * x8[M, K] . w8[N, K]^T with FP8 e4m3 operands (Hopper and later): the lo term of a
// split input (see ZK_LO_FP8_SCALE). w8 rows have stride ld_w (a row slice of a larger matrix is fine);
// K, ld_x, ld_w multiples of 16. Same return convention as gemm_bf16.
int gemm_fp8_accumulate(gemm_context * ctx, float * y, int ld_y, const uint8_t * x8, int ld_x, const uint8_t * w8, int ld_w,
                        int M, int N, int K, float alpha, cudaStream_t stream);
// ZAMBA2_GEMM_TUNE=n times up to n heuristic candidates per shape on its first uncaptured call; GEMMs
// that accumulate (beta != 0) are timed into this scratch (device, >= the output's extent) instead.
void gemm_context_set_tune_scratch(gemm_context * ctx, void * scratch, size_t bytes);
const char * gemm_last_error(const gemm_context * ctx);
