// cuBLASLt GEMMs: y[M, N] = x[M, K] . w[N, K]^T + beta * y, bf16 in, fp32 accumulate.
// In cuBLASLt's column-major terms: C[N, M] = op_T(W')[N, K] . X'[K, M], with W' = w viewed as
// column-major [K, N] and X' = x viewed as [K, M]. The only file that includes cuBLAS headers.
// Descriptors and the heuristic's algorithm are cached per shape: a step issues hundreds of GEMMs
// and the heuristic query costs tens of microseconds.
#include "../include/zamba2-gemm.h"

#include <cublasLt.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unordered_map>

// ---- launchers ---------------------------------------------------------------------------------

struct gemm_plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    // ZAMBA2_GEMM_TUNE=n: up to n heuristic candidates, timed once on the first uncaptured call
    cublasLtMatmulAlgo_t candidates[8]{};
    int n_candidates = 0;
    bool tuned = true;
    int build_status = 0;     // nonzero: no algorithm for this shape (kept so the refusal is not re-queried)
    std::string build_error;
};

struct gemm_context {
    cublasLtHandle_t handle = nullptr;
    void * workspace = nullptr;
    size_t workspace_bytes = 0;
    std::unordered_map<std::string, gemm_plan> plans;
    void * tune_scratch = nullptr;  // accumulate GEMMs are timed into this instead of their output
    size_t tune_scratch_bytes = 0;
    std::string error;
};

gemm_context * gemm_context_create(size_t workspace_bytes, const char ** error) {
    auto * ctx = new gemm_context();
    if (cublasLtCreate(&ctx->handle) != CUBLAS_STATUS_SUCCESS) {
        if (error) *error = "cublasLtCreate failed";
        delete ctx;
        return nullptr;
    }
    if (cudaMalloc(&ctx->workspace, workspace_bytes) != cudaSuccess) {
        if (error) *error = "cudaMalloc of the cuBLASLt workspace failed";
        cublasLtDestroy(ctx->handle);
        delete ctx;
        return nullptr;
    }
    ctx->workspace_bytes = workspace_bytes;
    return ctx;
}

void gemm_context_destroy(gemm_context * ctx) {
    if (!ctx) return;
    for (auto & kv : ctx->plans) {
        if (kv.second.desc) cublasLtMatmulDescDestroy(kv.second.desc);
        if (kv.second.a) cublasLtMatrixLayoutDestroy(kv.second.a);
        if (kv.second.b) cublasLtMatrixLayoutDestroy(kv.second.b);
        if (kv.second.c) cublasLtMatrixLayoutDestroy(kv.second.c);
    }
    cudaFree(ctx->workspace);
    cublasLtDestroy(ctx->handle);
    delete ctx;
}

const char * gemm_last_error(const gemm_context * ctx) { return ctx->error.c_str(); }

static int gemm_fail(gemm_context * ctx, cublasStatus_t st, const char * what) {
    char buf[160];
    std::snprintf(buf, sizeof(buf), "%s failed: cuBLAS status %d", what, (int) st);
    ctx->error = buf;
    return st == CUBLAS_STATUS_SUCCESS ? -1 : (int) st;
}

#define GEMM_TRY(call, what)                                                                       \
    do {                                                                                           \
        cublasStatus_t st_ = (call);                                                               \
        if (st_ != CUBLAS_STATUS_SUCCESS) return gemm_fail(ctx, st_, what);                       \
    } while (0)

// in_type: CUDA_R_16BF, or CUDA_R_8F_E4M3 (both operands; Hopper wants exactly this "TN" form, which
// is ours). ld_w: row stride of w (K, or more when w is a row slice of a wider matrix).
static int gemm_plan_build(gemm_context * ctx, gemm_plan & p, cudaDataType_t in_type, gemm_out_type y_type, int ld_y,
                           int ld_x, int ld_w, int M, int N, int K, bool accumulate) {
    const cudaDataType_t c_type = y_type == GEMM_OUT_F32 ? CUDA_R_32F : CUDA_R_16BF;
    GEMM_TRY(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
    GEMM_TRY(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof(op_t)), "set TRANSA");
    GEMM_TRY(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof(op_n)), "set TRANSB");
    if (in_type == CUDA_R_8F_E4M3) {
        // FP8 products only carry the lo term of a split input (2^-8 of the value): the tensor cores' faster,
        // less precise accumulation costs ~2^-8 x 2^-10 of the result
        const int8_t fast = 1;
        GEMM_TRY(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof(fast)), "set FAST_ACCUM");
    }
    GEMM_TRY(cublasLtMatrixLayoutCreate(&p.a, in_type, K, N, ld_w), "layout A");         // w: [N, K] (row stride ld_w)
    GEMM_TRY(cublasLtMatrixLayoutCreate(&p.b, in_type, K, M, ld_x), "layout B");         // x: [M, K]
    GEMM_TRY(cublasLtMatrixLayoutCreate(&p.c, c_type, N, M, ld_y), "layout C");          // y: [M, N]
    cublasLtMatmulPreference_t pref = nullptr;
    GEMM_TRY(cublasLtMatmulPreferenceCreate(&pref), "preference");
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ctx->workspace_bytes,
                                         sizeof(ctx->workspace_bytes));
    const char * tune_env = std::getenv("ZAMBA2_GEMM_TUNE");
    int want = tune_env ? std::atoi(tune_env) : 1;
    if (want < 1) want = 1;
    if (want > 8) want = 8;
    cublasLtMatmulHeuristicResult_t results[8]{};
    int found = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(ctx->handle, p.desc, p.a, p.b, p.c, p.c, pref, want, results, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) return gemm_fail(ctx, st, "cublasLtMatmulAlgoGetHeuristic");
    p.algo = results[0].algo;
    p.n_candidates = 0;
    for (int i = 0; i < found; ++i)
        if (results[i].state == CUBLAS_STATUS_SUCCESS) p.candidates[p.n_candidates++] = results[i].algo;
    // timing reruns the GEMM: accumulate GEMMs (beta != 0) are timed into the tune scratch (gemm_run)
    (void) accumulate;
    p.tuned = p.n_candidates < 2;
    return 0;
}

