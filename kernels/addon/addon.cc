// Node-API glue for the zamba2 CUDA engine (plain C N-API, node-api-headers). Exposes one engine
// handle (an External) and functions over it; `step` runs on the libuv thread pool and resolves a
// Promise, so the JS thread never waits on the GPU. The typed JS surface is
// src/engine/cuda/binding.ts; keep the two in sync.
//
// Threading: JS calls every function from the main thread. At most one step is in flight per
// engine (the scheduler awaits each step); other calls on a busy engine throw. Every engine call
// makes the engine's device (config.deviceIndex) current on its thread: the engine functions on
// the JS thread, step_execute on the libuv worker.
#include <node_api.h>

#include <cstring>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "../engine/zamba2-engine.h"

#define NAPI_OK(call)                                                                              \
    do {                                                                                           \
        if ((call) != napi_ok) { throw_last(env); return nullptr; }                                \
    } while (0)

static void throw_last(napi_env env) {
    const napi_extended_error_info * info = nullptr;
    napi_get_last_error_info(env, &info);
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) napi_throw_error(env, "ZAMBA2_NAPI", info && info->error_message ? info->error_message : "N-API call failed");
}

static napi_value throw_error(napi_env env, const std::string & code, const std::string & msg) {
    napi_throw_error(env, code.c_str(), msg.c_str());
    return nullptr;
}

struct engine_box {
    zamba2_engine * engine = nullptr;
    bool busy = false;
    bool destroy_after_step = false;
};

static void box_finalize(napi_env, void * data, void *) {
    auto * box = static_cast<engine_box *>(data);
    if (box->busy) { box->destroy_after_step = true; return; }  // the step's completion frees it
    zamba2_engine_destroy(box->engine);
    delete box;
}

static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value * argv) {
    size_t argc = want;
    if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return false;
    if (argc < want) { napi_throw_type_error(env, "ZAMBA2_ARGS", "missing arguments"); return false; }
    return true;
}

static engine_box * get_box(napi_env env, napi_value v, bool allow_busy = false) {
    void * data = nullptr;
    if (napi_get_value_external(env, v, &data) != napi_ok || !data) {
        napi_throw_type_error(env, "ZAMBA2_ARGS", "expected an engine handle");
        return nullptr;
    }
    auto * box = static_cast<engine_box *>(data);
    if (!box->engine) { napi_throw_error(env, "ZAMBA2_CLOSED", "engine is closed"); return nullptr; }
    if (box->busy && !allow_busy) { napi_throw_error(env, "ZAMBA2_BUSY", "a step is in flight"); return nullptr; }
    return box;
}

static bool prop_i32(napi_env env, napi_value obj, const char * key, int * out, bool required = true) {
    napi_value v;
    bool has = false;
    napi_has_named_property(env, obj, key, &has);
    if (!has) {
        if (required) napi_throw_type_error(env, "ZAMBA2_CONFIG", (std::string("config.") + key + " is required").c_str());
        return !required;
    }
    napi_get_named_property(env, obj, key, &v);
    if (napi_get_value_int32(env, v, out) != napi_ok) {
        napi_throw_type_error(env, "ZAMBA2_CONFIG", (std::string("config.") + key + " must be a number").c_str());
        return false;
    }
    return true;
}

static bool prop_f32(napi_env env, napi_value obj, const char * key, float * out) {
    napi_value v;
    double d = 0;
    if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_get_value_double(env, v, &d) != napi_ok) {
        napi_throw_type_error(env, "ZAMBA2_CONFIG", (std::string("config.") + key + " must be a number").c_str());
        return false;
    }
    *out = (float) d;
    return true;
}

static bool prop_bool(napi_env env, napi_value obj, const char * key, bool * out) {
    napi_value v;
    if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_get_value_bool(env, v, out) != napi_ok) {
        napi_throw_type_error(env, "ZAMBA2_CONFIG", (std::string("config.") + key + " must be a boolean").c_str());
        return false;
    }
    return true;
}

