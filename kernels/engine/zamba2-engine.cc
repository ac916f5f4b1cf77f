// Engine lifetime: weight table, uploads (with dtype conversion), pools, slot copies.
// The step itself is in zamba2-forward.cc.
#include "zamba2-engine-internal.h"

#include "../include/zamba2-launch.cuh"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#define ZE_CUDA(call)                                                                              \
    do {                                                                                           \
        cudaError_t err_ = (call);                                                                 \
        if (err_ != cudaSuccess) return std::string(#call ": ") + cudaGetErrorString(err_);        \
    } while (0)

size_t zamba2_config::state_slot_bytes() const {
    return (size_t) n_layers * ((size_t) 3 * conv_dim() * sizeof(float) +
                                (size_t) n_mamba_heads * mamba_head_dim * d_state * sizeof(float));
}

size_t zamba2_config::kv_page_bytes() const {
    return hybrid_layer_ids.size() * 2 * (size_t) 16 * heads * head_dim * sizeof(bf16);
}

static void add_spec(zamba2_engine * e, const std::string & name, size_t numel, bool f32 = false) {
    e->specs.push_back({name, numel, f32});
}

static void build_specs(zamba2_engine * e) {
    const zamba2_config & c = e->cfg;
    const size_t H = c.hidden, H2 = 2 * c.hidden, F = c.ffn, r = c.adapter_rank;
    add_spec(e, "embed", (size_t) c.vocab * H);
    add_spec(e, "final_norm", H);
    if (!c.tie_embeddings) add_spec(e, "lm_head", (size_t) c.vocab * H);
    std::vector<bool> hybrid(c.n_layers, false);
    for (int id : c.hybrid_layer_ids) hybrid[id] = true;
    for (int L = 0; L < c.n_layers; ++L) {
        const std::string p = "layers." + std::to_string(L) + ".";
        add_spec(e, p + "input_norm", H);
        add_spec(e, p + "in_proj", (size_t) c.in_proj_out() * H);
        add_spec(e, p + "conv_w", (size_t) c.conv_dim() * 4);
        if (c.use_conv_bias) add_spec(e, p + "conv_b", c.conv_dim());
        add_spec(e, p + "dt_bias", c.n_mamba_heads, true);
        add_spec(e, p + "a_log", c.n_mamba_heads, true);
        add_spec(e, p + "d", c.n_mamba_heads, true);
        add_spec(e, p + "norm", c.d_inner);
        add_spec(e, p + "out_proj", H * c.d_inner);
        if (hybrid[L]) add_spec(e, p + "linear", H * H);
    }
    for (int k = 0; k < c.n_mem_blocks; ++k) {
        const std::string p = "blocks." + std::to_string(k) + ".";
        add_spec(e, p + "input_norm", H2);
        for (const char * n : {"q", "k", "v"}) add_spec(e, p + n, H2 * H2);
        add_spec(e, p + "o", H * H2);
        add_spec(e, p + "pre_ff_norm", H);
        add_spec(e, p + "gate_up", 2 * F * H);
        add_spec(e, p + "down", H * F);
    }
    for (size_t h = 0; h < c.hybrid_layer_ids.size(); ++h) {
        const std::string p = "adapters." + std::to_string(h) + ".";
        if (c.use_attn_adapter) {
            for (const char * n : {"q", "k", "v"}) {
                add_spec(e, p + n + ".w0", r * H2);
                add_spec(e, p + n + ".w1", H2 * r);
            }
        }
        if (c.use_mlp_adapter) {
            add_spec(e, p + "gate_up.w0", r * H);
            add_spec(e, p + "gate_up.w1", 2 * F * r);
        }
    }
}

static std::string alloc_bytes(zamba2_engine * e, void ** ptr, size_t bytes) {
    ZE_CUDA(cudaMalloc(ptr, bytes ? bytes : 16));
    e->device_bytes += bytes;
    return "";
}

template <typename T> static std::string alloc_n(zamba2_engine * e, T ** ptr, size_t n) {
    return alloc_bytes(e, reinterpret_cast<void **>(ptr), n * sizeof(T));
}

static std::string alloc_scratch(zamba2_engine * e) {
    const zamba2_config & c = e->cfg;
    const size_t T = c.max_tokens, H = c.hidden;
    zamba2_scratch & s = e->s;
    std::string err;
    auto bf = [&](bf16 ** p, size_t n) { if (err.empty()) err = alloc_n(e, p, n); };
    auto f32 = [&](float ** p, size_t n) { if (err.empty()) err = alloc_n(e, p, n); };
    const size_t ipo = c.in_proj_out(), F2 = 2 * (size_t) c.ffn, H2 = 2 * (size_t) H;
    f32(&s.x, T * H); f32(&s.tr, T * H); f32(&s.zx, T * ipo); f32(&s.xbc, T * c.conv_dim());
    f32(&s.q, T * H2); f32(&s.k, T * H2); f32(&s.vv, T * H2); f32(&s.attf, T * H2); f32(&s.a, T * H);
    f32(&s.gu, T * F2); f32(&s.hl, T * H);
    f32(&s.gsq, (size_t) ZK_FUSE_MAX_M * c.d_inner);  // chunk sums of the gated step (fused decode)
    f32(&s.ysplit, 2 * T * std::max(std::max(ipo, F2), H2));
    bf(&s.u, 2 * T * H); bf(&s.u2, 2 * T * H2); bf(&s.v, 2 * T * c.d_inner); bf(&s.att, 2 * T * H2);
    bf(&s.vn, 2 * T * H); bf(&s.e, T * H); bf(&s.act, T * c.ffn); bf(&s.m, T * H);
    bf(&s.lora, 2 * T * (size_t) (c.adapter_rank > 0 ? c.adapter_rank : 1)); bf(&s.hn, T * H);
    if (err.empty() && e->lo_fp8) err = alloc_n(e, &s.lo8, T * std::max(H2, (size_t) c.d_inner));
    f32(&s.lora3, (size_t) ZK_SKINNY_MAX_M * 3 * (c.adapter_rank > 0 ? c.adapter_rank : 1));
    f32(&s.skinny_work, (size_t) ZK_SKINNY_WORK_FLOATS);
    if (err.empty()) err = alloc_n(e, &s.skinny_counters, (size_t) ZK_SKINNY_COUNTERS);
    if (err.empty() && cudaMemset(s.skinny_counters, 0, ZK_SKINNY_COUNTERS * sizeof(int32_t)) != cudaSuccess) err = "cudaMemset failed";
    if (err.empty()) err = alloc_n(e, &s.y, T * c.d_inner);
    if (err.empty()) err = alloc_n(e, &s.logits, T * (size_t) c.vocab);
    if (err.empty()) err = alloc_n(e, &s.argmax, T);
    if (err.empty()) err = alloc_n(e, &s.max_logit, T);
    if (err.empty()) err = alloc_n(e, &s.lse, T);
    s.packed_cap = 8 + 4 * T + 2 * (size_t) c.max_seqs + 1 + (size_t) c.max_seqs * c.max_pages_per_seq() + T +
                   (size_t) c.max_seqs * 4;
    if (err.empty()) err = alloc_n(e, &s.packed, s.packed_cap);
    if (!err.empty()) return err;
    e->h_packed_cap = s.packed_cap;
    ZE_CUDA(cudaMallocHost(&e->h_packed, e->h_packed_cap * sizeof(int32_t)));
    ZE_CUDA(cudaMallocHost(&e->h_out, T * (size_t) c.vocab * sizeof(float) + 3 * T * sizeof(float)));
    return "";
}

static std::string validate(const zamba2_config & c) {
    if (c.hidden <= 0 || c.n_layers <= 0 || c.vocab <= 0) return "config: empty model";
    if (c.heads * c.head_dim != 2 * c.hidden) return "config: heads * head_dim must equal 2 * hidden";
    if (c.head_dim > 256 || c.head_dim % 2) return "config: head_dim must be even and <= 256";
    if (c.d_state > 256) return "config: d_state must be <= 256";
    if (c.n_mamba_heads * c.mamba_head_dim != c.d_inner) return "config: n_mamba_heads * mamba_head_dim != d_inner";
    if (c.n_mamba_heads % c.ngroups || c.d_inner % c.ngroups) return "config: ngroups must divide heads and d_inner";
    if (c.hybrid_layer_ids.size() != c.hybrid_block_ids.size()) return "config: hybrid ids and block ids differ in length";
    for (int id : c.hybrid_layer_ids) if (id < 0 || id >= c.n_layers) return "config: hybrid layer id out of range";
    for (int b : c.hybrid_block_ids) if (b < 0 || b >= c.n_mem_blocks) return "config: block id out of range";
    if (c.max_tokens <= 0 || c.max_seqs <= 0 || c.max_model_len <= 0) return "config: step limits must be positive";
    if ((c.use_attn_adapter || c.use_mlp_adapter) && c.adapter_rank <= 0) return "config: adapter rank must be positive";
    return "";
}

// The engine's device must exist; it becomes current on the creating thread.
static std::string select_device(int index) {
    int count = 0;
    const cudaError_t st = cudaGetDeviceCount(&count);
    if (st != cudaSuccess) return std::string("no CUDA device: ") + cudaGetErrorString(st);
    if (index < 0 || index >= count) {
        return "deviceIndex " + std::to_string(index) + " is out of range: " + std::to_string(count) +
               " CUDA device(s) visible (0.." + std::to_string(count - 1) + ")";
    }
    ZE_CUDA(cudaSetDevice(index));
    return "";
}

zamba2_engine * zamba2_engine_create(const zamba2_config & cfg, std::string * error) {
    std::string err = validate(cfg);
    if (err.empty()) err = select_device(cfg.device_index);
    if (!err.empty()) { if (error) *error = err; return nullptr; }
    auto * e = new zamba2_engine();
    e->cfg = cfg;
    e->device = cfg.device_index;
    zamba2_read_switches(e);  // ZAMBA2_* environment switches (zamba2-switches.cc)
    build_specs(e);
    if (e->lo_fp8 && !zamba2_fp8_copies_fit(e)) e->lo_fp8 = false;  // a large model on a small GPU: bf16 lo terms
    for (const auto & sp : e->specs) {
        zamba2_tensor t;
        t.numel = sp.numel;
        t.f32 = sp.f32;
        err = alloc_bytes(e, &t.ptr, sp.numel * (sp.f32 ? 4 : 2));
        if (err.empty() && e->lo_fp8 && !sp.f32 && zamba2_wants_fp8(sp.name)) err = alloc_n(e, &t.fp8, sp.numel);
        e->weights[sp.name] = t;
        if (!err.empty()) break;
    }
    if (err.empty()) err = alloc_scratch(e);
    if (err.empty()) err = zamba2_sampling_init(e);
    if (err.empty() && cudaStreamCreateWithFlags(&e->stream, cudaStreamNonBlocking) != cudaSuccess) err = "cudaStreamCreate failed";
    if (err.empty()) { cudaEventCreate(&e->ev_start); cudaEventCreate(&e->ev_stop); }
    if (err.empty() && e->use_ssd) {
        // one chunk per 64 tokens plus one partial chunk per sequence
        const zamba2_config & c = e->cfg;
        e->ssd_max_chunks = c.max_tokens / 64 + c.max_seqs;
        // C·B^T per (chunk, group): [max_chunks, G, 64, 64] (mamba2_ssd_varlen's cb_buf)
        const size_t per_chunk = (size_t) c.ngroups * ZK_SSD_CHUNK_TOKENS * ZK_SSD_CHUNK_TOKENS;
        err = alloc_n(e, &e->ssd_states, (size_t) e->ssd_max_chunks * per_chunk);
        if (err.empty()) err = alloc_n(e, &e->ssd_dt, (size_t) e->ssd_max_chunks * c.n_mamba_heads * 64);
        if (err.empty()) err = alloc_n(e, &e->ssd_lam, (size_t) e->ssd_max_chunks * c.n_mamba_heads * 64);
        const size_t n_idx = 2 * (size_t) e->ssd_max_chunks + 4 * (size_t) c.max_seqs;
        if (err.empty()) err = alloc_n(e, &e->ssd_chunks, n_idx);
        if (err.empty() && cudaMallocHost(&e->h_ssd_chunks, n_idx * sizeof(int32_t)) != cudaSuccess) err = "cudaMallocHost failed";
    }
    if (err.empty()) {
        const char * gerr = nullptr;
        e->gemm = gemm_context_create((size_t) 32 << 20, &gerr);
        if (!e->gemm) err = gerr ? gerr : "cuBLASLt init failed";
        const zamba2_config & c = e->cfg;
        const size_t ysplit_floats = 2 * (size_t) c.max_tokens * std::max(std::max((size_t) c.in_proj_out(), 2 * (size_t) c.ffn), 2 * (size_t) c.hidden);
        if (e->gemm) gemm_context_set_tune_scratch(e->gemm, e->s.ysplit, ysplit_floats * sizeof(float));
    }
    if (!err.empty()) {
        if (error) *error = err;
        zamba2_engine_destroy(e);
        return nullptr;
    }
    return e;
}

void zamba2_engine_destroy(zamba2_engine * e) {
    if (!e) return;
    zamba2_engine_use_device(e);
    if (e->stream) cudaStreamSynchronize(e->stream);
    zamba2_sampling_free(e);
    zamba2_free_decode_weights(e);
    zamba2_free_persist(e);
    for (auto & kv : e->weights) {
        cudaFree(kv.second.ptr);
        if (kv.second.fp8) cudaFree(kv.second.fp8);
    }
    zamba2_scratch & s = e->s;
    for (void * p : std::initializer_list<void *>{s.x, s.e, s.u, s.u2, s.zx, s.xbc, s.v, s.q, s.k, s.vv, s.att, s.a,
                                                  s.vn, s.gu, s.act, s.m, s.tr, s.lora, s.gsq, s.hl, s.hn, s.y, s.logits,
                                                  s.attf, s.ysplit, s.lora3, s.skinny_work, s.skinny_counters,
                                                  s.argmax, s.max_logit, s.lse, s.packed, s.lo8, e->conv_pool, e->ssm_pool,
                                                  e->kv_pool}) {
        if (p) cudaFree(p);
    }
    for (auto & kv : e->graphs) cudaGraphExecDestroy(kv.second);
    for (cudaEvent_t ev : e->prof_events) cudaEventDestroy(ev);
    for (void * p : std::initializer_list<void *>{e->ssd_states, e->ssd_dt, e->ssd_lam, e->ssd_chunks}) if (p) cudaFree(p);
    if (e->h_ssd_chunks) cudaFreeHost(e->h_ssd_chunks);
    if (e->h_packed) cudaFreeHost(e->h_packed);
    if (e->h_out) cudaFreeHost(e->h_out);
    if (e->gemm) gemm_context_destroy(e->gemm);
    if (e->ev_start) cudaEventDestroy(e->ev_start);
    if (e->ev_stop) cudaEventDestroy(e->ev_stop);
    if (e->stream) cudaStreamDestroy(e->stream);
    delete e;
}

const std::vector<zamba2_weight_spec> & zamba2_engine_weight_specs(const zamba2_engine * e) { return e->specs; }

// bf16 <- f32 with round-to-nearest-even (NaN kept quiet).
static uint16_t f32_to_bf16_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t) ((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t) (u >> 16);
}