// The cached plan of one shape (built, and for overwrite GEMMs tuned, on first use).
static int gemm_run(gemm_context * ctx, cudaDataType_t in_type, void * y, gemm_out_type y_type, int ld_y, const void * x,
                    int ld_x, const void * w, int ld_w, int M, int N, int K, float alpha, float beta, cudaStream_t stream) {
    if (M <= 0) return 0;
    char key[112];
    std::snprintf(key, sizeof(key), "%d:%d:%d:%d:%d:%d:%d:%d:%d", (int) in_type, (int) y_type, ld_y, ld_x, ld_w, M, N, K,
                  beta != 0.0f);
    auto it = ctx->plans.find(key);
    if (it == ctx->plans.end()) {
        gemm_plan p;
        p.build_status = gemm_plan_build(ctx, p, in_type, y_type, ld_y, ld_x, ld_w, M, N, K, beta != 0.0f);
        if (p.build_status != 0) p.build_error = ctx->error;
        it = ctx->plans.emplace(key, p).first;  // failures too: a refused shape stays refused, cheaply
    }
    gemm_plan & p = it->second;
    if (p.build_status != 0) {
        ctx->error = p.build_error;
        return p.build_status;
    }
    if (!p.tuned) {
        cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
        cudaStreamIsCapturing(stream, &cap);
        // an accumulate GEMM would add into y once per timed run: time it into the scratch instead
        const size_t elem = y_type == GEMM_OUT_F32 ? 4 : 2;
        const size_t y_bytes = ((size_t) (M - 1) * ld_y + N) * elem;
        void * const y_timed = beta == 0.0f ? y : ctx->tune_scratch;
        if (beta != 0.0f && (!ctx->tune_scratch || y_bytes > ctx->tune_scratch_bytes)) p.tuned = true;
        if (!p.tuned && cap == cudaStreamCaptureStatusNone) {  // events cannot be waited on inside a graph capture
            cudaEvent_t t0, t1;
            cudaEventCreate(&t0);
            cudaEventCreate(&t1);
            float best_ms = 1e30f;
            for (int i = 0; i < p.n_candidates; ++i) {
                // warm-up run also rejects candidates that fail at launch
                if (cublasLtMatmul(ctx->handle, p.desc, &alpha, w, p.a, x, p.b, &beta, y_timed, p.c, y_timed, p.c,
                                   &p.candidates[i], ctx->workspace, ctx->workspace_bytes, stream) != CUBLAS_STATUS_SUCCESS)
                    continue;
                cudaEventRecord(t0, stream);
                for (int r = 0; r < 3; ++r)
                    cublasLtMatmul(ctx->handle, p.desc, &alpha, w, p.a, x, p.b, &beta, y_timed, p.c, y_timed, p.c,
                                   &p.candidates[i], ctx->workspace, ctx->workspace_bytes, stream);
                cudaEventRecord(t1, stream);
                cudaEventSynchronize(t1);
                float ms = 0.0f;
                cudaEventElapsedTime(&ms, t0, t1);
                if (ms < best_ms) {
                    best_ms = ms;
                    p.algo = p.candidates[i];
                }
            }
            cudaEventDestroy(t0);
            cudaEventDestroy(t1);
            p.tuned = true;
        }
    }
    GEMM_TRY(cublasLtMatmul(ctx->handle, p.desc, &alpha, w, p.a, x, p.b, &beta, y, p.c, y, p.c, &p.algo,
                            ctx->workspace, ctx->workspace_bytes, stream),
             "cublasLtMatmul");
    return 0;
}

int gemm_bf16(gemm_context * ctx, void * y, gemm_out_type y_type, int ld_y, const __nv_bfloat16 * x, int ld_x,
              const __nv_bfloat16 * w, int M, int N, int K, float beta, cudaStream_t stream) {
    return gemm_run(ctx, CUDA_R_16BF, y, y_type, ld_y, x, ld_x, w, K, M, N, K, 1.0f, beta, stream);
}

int gemm_fp8_accumulate(gemm_context * ctx, float * y, int ld_y, const uint8_t * x8, int ld_x, const uint8_t * w8, int ld_w,
                        int M, int N, int K, float alpha, cudaStream_t stream) {
    return gemm_run(ctx, CUDA_R_8F_E4M3, y, GEMM_OUT_F32, ld_y, x8, ld_x, w8, ld_w, M, N, K, alpha, 1.0f, stream);
}

void gemm_context_set_tune_scratch(gemm_context * ctx, void * scratch, size_t bytes) {
    ctx->tune_scratch = scratch;
    ctx->tune_scratch_bytes = scratch ? bytes : 0;
}