static bool prop_int_array(napi_env env, napi_value obj, const char * key, std::vector<int> * out) {
    napi_value arr;
    uint32_t n = 0;
    bool is_array = false;
    if (napi_get_named_property(env, obj, key, &arr) != napi_ok || napi_is_array(env, arr, &is_array) != napi_ok ||
        !is_array || napi_get_array_length(env, arr, &n) != napi_ok) {
        napi_throw_type_error(env, "ZAMBA2_CONFIG", (std::string("config.") + key + " must be an array").c_str());
        return false;
    }
    out->resize(n);
    for (uint32_t i = 0; i < n; ++i) {
        napi_value el;
        napi_get_element(env, arr, i, &el);
        if (napi_get_value_int32(env, el, &(*out)[i]) != napi_ok) return false;
    }
    return true;
}

// createEngine(config) -> handle
static napi_value create_engine(napi_env env, napi_callback_info info) {
    napi_value argv[1];
    if (!get_args(env, info, 1, argv)) return nullptr;
    zamba2_config c;
    napi_value o = argv[0];
    const struct { const char * k; int * p; } ints[] = {
        {"vocab", &c.vocab}, {"hidden", &c.hidden}, {"nLayers", &c.n_layers}, {"nMemBlocks", &c.n_mem_blocks},
        {"heads", &c.heads}, {"headDim", &c.head_dim}, {"kvChannels", &c.kv_channels}, {"ffn", &c.ffn},
        {"dState", &c.d_state}, {"nGroups", &c.ngroups}, {"nMambaHeads", &c.n_mamba_heads},
        {"mambaHeadDim", &c.mamba_head_dim}, {"dInner", &c.d_inner}, {"adapterRank", &c.adapter_rank},
        {"maxTokens", &c.max_tokens}, {"maxSeqs", &c.max_seqs}, {"maxModelLen", &c.max_model_len}};
    for (const auto & it : ints) if (!prop_i32(env, o, it.k, it.p)) return nullptr;
    if (!prop_i32(env, o, "deviceIndex", &c.device_index, false)) return nullptr;
    const struct { const char * k; bool * p; } bools[] = {
        {"useAttnAdapter", &c.use_attn_adapter}, {"useMlpAdapter", &c.use_mlp_adapter}, {"useRope", &c.use_rope},
        {"useConvBias", &c.use_conv_bias}, {"tieEmbeddings", &c.tie_embeddings}};
    for (const auto & it : bools) if (!prop_bool(env, o, it.k, it.p)) return nullptr;
    if (!prop_f32(env, o, "ropeTheta", &c.rope_theta) || !prop_f32(env, o, "eps", &c.eps)) return nullptr;
    if (!prop_int_array(env, o, "hybridLayerIds", &c.hybrid_layer_ids) ||
        !prop_int_array(env, o, "hybridBlockIds", &c.hybrid_block_ids)) return nullptr;
    std::string err;
    zamba2_engine * e = zamba2_engine_create(c, &err);
    if (!e) return throw_error(env, "ZAMBA2_CREATE", err);
    auto * box = new engine_box();
    box->engine = e;
    napi_value handle;
    NAPI_OK(napi_create_external(env, box, box_finalize, nullptr, &handle));
    return handle;
}

static napi_value weight_specs(napi_env env, napi_callback_info info) {
    napi_value argv[1];
    if (!get_args(env, info, 1, argv)) return nullptr;
    engine_box * box = get_box(env, argv[0]);
    if (!box) return nullptr;
    const auto & specs = zamba2_engine_weight_specs(box->engine);
    napi_value arr;
    NAPI_OK(napi_create_array_with_length(env, specs.size(), &arr));
    for (size_t i = 0; i < specs.size(); ++i) {
        napi_value obj, name, numel, f32;
        NAPI_OK(napi_create_object(env, &obj));
        NAPI_OK(napi_create_string_utf8(env, specs[i].name.c_str(), specs[i].name.size(), &name));
        NAPI_OK(napi_create_double(env, (double) specs[i].numel, &numel));
        NAPI_OK(napi_get_boolean(env, specs[i].f32, &f32));
        napi_set_named_property(env, obj, "name", name);
        napi_set_named_property(env, obj, "numel", numel);
        napi_set_named_property(env, obj, "f32", f32);
        napi_set_element(env, arr, (uint32_t) i, obj);
    }
    return arr;
}

