// The engine's ZAMBA2_* environment switches, read once at engine creation (zamba2_engine_create). Each one turns
// a measured default off or an experiment on; kernels/README.md lists them and kernels/NOTES.md has the
// measurements behind each default.
#include <algorithm>
#include <cstdlib>

#include "zamba2-engine-internal.h"

#include "../include/zamba2-launch.cuh"

namespace {
// The variable is set and its value starts with c ("ZAMBA2_X=0": a default off, "=1": an experiment on).
bool env_starts(const char * name, char c) {
    const char * v = std::getenv(name);
    return v && v[0] == c;
}
// Its integer value (atoi), or dflt when unset.
int env_int(const char * name, int dflt) {
    const char * v = std::getenv(name);
    return v ? std::atoi(v) : dflt;
}
}  // namespace

void zamba2_read_switches(zamba2_engine * e) {
    // FP8 lo terms: on by default where the GPU has FP8 tensor cores (compute capability 8.9 and up)
    int cc_major = 0, cc_minor = 0;
    cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, e->device);
    cudaDeviceGetAttribute(&cc_minor, cudaDevAttrComputeCapabilityMinor, e->device);
    e->lo_fp8 = cc_major * 10 + cc_minor >= 89 && !env_starts("ZAMBA2_LO_FP8", '0');
    // kernels launched through zk_launch overlap their launch with the previous kernel's tail (sm_90+;
    // ZAMBA2_PDL=0 turns it off). Process-wide: every engine of a process runs on the same kind of GPU.
    zk_pdl_enabled() = cc_major >= 9 && !env_starts("ZAMBA2_PDL", '0');
    const char * lo_fp8_min_t = std::getenv("ZAMBA2_LO_FP8_MIN_T");
    if (lo_fp8_min_t && *lo_fp8_min_t) e->lo_fp8_min_t = std::max(1, std::atoi(lo_fp8_min_t));
    e->profiling = env_starts("ZAMBA2_PROFILE", '1');
    e->graphs_enabled = !e->profiling && !env_starts("ZAMBA2_NO_GRAPHS", '1');
    // steps of up to skinny_max_m tokens run their GEMMs through skinny_gemm (ZAMBA2_SKINNY_MAX_M=0 turns it off)
    const char * skinny = std::getenv("ZAMBA2_SKINNY_MAX_M");
    if (skinny && *skinny) e->skinny_max_m = std::max(0, std::min(ZK_SKINNY_MAX_M, std::atoi(skinny)));
    // on by default since run 4 (goldens pass, decode b64 9.69 -> 7.87 ms); ZAMBA2_DECODE_STEP=0 turns it off
    e->use_decode_step = !env_starts("ZAMBA2_DECODE_STEP", '0');
    // decode steps of <= ZK_FUSE_MAX_M sequences fuse the norms, the conv and the MLP activation into the GEMVs
    // (zamba2-decode-fused.cc); ZAMBA2_FUSE_DECODE=0 runs them as separate kernels
    e->fuse_decode = !env_starts("ZAMBA2_FUSE_DECODE", '0');
    e->skinny_late_weights = env_starts("ZAMBA2_SKINNY_PRELOAD", '0');
    e->skinny_no_stage = env_starts("ZAMBA2_SKINNY_STAGE", '0');
    e->skinny_no_second_group = env_starts("ZAMBA2_SKINNY_GROUP2", '0');
    e->skinny_split_k = std::max(0, env_int("ZAMBA2_SKINNY_SPLIT_K", 0));  // K slices per tile; unset or 0: per shape
    e->merge_decode = !env_starts("ZAMBA2_DECODE_MERGE", '0');  // 0: decode keeps the block weights and adapters
    e->skinny_no_half_tiles = env_starts("ZAMBA2_SKINNY_HALF", '0');
    e->skinny_no_conv_stage = env_starts("ZAMBA2_SKINNY_CONV_STAGE", '0');
    // each item issues its CTA's next item's first weights before its finish (run 62: b1 -35 us); =0: not
    e->skinny_no_cross_preload = env_starts("ZAMBA2_SKINNY_CROSS", '0');
    // the gated state step lets out_proj's CTAs launch before its own wait (run 47: b1 1.630 -> 1.594 ms);
    // ZAMBA2_STATE_TRIGGER=late: after it, as every other kernel that waits first
    // batch-1 decode's Mamba2 layers as persistent launches where the GPU has bulk copies and mbarrier transaction
    // counts (sm_90+; default since run 101: b1 1.51 -> 1.39 ms); ZAMBA2_PERSIST=0: the fused per-layer kernels
    e->persist_decode = cc_major >= 9 && !env_starts("ZAMBA2_PERSIST", '0');
    e->persist_max_runs = std::max(0, env_int("ZAMBA2_PERSIST_RUNS", 1 << 20));
    // each launch after a hybrid layer runs the block's last GEMV first (run 112: b1 -6 us, full bench -13 us);
    // ZAMBA2_PERSIST_DOWN=0: as its own kernel
    e->persist_down = !env_starts("ZAMBA2_PERSIST_DOWN", '0');
    // ZAMBA2_SMEM_CARVEOUT=P: every zk_launch kernel prefers P% shared memory (include/zamba2-launch.cuh says why);
    // default: no preference, or 50 on decode-only steps with the persistent decode
    e->carveout_all = std::max(-1, std::min(100, env_int("ZAMBA2_SMEM_CARVEOUT", -1)));
    e->carveout_decode = e->carveout_all >= 0 ? e->carveout_all : e->persist_decode ? 50 : -1;
    zk_state_step_early_trigger() = !env_starts("ZAMBA2_STATE_TRIGGER", 'l');
    e->split_inputs = !env_starts("ZAMBA2_SPLIT_GEMM", '0');
    e->split_z = !env_starts("ZAMBA2_SPLIT_Z", '0');
    // steps with prefill chunks run the tensor-core chunked SSD (default since run 6: prefill 2048 87 -> 39 ms,
    // goldens unchanged); ZAMBA2_SSD=0 falls back to the sequential scan
    e->use_ssd = !env_starts("ZAMBA2_SSD", '0');
    // mixed steps (prefill chunks + decodes): the one-token sequences through the state step, as in decode-only steps
    // (run 114: a step of 63 decodes and one 128-token prompt spent 8.1 ms in the scan, the decodes as 64-token SSD
    // chunks, against 2.7 ms for a step of 64 decodes); the state step takes every preset's dims
    const zamba2_config & c = e->cfg;
    e->ssd_one_by_step = e->use_decode_step && !env_starts("ZAMBA2_MIXED_STEP", '0') &&
                         mamba2_state_step_chunk(c.mamba_head_dim, c.d_state) > 0 && c.conv_dim() % 4 == 0 &&
                         c.d_inner % 4 == 0;
}