static float bf16_bits_to_f32(uint16_t b) {
    const uint32_t u = (uint32_t) b << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

static float f16_bits_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t) (h >> 15) << 31;
    int exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t u;
    if (exp == 0) {
        if (mant == 0) u = sign;
        else {  // subnormal
            exp = 1;
            while (!(mant & 0x400)) { mant <<= 1; --exp; }
            mant &= 0x3ff;
            u = sign | ((uint32_t) (exp + 112) << 23) | (mant << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (mant << 13);
    else u = sign | ((uint32_t) (exp + 112) << 23) | (mant << 13);
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// Once every weight is on the GPU, resolve at once instead of at the first step: resolution makes the decode
// weights (zamba2-decode-weights.cc, GPU memory), and the free memory the host reads right after the upload sizes
// the state and KV pools (src/engine/cuda/index.ts): made later, they would find the pools holding that memory.
// A failure leaves the engine unresolved: the first step resolves again and reports it. Called when an upload
// loaded a weight for the first time (a later re-upload is resolved lazily, at the next step, not once per weight).
static void resolve_when_complete(zamba2_engine * e) {
    for (const auto & sp : e->specs) {
        if (!e->weights.at(sp.name).loaded) return;
    }
    if (!zamba2_resolve_weights(e).empty()) e->resolved = false;
}

std::string zamba2_engine_set_weight(zamba2_engine * e, const std::string & name, int src_dtype, const void * data,
                                     size_t numel) {
    zamba2_engine_use_device(e);
    auto it = e->weights.find(name);
    if (it == e->weights.end()) return "unknown weight '" + name + "'";
    zamba2_tensor & t = it->second;
    if (numel != t.numel) {
        return "weight '" + name + "': expected " + std::to_string(t.numel) + " elements, got " + std::to_string(numel);
    }
    if (src_dtype < 0 || src_dtype > 2) return "weight '" + name + "': unknown source dtype";
    std::vector<uint8_t> staging;
    const void * src = data;
    auto read_f32 = [&](size_t i) -> float {
        if (src_dtype == 2) return static_cast<const float *>(data)[i];
        const uint16_t b = static_cast<const uint16_t *>(data)[i];
        return src_dtype == 0 ? bf16_bits_to_f32(b) : f16_bits_to_f32(b);
    };
    if (t.f32 && src_dtype != 2) {
        staging.resize(numel * 4);
        float * dst = reinterpret_cast<float *>(staging.data());
        for (size_t i = 0; i < numel; ++i) dst[i] = read_f32(i);
        src = staging.data();
    } else if (!t.f32 && src_dtype != 0) {
        staging.resize(numel * 2);
        uint16_t * dst = reinterpret_cast<uint16_t *>(staging.data());
        for (size_t i = 0; i < numel; ++i) dst[i] = f32_to_bf16_bits(read_f32(i));
        src = staging.data();
    }
    ZE_CUDA(cudaMemcpy(t.ptr, src, numel * (t.f32 ? 4 : 2), cudaMemcpyHostToDevice));
    const std::string err = zamba2_make_fp8_copy(e, t);
    if (!err.empty()) return "weight '" + name + "': " + err;
    const bool first_load = !t.loaded;
    t.loaded = true;
    e->resolved = false;
    if (first_load) resolve_when_complete(e);
    return "";
}

std::string zamba2_engine_fill_random(zamba2_engine * e, uint64_t seed) {
    zamba2_engine_use_device(e);
    uint64_t k = 0;
    for (const auto & sp : e->specs) {
        zamba2_tensor & t = e->weights[sp.name];
        const std::string & n = sp.name;
        const bool is_norm = n.size() >= 4 && (n.compare(n.size() - 4, 4, "norm") == 0);
        if (t.f32) {
            float scale = 0.5f, offset = 0.0f;  // dt_bias
            if (n.find("a_log") != std::string::npos) { scale = 1.0f; offset = 1.5f; }
            if (n.compare(n.size() - 2, 2, ".d") == 0) { scale = 0.1f; offset = 1.0f; }
            fill_random_f32(static_cast<float *>(t.ptr), (int64_t) t.numel, seed + 7919 * ++k, scale, offset, e->stream);
        } else {
            // 1/sqrt(fan_in)-sized weights keep the random model's activations in range
            const float scale = is_norm ? 0.1f : 0.02f;
            fill_random_bf16(static_cast<bf16 *>(t.ptr), (int64_t) t.numel, seed + 7919 * ++k, scale,
                             is_norm ? 1.0f : 0.0f, e->stream);
        }
        t.loaded = true;
    }
    ZE_CUDA(cudaGetLastError());
    ZE_CUDA(cudaStreamSynchronize(e->stream));
    for (auto & kv : e->weights) {
        const std::string err = zamba2_make_fp8_copy(e, kv.second);
        if (!err.empty()) return "weight '" + kv.first + "': " + err;
    }
    e->resolved = false;
    resolve_when_complete(e);
    return "";
}

std::string zamba2_engine_missing_weights(const zamba2_engine * e) {
    std::string missing;
    for (const auto & sp : e->specs) {
        if (!e->weights.at(sp.name).loaded) missing += (missing.empty() ? "" : ", ") + sp.name;
    }
    return missing;
}

std::string zamba2_resolve_weights(zamba2_engine * e) {
    const std::string missing = zamba2_engine_missing_weights(e);
    if (!missing.empty()) return "weights not uploaded: " + missing.substr(0, 400);
    const zamba2_config & c = e->cfg;
    auto b = [&](const std::string & n) -> const bf16 * {
        auto it = e->weights.find(n);
        return it == e->weights.end() ? nullptr : static_cast<const bf16 *>(it->second.ptr);
    };
    auto f = [&](const std::string & n) { return static_cast<const float *>(e->weights.at(n).ptr); };
    e->embed = b("embed");
    e->final_norm = b("final_norm");
    e->lm_head = c.tie_embeddings ? e->embed : b("lm_head");
    e->layers.clear();
    for (int L = 0; L < c.n_layers; ++L) {
        const std::string p = "layers." + std::to_string(L) + ".";
        e->layers.push_back({b(p + "input_norm"), b(p + "in_proj"), b(p + "conv_w"), b(p + "conv_b"), b(p + "norm"),
                             b(p + "out_proj"), b(p + "linear"), f(p + "dt_bias"), f(p + "a_log"), f(p + "d")});
    }
    e->blocks.clear();
    for (int k = 0; k < c.n_mem_blocks; ++k) {
        const std::string p = "blocks." + std::to_string(k) + ".";
        e->blocks.push_back({b(p + "input_norm"), b(p + "q"), b(p + "k"), b(p + "v"), b(p + "o"), b(p + "pre_ff_norm"),
                             b(p + "gate_up"), b(p + "down")});
    }
    e->fp8_of.clear();
    for (const auto & kv : e->weights) {
        if (kv.second.fp8) e->fp8_of[static_cast<const bf16 *>(kv.second.ptr)] = {kv.second.fp8, kv.second.fp8_scale};
    }
    e->adapters.clear();
    for (size_t h = 0; h < c.hybrid_layer_ids.size(); ++h) {
        const std::string p = "adapters." + std::to_string(h) + ".";
        e->adapters.push_back({b(p + "q.w0"), b(p + "q.w1"), b(p + "k.w0"), b(p + "k.w1"), b(p + "v.w0"),
                               b(p + "v.w1"), b(p + "gate_up.w0"), b(p + "gate_up.w1")});
    }
    const std::string err = zamba2_make_decode_weights(e);
    if (!err.empty()) return err;
    e->resolved = true;
    return "";
}

std::string zamba2_engine_init_cache(zamba2_engine * e, int slot_count, int page_count) {
    zamba2_engine_use_device(e);
    if (e->conv_pool) return "cache already initialized";
    if (slot_count <= 0 || page_count < 0) return "cache: slot count must be positive";
    e->slot_count = slot_count;
    e->page_count = page_count;
    const zamba2_config & c = e->cfg;
    std::string err = alloc_n(e, &e->conv_pool, (size_t) c.n_layers * e->conv_layer_elems());
    if (err.empty()) err = alloc_n(e, &e->ssm_pool, (size_t) c.n_layers * e->ssm_layer_elems());
    if (err.empty()) err = alloc_n(e, &e->kv_pool, c.hybrid_layer_ids.size() * 2 * e->kv_layer_elems());
    if (!err.empty()) return err;
    ZE_CUDA(cudaMemset(e->conv_pool, 0, (size_t) c.n_layers * e->conv_layer_elems() * sizeof(float)));
    ZE_CUDA(cudaMemset(e->ssm_pool, 0, (size_t) c.n_layers * e->ssm_layer_elems() * sizeof(float)));
    return "";
}

std::string zamba2_engine_copy_slot(zamba2_engine * e, int src, int dst) {
    zamba2_engine_use_device(e);
    if (src < 0 || dst < 0 || src >= e->slot_count || dst >= e->slot_count) return "copySlot: slot out of range";
    if (src == dst) return "";
    const size_t conv_slot = (size_t) 3 * e->cfg.conv_dim();
    const size_t ssm_slot = e->ssm_layer_elems() / e->slot_count;
    for (int L = 0; L < e->cfg.n_layers; ++L) {
        float * conv = e->conv_pool + (size_t) L * e->conv_layer_elems();
        float * ssm = e->ssm_pool + (size_t) L * e->ssm_layer_elems();
        ZE_CUDA(cudaMemcpyAsync(conv + dst * conv_slot, conv + src * conv_slot, conv_slot * sizeof(float),
                                cudaMemcpyDeviceToDevice, e->stream));
        ZE_CUDA(cudaMemcpyAsync(ssm + dst * ssm_slot, ssm + src * ssm_slot, ssm_slot * sizeof(float),
                                cudaMemcpyDeviceToDevice, e->stream));
    }
    ZE_CUDA(cudaStreamSynchronize(e->stream));
    return "";
}

size_t zamba2_engine_device_bytes(const zamba2_engine * e) { return e->device_bytes; }

void zamba2_prof_mark(zamba2_engine * e, int cat) {
    if (!e->profiling) return;
    if (e->prof_used == e->prof_events.size()) {
        cudaEvent_t ev;
        cudaEventCreate(&ev);
        e->prof_events.push_back(ev);
        e->prof_cats.push_back(cat);
    }
    e->prof_cats[e->prof_used] = cat;
    cudaEventRecord(e->prof_events[e->prof_used++], e->stream);
}

std::string zamba2_engine_profile_report(zamba2_engine * e) {
    static const char * names[PROF_N] = {"gemm", "norm", "conv", "scan", "attention", "elementwise", "logits", "copy"};
    double total = 0;
    for (int i = 0; i < PROF_N; ++i) total += e->prof_ms[i];
    std::string out;
    char buf[96];
    for (int i = 0; i < PROF_N; ++i) {
        std::snprintf(buf, sizeof(buf), "%s %.3f ms (%.0f%%)%s", names[i], e->prof_ms[i] / std::max(1, e->prof_steps),
                      total > 0 ? 100.0 * e->prof_ms[i] / total : 0.0, i + 1 < PROF_N ? ", " : "");
        out += buf;
        e->prof_ms[i] = 0;
    }
    e->prof_steps = 0;
    return out;
}