// setWeight(handle, name, srcDtype 0=bf16 1=f16 2=f32, bytes: Uint8Array)
static napi_value set_weight(napi_env env, napi_callback_info info) {
    napi_value argv[4];
    if (!get_args(env, info, 4, argv)) return nullptr;
    engine_box * box = get_box(env, argv[0]);
    if (!box) return nullptr;
    char name[256];
    size_t name_len = 0;
    int dtype = 0;
    NAPI_OK(napi_get_value_string_utf8(env, argv[1], name, sizeof(name), &name_len));
    NAPI_OK(napi_get_value_int32(env, argv[2], &dtype));
    napi_typedarray_type ta_type;
    size_t length = 0, byte_offset = 0;
    void * data = nullptr;
    napi_value ab;
    NAPI_OK(napi_get_typedarray_info(env, argv[3], &ta_type, &length, &data, &ab, &byte_offset));
    size_t bytes = length;
    if (ta_type != napi_uint8_array) return throw_error(env, "ZAMBA2_ARGS", "setWeight expects a Uint8Array");
    const size_t elem = dtype == 2 ? 4 : 2;
    if (bytes % elem) return throw_error(env, "ZAMBA2_ARGS", "weight byte length is not a multiple of the element size");
    const std::string err = zamba2_engine_set_weight(box->engine, std::string(name, name_len), dtype, data, bytes / elem);
    if (!err.empty()) return throw_error(env, "ZAMBA2_WEIGHT", err);
    return nullptr;
}

static napi_value fill_random(napi_env env, napi_callback_info info) {
    napi_value argv[2];
    if (!get_args(env, info, 2, argv)) return nullptr;
    engine_box * box = get_box(env, argv[0]);
    if (!box) return nullptr;
    int64_t seed = 0;
    NAPI_OK(napi_get_value_int64(env, argv[1], &seed));
    const std::string err = zamba2_engine_fill_random(box->engine, (uint64_t) seed);
    if (!err.empty()) return throw_error(env, "ZAMBA2_CUDA", err);
    return nullptr;
}

static napi_value init_cache(napi_env env, napi_callback_info info) {
    napi_value argv[3];
    if (!get_args(env, info, 3, argv)) return nullptr;
    engine_box * box = get_box(env, argv[0]);
    if (!box) return nullptr;
    int slots = 0, pages = 0;
    NAPI_OK(napi_get_value_int32(env, argv[1], &slots));
    NAPI_OK(napi_get_value_int32(env, argv[2], &pages));
    const std::string err = zamba2_engine_init_cache(box->engine, slots, pages);
    if (!err.empty()) return throw_error(env, "ZAMBA2_CUDA", err);
    return nullptr;
}

static napi_value copy_slot(napi_env env, napi_callback_info info) {
    napi_value argv[3];
    if (!get_args(env, info, 3, argv)) return nullptr;
    engine_box * box = get_box(env, argv[0]);
    if (!box) return nullptr;
    int src = 0, dst = 0;
    NAPI_OK(napi_get_value_int32(env, argv[1], &src));
    NAPI_OK(napi_get_value_int32(env, argv[2], &dst));
    const std::string err = zamba2_engine_copy_slot(box->engine, src, dst);
    if (!err.empty()) return throw_error(env, "ZAMBA2_CUDA", err);
    return nullptr;
}

struct step_work {
    engine_box * box;
    std::vector<int32_t> packed;
    std::vector<int32_t> sampling;  // GPU sampling input (empty: none)
    zamba2_step_output out;
    std::string error;
    napi_deferred deferred;
    napi_async_work work;
};

static void step_execute(napi_env, void * data) {
    auto * w = static_cast<step_work *>(data);
    zamba2_engine * e = w->box->engine;
    zamba2_engine_use_device(e);  // this libuv worker may never have touched the engine's device
    w->error = zamba2_engine_stage_sampling(e, w->sampling.data(), w->sampling.size());
    if (w->error.empty()) w->error = zamba2_engine_step(e, w->packed.data(), w->packed.size(), w->out);
}

