"""Where does the CUDA engine's bf16 error enter? A precision emulator of the engine's forward pass.

The float64 reference (test/reference/zamba2_ref.py) with bf16 rounding (round-to-nearest-even)
applied at the points where the engine stores a tensor in bf16. Each rounding point has a name; a
"scheme" is the set of names that are rounded. GEMM inputs are always rounded (cuBLASLt bf16 GEMMs),
everything else is float64 here (the engine's fp32 math is far below bf16 error).

    python3 kernels/dev/bf16_emulate.py                 # every scheme on fixtures a, b, demo (prompts <= 100)
    python3 kernels/dev/bf16_emulate.py a len6 len300   # one fixture, the cases named
    SCHEMES=engine-v2 python3 kernels/dev/bf16_emulate.py b   # schemes whose label contains a word

Prints, per scheme and case, the golden relative error (max |a - e| / max |e| per row, worst row).
"""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "test", "reference"))

from zamba2_ref import Zamba2Reference, gelu, rms_norm, rotate_half, silu, softplus  # noqa: E402


def bf16(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    b = a.view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return r.view(np.float32).astype(np.float64)


# Every point where the v1 engine (run 3) stores bf16, besides GEMM inputs.
ALL_POINTS = {
    "x",      # residual stream after each mixer add (GEMM beta=1 into bf16 x)
    "tr",     # shared block output after the per-layer linear
    "qkv",    # q/k/v GEMM outputs (and again after the LoRA add)
    "rope",   # q/k after rope
    "kv",     # K/V cache
    "att",    # attention output
    "a",      # o_proj output
    "gu",     # gate_up output (and again after the LoRA add)
    "act",    # gelu(g) * u
    "m",      # down output
    "z",      # in_proj output, z part
    "xbc",    # in_proj output, xBC part (conv input/state)
    "dt",     # in_proj output, dt part
    "conv",   # conv + silu output (x, B, C of the scan)
}

# GEMM inputs (always bf16): u2, lora inputs, att, vn, act, m, u, v, hn


class Emulator(Zamba2Reference):
    def __init__(self, ckpt_dir: str, points: set[str], exact_inputs: set[str] = frozenset()):
        super().__init__(ckpt_dir)
        self.points = points
        self.exact_inputs = exact_inputs

    def R(self, name: str, x: np.ndarray) -> np.ndarray:
        return bf16(x) if name in self.points else x

    def G(self, name: str, w: np.ndarray, x: np.ndarray) -> np.ndarray:
        """bf16 GEMM: weights are bf16 already (fixtures store bf16); the input is rounded unless
        its name is in `exact_inputs` (a split hi + lo bf16 input is exact to ~2^-17)."""
        exact = name in self.exact_inputs or name.split(":")[0] in self.exact_inputs
        return w @ (x if exact else bf16(x))

    def _mamba(self, m, u, layer, state):
        d = self.dims
        # in_proj by output slice, so a scheme can split the input of one slice only (u:z, u:xbc, u:dt)
        n_z, n_xbc = d.d_inner, d.d_inner + d.conv_dim
        zxbcdt = np.concatenate([
            self.G("u:z", m.in_proj[:n_z], u), self.G("u:xbc", m.in_proj[n_z:n_xbc], u), self.G("u:dt", m.in_proj[n_xbc:], u)])
        z = self.R("z", zxbcdt[: d.d_inner])
        xbc = self.R("xbc", zxbcdt[d.d_inner : d.d_inner + d.conv_dim])
        dt_raw = self.R("dt", zxbcdt[d.d_inner + d.conv_dim :])
        window = np.concatenate([state.conv[layer], xbc[None, :]], axis=0)
        state.conv[layer] = window[1:]
        xbc = self.R("conv", silu(m.conv_b + np.einsum("ck,kc->c", m.conv_w, window)))
        x = xbc[: d.d_inner].reshape(d.nheads, d.head_dim)
        B = xbc[d.d_inner : d.d_inner + d.ngroups * d.d_state].reshape(d.ngroups, d.d_state)
        C = xbc[d.d_inner + d.ngroups * d.d_state :].reshape(d.ngroups, d.d_state)
        group_of_head = np.arange(d.nheads) // (d.nheads // d.ngroups)
        Bh, Ch = B[group_of_head], C[group_of_head]
        dt = softplus(dt_raw + m.dt_bias)
        dA = np.exp(dt * m.A)
        S = state.ssm[layer] * dA[:, None, None] + (dt[:, None] * x)[:, :, None] * Bh[:, None, :]
        state.ssm[layer] = S
        y = np.einsum("hpn,hn->hp", S, Ch) + m.D[:, None] * x
        v = (y.reshape(-1) * silu(z)).reshape(d.ngroups, -1)
        v = v / np.sqrt(np.mean(v * v, axis=1, keepdims=True) + 1e-5)
        v = v.reshape(-1) * m.norm
        return self.G("v", m.out_proj, v)

    def _shared_block(self, h, x, e, state):
        d = self.dims
        blk = self.blocks[h % d.num_mem_blocks]
        ad = self.adapters[h]
        u = rms_norm(np.concatenate([x, e]), blk.input_norm, d.eps)
        q, k, v = (self.R("qkv", self.G("u2", w, u)) for w in (blk.q, blk.k, blk.v))
        if ad.q is not None:
            q = self.R("qkv", q + self.G("lora", ad.q[1], self.G("u2", ad.q[0], u)))
            k = self.R("qkv", k + self.G("lora", ad.k[1], self.G("u2", ad.k[0], u)))
            v = self.R("qkv", v + self.G("lora", ad.v[1], self.G("u2", ad.v[0], u)))
        q, k, v = (a.reshape(d.heads, d.ahd) for a in (q, k, v))
        if d.use_rope:
            ang = state.pos * self.inv_freq
            cos = np.cos(np.concatenate([ang, ang]))
            sin = np.sin(np.concatenate([ang, ang]))
            q = self.R("rope", q * cos + rotate_half(q) * sin)
            k = self.R("rope", k * cos + rotate_half(k) * sin)
        state.keys[h].append(self.R("kv", k))
        state.values[h].append(self.R("kv", v))
        K = np.stack(state.keys[h])
        V = np.stack(state.values[h])
        scores = np.einsum("hd,thd->ht", q, K) / math.sqrt(d.kv_channels)
        scores = scores - scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        p = p / p.sum(axis=1, keepdims=True)
        attn = self.R("att", np.einsum("ht,thd->hd", p, V).reshape(-1))
        a = self.R("a", self.G("att", blk.o, attn))
        vn = rms_norm(a, blk.pre_ff_norm, d.eps)
        gu = self.R("gu", self.G("vn", blk.gate_up, vn))
        if ad.gate_up is not None:
            gu = self.R("gu", gu + self.G("lora", ad.gate_up[1], self.G("vn", ad.gate_up[0], vn)))
        act = self.R("act", gelu(gu[: d.ffn]) * gu[d.ffn :])
        return self.R("m", self.G("act", blk.down, act))

    def step(self, state, token, want_logits=True):
        d = self.dims
        e = self.embed[token]
        x = e.copy()
        h = 0
        for i, layer in enumerate(self.layers):
            if layer.kind == "hybrid":
                tr = self.R("tr", self.G("m", layer.linear, self._shared_block(h, x, e, state)))
                h += 1
                # the engine's fused norm rounds x + tr to bf16 before normalizing when x is bf16
                s = self.R("x", x + tr)
                x = self.R("x", x + self._mamba(layer.mixer, rms_norm(s, layer.input_norm, d.eps), i, state))
            else:
                x = self.R("x", x + self._mamba(layer.mixer, rms_norm(x, layer.input_norm, d.eps), i, state))
        state.pos += 1
        if not want_logits:
            return None
        return self.G("hn", self.lm_head, rms_norm(x, self.final_norm, d.eps))


def fixture_cases(name: str):
    folder = os.path.join(ROOT, "test", "golden", "fixtures", name)
    with open(os.path.join(folder, "golden.json")) as f:
        doc = json.load(f)
    ckpt = os.path.normpath(os.path.join(folder, doc["checkpoint"]))
    out = []
    for c in doc["cases"]:
        V = doc["dims"]["vocabSize"]
        logits = np.fromfile(os.path.join(folder, c["logitsFile"]), dtype="<f4").reshape(-1, V)
        out.append((c["name"], c["promptTokens"], c["logitPositions"], logits))
    return ckpt, out


def rel_error(got: np.ndarray, exp: np.ndarray) -> float:
    return max(float(np.max(np.abs(g - e)) / np.max(np.abs(e))) for g, e in zip(got, exp))


# name -> (rounded storage points, GEMM inputs fed split = exact)
SCHEMES = {
    "engine-v1 (all bf16)": (ALL_POINTS, set()),
    "engine-v2 (run 4: fp32 acts, split u,v,u2,att,vn)": ({"kv"}, {"u", "v", "u2", "att", "vn"}),
    "engine-v2, split off": ({"kv"}, set()),
    "fp32 residual x": (ALL_POINTS - {"x"}, set()),
    "fp32 x, tr": (ALL_POINTS - {"x", "tr"}, set()),
    "fp32 x, tr, dt": (ALL_POINTS - {"x", "tr", "dt"}, set()),
    "fp32 x, tr, dt, z": (ALL_POINTS - {"x", "tr", "dt", "z"}, set()),
    "fp32 x,tr,zx,conv": (ALL_POINTS - {"x", "tr", "dt", "z", "xbc", "conv"}, set()),
    "fp32 x,tr,zx,conv,m": (ALL_POINTS - {"x", "tr", "dt", "z", "xbc", "conv", "m"}, set()),
    "GEMM inputs only": (set(), set()),
    # which split inputs carry the error (prefill pays 2x GEMM FLOPs for each split input)
    "v2 minus u": ({"kv"}, {"v", "u2", "att", "vn"}),
    "v2 minus u, plus u:dt": ({"kv"}, {"u:dt", "v", "u2", "att", "vn"}),
    "v2 minus u, plus u:dt,u:xbc": ({"kv"}, {"u:dt", "u:xbc", "v", "u2", "att", "vn"}),
    "v2 minus v": ({"kv"}, {"u", "u2", "att", "vn"}),
    "v2 minus u2": ({"kv"}, {"u", "v", "att", "vn"}),
    "v2 minus att": ({"kv"}, {"u", "v", "u2", "vn"}),
    "v2 minus vn": ({"kv"}, {"u", "v", "u2", "att"}),
    "only u:dt": ({"kv"}, {"u:dt"}),
    "only u:dt, v": ({"kv"}, {"u:dt", "v"}),
    "only u:xbc,u:dt": ({"kv"}, {"u:dt", "u:xbc"}),
    "only u:xbc,u:dt,v": ({"kv"}, {"u:dt", "u:xbc", "v"}),
    "only u:xbc,u:dt,v,vn": ({"kv"}, {"u:dt", "u:xbc", "v", "vn"}),
    "only u:xbc,u:dt,v,u2": ({"kv"}, {"u:dt", "u:xbc", "v", "u2"}),
}


def main() -> None:
    fixtures = sys.argv[1:2] or ["a", "b", "demo"]
    only = set(sys.argv[2:])
    schemes = SCHEMES
    if os.environ.get("SCHEMES"):
        schemes = {k: v for k, v in SCHEMES.items() if any(s in k for s in os.environ["SCHEMES"].split(","))}
    for fx in fixtures:
        ckpt, cases = fixture_cases(fx)
        for label, (points, exact) in schemes.items():
            em = Emulator(ckpt, set(points), set(exact))
            errs = []
            for name, prompt, positions, golden in cases:
                if only and name not in only:
                    continue
                if not only and len(prompt) > 100:
                    continue  # token-by-token numpy: keep the default sweep short
                out = em.run(prompt, keep_positions=positions)
                got = np.stack([out["logits"][p] for p in positions])
                errs.append(f"{name} {rel_error(got, golden):.2e}")
            print(f"{fx:5s} {label:50s} " + "  ".join(errs), flush=True)


if __name__ == "__main__":
    main()
