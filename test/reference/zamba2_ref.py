"""Float64, token-by-token Zamba2 reference (numpy only).

Written from ../shared/zamba2-spec.md §3-4 with the semantics of the CUDA kernel path
(mamba_ssm / vLLM / Zyphra's code), not of transformers' pure-torch path:
  * no dt floor (transformers' torch path clamps dt at time_step_min unless told otherwise),
  * the SSM recurrence is run one token at a time (no chunking, so no chunk-boundary effects),
  * everything is float64, computed from the values stored in the checkpoint (bf16/f16/f32).

It is the golden source for test/golden/ and is deliberately slow and plain: every step of the
forward pass is one numpy line that can be compared with the spec.

Usage:
    ref = Zamba2Reference("path/to/checkpoint")         # HF layout: config.json + *.safetensors
    state = ref.new_state()
    logits = ref.step(state, token_id)                  # float64 [vocab], advances the state
    out = ref.run(prompt_ids, keep_positions=[...], greedy_steps=16)
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field

import numpy as np

MAMBA_KINDS = {"m", "mamba", "linear_attention"}
HYBRID_KINDS = {"g", "hybrid"}


# ---------------------------------------------------------------------------------------------
# safetensors (own parser: the reference must run where the safetensors package is absent)
# ---------------------------------------------------------------------------------------------

def _decode_tensor(raw: bytes, dtype: str, shape: list[int]) -> np.ndarray:
    if dtype == "BF16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        values = bits.view(np.float32)
    elif dtype == "F16":
        values = np.frombuffer(raw, dtype="<f2")
    elif dtype == "F32":
        values = np.frombuffer(raw, dtype="<f4")
    elif dtype == "F64":
        values = np.frombuffer(raw, dtype="<f8")
    else:
        raise ValueError(f"unsupported safetensors dtype {dtype}")
    return values.astype(np.float64).reshape(shape)


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """All tensors of one .safetensors file, widened to float64."""
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        tensors[name] = _decode_tensor(data[base + start : base + end], info["dtype"], info["shape"])
    return tensors


def read_checkpoint_tensors(ckpt_dir: str) -> dict[str, np.ndarray]:
    index_path = os.path.join(ckpt_dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors: dict[str, np.ndarray] = {}
    for name in files:
        tensors.update(read_safetensors(os.path.join(ckpt_dir, name)))
    return tensors


# ---------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------

@dataclass
class Dims:
    vocab: int
    hidden: int
    layer_kinds: list[str]
    hybrid_layer_ids: list[int]
    num_mem_blocks: int
    heads: int
    ahd: int
    kv_channels: int
    ffn: int
    d_state: int
    d_conv: int
    d_inner: int
    ngroups: int
    nheads: int
    head_dim: int
    conv_dim: int
    use_rope: bool
    rope_theta: float
    eps: float
    attn_adapter: bool
    tie: bool


def read_dims(config: dict) -> Dims:
    hidden = int(config["hidden_size"])
    kinds = []
    for kind in config["layers_block_type"]:
        if kind in MAMBA_KINDS:
            kinds.append("mamba")
        elif kind in HYBRID_KINDS:
            kinds.append("hybrid")
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
    heads = int(config["num_attention_heads"])
    if int(config.get("num_key_value_heads") or heads) != heads:
        raise ValueError("the reference implements kv heads == heads only (as every Zamba2 release)")
    d_inner = int(config.get("mamba_expand", 2)) * hidden
    nheads = int(config["n_mamba_heads"])
    ngroups = int(config.get("mamba_ngroups", 1))
    d_state = int(config["mamba_d_state"])
    rope_theta = config.get("rope_theta")
    if rope_theta is None:
        rope_theta = (config.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    # The v4 use_long_context rescale is not applied here: transformers 5.x (which writes our
    # fixtures) does not apply it either and our fixtures never set the flag (spec §6.3).
    return Dims(
        vocab=int(config["vocab_size"]),
        hidden=hidden,
        layer_kinds=kinds,
        hybrid_layer_ids=[i for i, k in enumerate(kinds) if k == "hybrid"],
        num_mem_blocks=int(config.get("num_mem_blocks", 1)),
        heads=heads,
        ahd=2 * hidden // heads,
        kv_channels=hidden // heads,
        ffn=int(config.get("intermediate_size") or 4 * hidden),
        d_state=d_state,
        d_conv=int(config.get("mamba_d_conv", 4)),
        d_inner=d_inner,
        ngroups=ngroups,
        nheads=nheads,
        head_dim=d_inner // nheads,
        conv_dim=d_inner + 2 * ngroups * d_state,
        use_rope=bool(config.get("use_mem_rope", False)),
        rope_theta=float(rope_theta),
        eps=float(config.get("rms_norm_eps", 1e-5)),
        attn_adapter=bool(config.get("use_shared_attention_adapter", False)),
        tie=bool(config.get("tie_word_embeddings", True)),
    )


# ---------------------------------------------------------------------------------------------
# math helpers (all float64)
# ---------------------------------------------------------------------------------------------

_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as HF ACT2FN['gelu'] / vLLM GeluAndMul / F.gelu."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def softplus(x: np.ndarray) -> np.ndarray:
    # The kernels' form: identity above 20, log1p(exp(x)) below.
    return np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0))))


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x) + eps) * weight


def rotate_half(x: np.ndarray) -> np.ndarray:
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


# ---------------------------------------------------------------------------------------------
# weights by role
# ---------------------------------------------------------------------------------------------

@dataclass
class Mixer:
    in_proj: np.ndarray
    conv_w: np.ndarray  # [conv_dim, K]
    conv_b: np.ndarray  # [conv_dim]
    dt_bias: np.ndarray
    A: np.ndarray  # -exp(A_log)
    D: np.ndarray
    norm: np.ndarray
    out_proj: np.ndarray


@dataclass
class Layer:
    kind: str
    input_norm: np.ndarray
    mixer: Mixer
    linear: np.ndarray | None


@dataclass
class SharedBlock:
    input_norm: np.ndarray
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    o: np.ndarray
    pre_ff_norm: np.ndarray
    gate_up: np.ndarray
    down: np.ndarray


@dataclass
class Adapters:
    q: tuple[np.ndarray, np.ndarray] | None
    k: tuple[np.ndarray, np.ndarray] | None
    v: tuple[np.ndarray, np.ndarray] | None
    gate_up: tuple[np.ndarray, np.ndarray] | None


def _take(t: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in t:
        raise KeyError(f"checkpoint has no tensor {name}")
    return t[name]


def _mixer(t: dict[str, np.ndarray], prefix: str, dims: Dims) -> Mixer:
    conv_w = _take(t, prefix + "conv1d.weight").reshape(dims.conv_dim, dims.d_conv)
    conv_b = t.get(prefix + "conv1d.bias", np.zeros(dims.conv_dim))
    return Mixer(
        in_proj=_take(t, prefix + "in_proj.weight"),
        conv_w=conv_w,
        conv_b=conv_b,
        dt_bias=_take(t, prefix + "dt_bias"),
        A=-np.exp(_take(t, prefix + "A_log")),
        D=_take(t, prefix + "D"),
        norm=_take(t, prefix + "norm.weight"),
        out_proj=_take(t, prefix + "out_proj.weight"),
    )


def _shared_prefix(t: dict[str, np.ndarray], dims: Dims, block: int) -> str:
    """Each block is stored once, under the first hybrid layer that uses it (spec §2.2)."""
    for h, layer_id in enumerate(dims.hybrid_layer_ids):
        if h % dims.num_mem_blocks == block:
            prefix = f"model.layers.{layer_id}.shared_transformer."
            if prefix + "self_attn.q_proj.weight" in t:
                return prefix
    raise KeyError(f"no stored tensors for shared block {block}")


def _adapter(t: dict[str, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray] | None:
    w0 = t.get(name + ".0.weight")
    w1 = t.get(name + ".1.weight")
    if w0 is None and w1 is None:
        return None
    if w0 is None or w1 is None:
        raise KeyError(f"adapter {name} has only one of its two matrices")
    return (w0, w1)


def _find_adapter(t: dict[str, np.ndarray], dims: Dims, h: int, suffix: str):
    """Adapter entry h may sit under any layer prefix that stores its block; search them all."""
    for layer_id in dims.hybrid_layer_ids:
        found = _adapter(t, f"model.layers.{layer_id}.shared_transformer.{suffix}.{h}")
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------

@dataclass
class State:
    """Per-sequence state. conv: last K-1 pre-conv xBC rows per layer; ssm: [nh, P, N] per layer;
    keys/values: post-rope K and V rows per hybrid invocation; pos: tokens consumed."""
    conv: list[np.ndarray]
    ssm: list[np.ndarray]
    keys: list[list[np.ndarray]] = field(default_factory=list)
    values: list[list[np.ndarray]] = field(default_factory=list)
    pos: int = 0


class Zamba2Reference:
    def __init__(self, ckpt_dir: str):
        with open(os.path.join(ckpt_dir, "config.json")) as f:
            self.config = json.load(f)
        self.dims = d = read_dims(self.config)
        t = read_checkpoint_tensors(ckpt_dir)
        self.embed = _take(t, "model.embed_tokens.weight")
        self.final_norm = _take(t, "model.final_layernorm.weight")
        if d.tie or "lm_head.weight" not in t:
            self.lm_head = self.embed
        else:
            self.lm_head = t["lm_head.weight"]
        self.layers: list[Layer] = []
        for i, kind in enumerate(d.layer_kinds):
            if kind == "mamba":
                p = f"model.layers.{i}."
                self.layers.append(Layer(kind, _take(t, p + "input_layernorm.weight"),
                                         _mixer(t, p + "mamba.", d), None))
            else:
                p = f"model.layers.{i}.mamba_decoder."
                self.layers.append(Layer(kind, _take(t, p + "input_layernorm.weight"),
                                         _mixer(t, p + "mamba.", d),
                                         _take(t, f"model.layers.{i}.linear.weight")))
        self.blocks: list[SharedBlock] = []
        for k in range(d.num_mem_blocks):
            p = _shared_prefix(t, d, k)
            self.blocks.append(SharedBlock(
                input_norm=_take(t, p + "input_layernorm.weight"),
                q=_take(t, p + "self_attn.q_proj.weight"),
                k=_take(t, p + "self_attn.k_proj.weight"),
                v=_take(t, p + "self_attn.v_proj.weight"),
                o=_take(t, p + "self_attn.o_proj.weight"),
                pre_ff_norm=_take(t, p + "pre_ff_layernorm.weight"),
                gate_up=_take(t, p + "feed_forward.gate_up_proj.weight"),
                down=_take(t, p + "feed_forward.down_proj.weight"),
            ))
        self.adapters: list[Adapters] = []
        for h in range(len(d.hybrid_layer_ids)):
            a = Adapters(None, None, None, _find_adapter(t, d, h, "feed_forward.gate_up_proj_adapter_list"))
            if d.attn_adapter:
                a.q = _find_adapter(t, d, h, "self_attn.linear_q_adapter_list")
                a.k = _find_adapter(t, d, h, "self_attn.linear_k_adapter_list")
                a.v = _find_adapter(t, d, h, "self_attn.linear_v_adapter_list")
                if a.q is None or a.k is None or a.v is None:
                    raise KeyError(f"use_shared_attention_adapter is set but q/k/v adapters {h} are missing")
            self.adapters.append(a)
        half = np.arange(0, d.ahd, 2, dtype=np.float64) / d.ahd
        self.inv_freq = 1.0 / (d.rope_theta ** half)  # [ahd/2]

    # -- state ---------------------------------------------------------------------------------

    def new_state(self) -> State:
        d = self.dims
        n_hybrid = len(d.hybrid_layer_ids)
        return State(
            conv=[np.zeros((d.d_conv - 1, d.conv_dim)) for _ in d.layer_kinds],
            ssm=[np.zeros((d.nheads, d.head_dim, d.d_state)) for _ in d.layer_kinds],
            keys=[[] for _ in range(n_hybrid)],
            values=[[] for _ in range(n_hybrid)],
        )

    # -- pieces --------------------------------------------------------------------------------

    def _mamba(self, m: Mixer, u: np.ndarray, layer: int, state: State) -> np.ndarray:
        d = self.dims
        zxbcdt = m.in_proj @ u
        z = zxbcdt[: d.d_inner]
        xbc = zxbcdt[d.d_inner : d.d_inner + d.conv_dim]
        dt_raw = zxbcdt[d.d_inner + d.conv_dim :]
        window = np.concatenate([state.conv[layer], xbc[None, :]], axis=0)  # [K, conv_dim], oldest first
        state.conv[layer] = window[1:]
        xbc = silu(m.conv_b + np.einsum("ck,kc->c", m.conv_w, window))
        x = xbc[: d.d_inner].reshape(d.nheads, d.head_dim)
        B = xbc[d.d_inner : d.d_inner + d.ngroups * d.d_state].reshape(d.ngroups, d.d_state)
        C = xbc[d.d_inner + d.ngroups * d.d_state :].reshape(d.ngroups, d.d_state)
        group_of_head = np.arange(d.nheads) // (d.nheads // d.ngroups)
        Bh, Ch = B[group_of_head], C[group_of_head]  # [nh, N]
        dt = softplus(dt_raw + m.dt_bias)  # [nh], no floor
        dA = np.exp(dt * m.A)
        S = state.ssm[layer] * dA[:, None, None] + (dt[:, None] * x)[:, :, None] * Bh[:, None, :]
        state.ssm[layer] = S
        y = np.einsum("hpn,hn->hp", S, Ch) + m.D[:, None] * x
        # Gated group RMSNorm, gate before norm, eps 1e-5 hard-coded as in HF/vLLM.
        v = (y.reshape(-1) * silu(z)).reshape(d.ngroups, -1)
        v = v / np.sqrt(np.mean(v * v, axis=1, keepdims=True) + 1e-5)
        v = v.reshape(-1) * m.norm
        return m.out_proj @ v

    def _shared_block(self, h: int, x: np.ndarray, e: np.ndarray, state: State) -> np.ndarray:
        d = self.dims
        blk = self.blocks[h % d.num_mem_blocks]
        ad = self.adapters[h]
        u = rms_norm(np.concatenate([x, e]), blk.input_norm, d.eps)
        q, k, v = blk.q @ u, blk.k @ u, blk.v @ u
        if ad.q is not None:
            q = q + ad.q[1] @ (ad.q[0] @ u)
            k = k + ad.k[1] @ (ad.k[0] @ u)
            v = v + ad.v[1] @ (ad.v[0] @ u)
        q, k, v = (a.reshape(d.heads, d.ahd) for a in (q, k, v))
        if d.use_rope:
            ang = state.pos * self.inv_freq
            cos = np.cos(np.concatenate([ang, ang]))
            sin = np.sin(np.concatenate([ang, ang]))
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
        state.keys[h].append(k)
        state.values[h].append(v)
        K = np.stack(state.keys[h])  # [t, heads, ahd]
        V = np.stack(state.values[h])
        scores = np.einsum("hd,thd->ht", q, K) / math.sqrt(d.kv_channels)
        scores = scores - scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        p = p / p.sum(axis=1, keepdims=True)
        attn = np.einsum("ht,thd->hd", p, V).reshape(-1)
        a = blk.o @ attn
        vn = rms_norm(a, blk.pre_ff_norm, d.eps)
        gu = blk.gate_up @ vn
        if ad.gate_up is not None:
            gu = gu + ad.gate_up[1] @ (ad.gate_up[0] @ vn)
        return blk.down @ (gelu(gu[: d.ffn]) * gu[d.ffn :])

    # -- public --------------------------------------------------------------------------------

    def step(self, state: State, token: int, want_logits: bool = True) -> np.ndarray | None:
        """Consume one token; return float64 logits [vocab] for the next token."""
        d = self.dims
        e = self.embed[token]
        x = e.copy()
        h = 0
        for i, layer in enumerate(self.layers):
            if layer.kind == "hybrid":
                tr = layer.linear @ self._shared_block(h, x, e, state)
                h += 1
                x = x + self._mamba(layer.mixer, rms_norm(x + tr, layer.input_norm, d.eps), i, state)
            else:
                x = x + self._mamba(layer.mixer, rms_norm(x, layer.input_norm, d.eps), i, state)
        state.pos += 1
        if not want_logits:
            return None
        return self.lm_head @ rms_norm(x, self.final_norm, d.eps)

    def run(self, prompt: list[int], keep_positions=None, greedy_steps: int = 0, keep_greedy_logits=False):
        """Prefill `prompt` token by token, then greedy-decode `greedy_steps` tokens.

        keep_positions: prompt positions whose logits are returned (None = all).
        Returns dict(logits={pos: float64[V]}, greedy=[ids], margins=[top1-top2], greedy_logits=[...]).
        """
        state = self.new_state()
        keep = set(range(len(prompt))) if keep_positions is None else set(keep_positions)
        out: dict = {"logits": {}, "greedy": [], "margins": [], "greedy_logits": []}
        last = None
        for pos, tok in enumerate(prompt):
            need = pos in keep or (pos == len(prompt) - 1 and greedy_steps > 0)
            last = self.step(state, int(tok), want_logits=need)
            if pos in keep:
                out["logits"][pos] = last
        for i in range(greedy_steps):
            top2 = np.argpartition(-last, 2)[:2]
            top2 = top2[np.argsort(-last[top2], kind="stable")]
            nxt = int(np.argmax(last))
            out["greedy"].append(nxt)
            out["margins"].append(float(last[top2[0]] - last[top2[1]]))
            if i + 1 < greedy_steps or keep_greedy_logits:
                last = self.step(state, nxt)
                if keep_greedy_logits:
                    out["greedy_logits"].append(last)
        out["state"] = state
        return out