template <typename T>
static napi_value make_typed(napi_env env, napi_typedarray_type type, const std::vector<T> & v) {
    napi_value ab, ta;
    void * data = nullptr;
    if (napi_create_arraybuffer(env, v.size() * sizeof(T), &data, &ab) != napi_ok) return nullptr;
    if (!v.empty()) std::memcpy(data, v.data(), v.size() * sizeof(T));
    if (napi_create_typedarray(env, type, v.size(), ab, 0, &ta) != napi_ok) return nullptr;
    return ta;
}

static void step_complete(napi_env env, napi_status status, void * data) {
    auto * w = static_cast<step_work *>(data);
    w->box->busy = false;
    if (status != napi_ok && w->error.empty()) w->error = "step was cancelled";
    if (!w->error.empty()) {
        napi_value msg, code, err;
        napi_create_string_utf8(env, w->error.c_str(), w->error.size(), &msg);
        napi_create_string_utf8(env, "ZAMBA2_STEP", NAPI_AUTO_LENGTH, &code);
        napi_create_error(env, code, msg, &err);
        napi_reject_deferred(env, w->deferred, err);
    } else {
        napi_value obj, ms, logits;
        napi_create_object(env, &obj);
        napi_set_named_property(env, obj, "argmax", make_typed(env, napi_int32_array, w->out.argmax));
        napi_set_named_property(env, obj, "maxLogit", make_typed(env, napi_float32_array, w->out.max_logit));
        napi_set_named_property(env, obj, "lse", make_typed(env, napi_float32_array, w->out.lse));
        if (w->out.logits.empty()) napi_get_null(env, &logits);
        else logits = make_typed(env, napi_float32_array, w->out.logits);
        napi_set_named_property(env, obj, "logits", logits);
        napi_set_named_property(env, obj, "sampledToken", make_typed(env, napi_int32_array, w->out.sampled_token));
        napi_set_named_property(env, obj, "sampledLogprob", make_typed(env, napi_float32_array, w->out.sampled_logprob));
        napi_set_named_property(env, obj, "topIds", make_typed(env, napi_int32_array, w->out.top_ids));
        napi_set_named_property(env, obj, "topLogprobs", make_typed(env, napi_float32_array, w->out.top_logprobs));
        napi_create_double(env, w->out.compute_ms, &ms);
        napi_set_named_property(env, obj, "computeMs", ms);
        napi_resolve_deferred(env, w->deferred, obj);
    }
    napi_delete_async_work(env, w->work);
    if (w->box->destroy_after_step) {
        zamba2_engine_destroy(w->box->engine);
        delete w->box;
    }
    delete w;
}

// step(handle, packed: Int32Array, sampling?: Int32Array | null) -> Promise<StepOutput>
static napi_value step(napi_env env, napi_callback_info info) {
    napi_value argv[3];
    size_t argc = 3;
    NAPI_OK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
    if (argc < 2) { napi_throw_type_error(env, "ZAMBA2_ARGS", "missing arguments"); return nullptr; }
    std::vector<int32_t> sampling;
    if (argc >= 3) {
        napi_valuetype vt;
        NAPI_OK(napi_typeof(env, argv[2], &vt));
        if (vt != napi_undefined && vt != napi_null) {
            bool is_ta = false;
            NAPI_OK(napi_is_typedarray(env, argv[2], &is_ta));
            napi_typedarray_type st;
            size_t slen = 0, soff = 0;
            void * sdata = nullptr;
            napi_value sab;
            if (is_ta) NAPI_OK(napi_get_typedarray_info(env, argv[2], &st, &slen, &sdata, &sab, &soff));
            if (!is_ta || st != napi_int32_array) return throw_error(env, "ZAMBA2_ARGS", "step: sampling must be an Int32Array");
            sampling.assign(static_cast<int32_t *>(sdata), static_cast<int32_t *>(sdata) + slen);
        }
    }
    engine_box * box = get_box(env, argv[0]);
    if (!box) return nullptr;
    napi_typedarray_type ta_type;
    size_t length = 0, byte_offset = 0;
    void * data = nullptr;
    napi_value ab;
    NAPI_OK(napi_get_typedarray_info(env, argv[1], &ta_type, &length, &data, &ab, &byte_offset));
    if (ta_type != napi_int32_array) return throw_error(env, "ZAMBA2_ARGS", "step expects an Int32Array");
    auto * w = new step_work();
    w->box = box;
    w->packed.assign(static_cast<int32_t *>(data), static_cast<int32_t *>(data) + length);  // JS may reuse it
    w->sampling.swap(sampling);
    napi_value promise, name;
    NAPI_OK(napi_create_promise(env, &w->deferred, &promise));
    NAPI_OK(napi_create_string_utf8(env, "zamba2_step", NAPI_AUTO_LENGTH, &name));
    NAPI_OK(napi_create_async_work(env, nullptr, name, step_execute, step_complete, w, &w->work));
    box->busy = true;
    if (napi_queue_async_work(env, w->work) != napi_ok) {
        box->busy = false;
        return throw_error(env, "ZAMBA2_NAPI", "could not queue the step");
    }
    return promise;
}

