// The engine's ZAMBA2_* environment switches, read once at engine creation (zamba2_engine_create). Each one turns
// a measured default off or an experiment on; kernels/README.md lists them and kernels/NOTES.md has the
// measurements behind each default.
#include <algorithm>
#include <cstdlib>

#include "zamba2-engine-internal.h"

#include "../include/zamba2-launch.cuh"

void zamba2_read_switches(zamba2_engine * e) {
    // FP8 lo terms: on by default where the GPU has FP8 tensor cores (compute capability 8.9 and up)
    int cc_major = 0, cc_minor = 0;
    cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, e->device);
    cudaDeviceGetAttribute(&cc_minor, cudaDevAttrComputeCapabilityMinor, e->device);
    const char * lo_fp8 = std::getenv("ZAMBA2_LO_FP8");
    e->lo_fp8 = cc_major * 10 + cc_minor >= 89 && !(lo_fp8 && lo_fp8[0] == '0');
    // kernels launched through zk_launch overlap their launch with the previous kernel's tail (sm_90+;
    // ZAMBA2_PDL=0 turns it off). Process-wide: every engine of a process runs on the same kind of GPU.
    const char * pdl = std::getenv("ZAMBA2_PDL");
    zk_pdl_enabled() = cc_major >= 9 && !(pdl && pdl[0] == '0');
    const char * lo_fp8_min_t = std::getenv("ZAMBA2_LO_FP8_MIN_T");
    if (lo_fp8_min_t && *lo_fp8_min_t) e->lo_fp8_min_t = std::max(1, std::atoi(lo_fp8_min_t));
    const char * prof = std::getenv("ZAMBA2_PROFILE");
    e->profiling = prof && prof[0] == '1';
    const char * no_graphs = std::getenv("ZAMBA2_NO_GRAPHS");
    e->graphs_enabled = !e->profiling && !(no_graphs && no_graphs[0] == '1');
    // steps of up to skinny_max_m tokens run their GEMMs through skinny_gemm (ZAMBA2_SKINNY_MAX_M=0 turns it off)
    const char * skinny = std::getenv("ZAMBA2_SKINNY_MAX_M");
    if (skinny && *skinny) e->skinny_max_m = std::max(0, std::min(ZK_SKINNY_MAX_M, std::atoi(skinny)));
    // on by default since run 4 (goldens pass, decode b64 9.69 -> 7.87 ms); ZAMBA2_DECODE_STEP=0 turns it off
    const char * decode_step = std::getenv("ZAMBA2_DECODE_STEP");
    e->use_decode_step = !(decode_step && decode_step[0] == '0');
    // decode steps of <= ZK_FUSE_MAX_M sequences fuse the norms, the conv and the MLP activation into the GEMVs
    // (zamba2-decode-fused.cc); ZAMBA2_FUSE_DECODE=0 runs them as separate kernels
    const char * fuse = std::getenv("ZAMBA2_FUSE_DECODE");
    e->fuse_decode = !(fuse && fuse[0] == '0');
    const char * late_w = std::getenv("ZAMBA2_SKINNY_PRELOAD");
    e->skinny_late_weights = late_w && late_w[0] == '0';
    const char * stage = std::getenv("ZAMBA2_SKINNY_STAGE");
    e->skinny_no_stage = stage && stage[0] == '0';
    const char * group2 = std::getenv("ZAMBA2_SKINNY_GROUP2");
    e->skinny_no_second_group = group2 && group2[0] == '0';
    const char * split_k = std::getenv("ZAMBA2_SKINNY_SPLIT_K");  // K slices per tile; unset or 0: per shape
    e->skinny_split_k = split_k ? std::max(0, std::atoi(split_k)) : 0;
    const char * merge = std::getenv("ZAMBA2_DECODE_MERGE");  // 0: decode keeps the block weights and adapters
    e->merge_decode = !(merge && merge[0] == '0');
    const char * ring = std::getenv("ZAMBA2_SKINNY_RING");
    const int ring_n = ring ? std::max(0, std::atoi(ring)) : 0;
    e->skinny_ring = ring_n > 0;
    e->skinny_ring_stages = ring_n > 1 ? ring_n : 0;
    const char * ring_chunk = std::getenv("ZAMBA2_SKINNY_RING_CHUNK");
    e->skinny_ring_chunk_steps = ring_chunk ? std::atoi(ring_chunk) : 0;
    const char * ctas = std::getenv("ZAMBA2_SKINNY_CTAS");
    e->skinny_ctas_per_sm = ctas ? std::atoi(ctas) : 0;
    const char * split = std::getenv("ZAMBA2_SPLIT_GEMM");
    e->split_inputs = !(split && split[0] == '0');
    const char * split_z = std::getenv("ZAMBA2_SPLIT_Z");
    e->split_z = !(split_z && split_z[0] == '0');
    // steps with prefill chunks run the tensor-core chunked SSD (default since run 6: prefill 2048 87 -> 39 ms,
    // goldens unchanged); ZAMBA2_SSD=0 falls back to the sequential scan
    const char * ssd = std::getenv("ZAMBA2_SSD");
    e->use_ssd = !(ssd && ssd[0] == '0');
}