static napi_value device_bytes(napi_env env, napi_callback_info info) {
    napi_value argv[1];
    if (!get_args(env, info, 1, argv)) return nullptr;
    engine_box * box = get_box(env, argv[0], true);
    if (!box) return nullptr;
    napi_value v;
    NAPI_OK(napi_create_double(env, (double) zamba2_engine_device_bytes(box->engine), &v));
    return v;
}

static napi_value destroy(napi_env env, napi_callback_info info) {
    napi_value argv[1];
    if (!get_args(env, info, 1, argv)) return nullptr;
    engine_box * box = get_box(env, argv[0]);
    if (!box) return nullptr;
    zamba2_engine_destroy(box->engine);
    box->engine = nullptr;  // the External's finalizer frees the box
    return nullptr;
}

// cudaInfo(deviceIndex = 0) -> { deviceCount, name, totalBytes, freeBytes } of that device
// (throws ZAMBA2_NO_CUDA without a GPU, ZAMBA2_ARGS for an index out of range)
static napi_value cuda_info(napi_env env, napi_callback_info info) {
    napi_value argv[1];
    size_t argc = 1;
    NAPI_OK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
    int count = 0;
    cudaError_t st = cudaGetDeviceCount(&count);
    if (st != cudaSuccess || count == 0) {
        return throw_error(env, "ZAMBA2_NO_CUDA", std::string("no CUDA device: ") + (st != cudaSuccess ? cudaGetErrorString(st) : "count is 0"));
    }
    int index = 0;
    if (argc >= 1) {
        napi_valuetype vt;
        NAPI_OK(napi_typeof(env, argv[0], &vt));
        if (vt != napi_undefined && vt != napi_null) NAPI_OK(napi_get_value_int32(env, argv[0], &index));
    }
    if (index < 0 || index >= count) {
        return throw_error(env, "ZAMBA2_ARGS", "deviceIndex " + std::to_string(index) + " is out of range: " +
                                                   std::to_string(count) + " CUDA device(s) visible");
    }
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, index);
    size_t free_b = 0, total_b = 0;
    cudaSetDevice(index);  // cudaMemGetInfo reports the current device
    cudaMemGetInfo(&free_b, &total_b);
    napi_value obj, v;
    NAPI_OK(napi_create_object(env, &obj));
    napi_create_int32(env, count, &v); napi_set_named_property(env, obj, "deviceCount", v);
    napi_create_string_utf8(env, prop.name, NAPI_AUTO_LENGTH, &v); napi_set_named_property(env, obj, "name", v);
    napi_create_double(env, (double) total_b, &v); napi_set_named_property(env, obj, "totalBytes", v);
    napi_create_double(env, (double) free_b, &v); napi_set_named_property(env, obj, "freeBytes", v);
    return obj;
}

static napi_value init(napi_env env, napi_value exports) {
    const struct { const char * name; napi_callback fn; } fns[] = {
        {"createEngine", create_engine}, {"weightSpecs", weight_specs}, {"setWeight", set_weight},
        {"fillRandom", fill_random}, {"initCache", init_cache}, {"copySlot", copy_slot}, {"step", step},
        {"deviceBytes", device_bytes}, {"destroy", destroy}, {"cudaInfo", cuda_info}};
    for (const auto & f : fns) {
        napi_value fn;
        if (napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.fn, nullptr, &fn) != napi_ok) return nullptr;
        napi_set_named_property(env, exports, f.name, fn);
    }
    return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
