"""Writes the random-weight golden fixtures (test/golden/fixtures/{a,b}) and their goldens.

Runs on the GPU machine (torch 2.11, transformers 5.17; no GPU needed for these tiny models):
    python3 test/golden/make_fixtures.py --out DIR      # writes DIR/fixtures/<name>/...

For each family: a Zamba2ForCausalLM with a fixed seed, weights re-drawn away from HF's init so
every path matters, rounded to bf16 and saved with save_pretrained; goldens from the float64
reference (test/reference/zamba2_ref.py); a cross-check of those goldens against transformers in
float64 with the dt floor off, stored in golden.json. See test/golden/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
import traceback

import numpy as np

from golden_lib import (compute_case, hf_cross_check, hf_full_logits, hf_load_float64, load_prompts, log,
                        summarize_checks, compare, write_golden, Zamba2Reference)

SEED = {"a": 1234, "b": 5678}

FAMILIES = {
    # Like Zamba2-1.2B: one shared block, q/k/v + MLP adapters, rope, ngroups 1.
    "a": dict(
        hidden_size=32, num_hidden_layers=7,
        layers_block_type=["mamba", "mamba", "hybrid", "mamba", "mamba", "hybrid", "mamba"],
        num_attention_heads=2, num_mem_blocks=1, use_shared_attention_adapter=True, adapter_rank=8,
        use_mem_rope=True, mamba_d_state=16, mamba_ngroups=1, n_mamba_heads=4, mamba_expand=2,
        intermediate_size=128,
    ),
    # Like Zamba2-2.7B/7B: two alternating blocks (ABA), MLP adapters only, no rope, ngroups 2,
    # attention head dim 40 (not a power of two), softmax scale 20^-1/2.
    "b": dict(
        hidden_size=40, num_hidden_layers=8,
        layers_block_type=["mamba", "hybrid", "mamba", "hybrid", "mamba", "mamba", "hybrid", "mamba"],
        num_attention_heads=2, num_mem_blocks=2, use_shared_attention_adapter=False, adapter_rank=8,
        use_mem_rope=False, mamba_d_state=16, mamba_ngroups=2, n_mamba_heads=4, mamba_expand=2,
        intermediate_size=160,
    ),
}

DESCRIPTIONS = {
    "a": "random weights, 1.2B-like: one shared block with q/k/v and MLP adapters, rope, ngroups 1",
    "b": "random weights, 2.7B/7B-like: two alternating shared blocks, MLP adapters, no rope, ngroups 2, "
         "attention head dim 40; config.json rewritten in the hub's original format (mamba/hybrid, rope_theta, torch_dtype)",
}


def make_config(family: str):
    from transformers import Zamba2Config
    kw = dict(FAMILIES[family], vocab_size=32000, mamba_d_conv=4, chunk_size=256, max_position_embeddings=4096,
              rms_norm_eps=1e-5, hidden_act="gelu", tie_word_embeddings=True, pad_token_id=0, bos_token_id=1,
              eos_token_id=2)
    try:
        return Zamba2Config(**kw, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    except Exception as error:  # older signature
        log(f"  Zamba2Config(rope_parameters=...) failed ({error}); trying rope_theta")
        return Zamba2Config(**kw, rope_theta=10000.0)


def perturb(model, seed: int) -> None:
    """Re-draws every parameter so each path carries signal: linear weights ~ N(0, 1/fan_in),
    embeddings ~ N(0, 1), norms 1 + 0.3 N, A_log = log U(0.5, 10), D ~ 1 + 0.5 N, conv ~ N(0, .25),
    dt_bias = softplus^-1 of a log-uniform dt in [1e-4, 0.2] (so some heads sit below transformers'
    0.001 dt floor, which the goldens must not apply)."""
    import torch
    g = torch.Generator().manual_seed(seed)

    def normal(shape, std, mean=0.0):
        return torch.randn(shape, generator=g, dtype=torch.float64) * std + mean

    def uniform(shape, lo, hi):
        return torch.rand(shape, generator=g, dtype=torch.float64) * (hi - lo) + lo

    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            shape = tuple(p.shape)
            if name.endswith("A_log"):
                v = torch.log(uniform(shape, 0.5, 10.0))
            elif name.endswith("dt_bias"):
                dt = torch.exp(uniform(shape, math.log(1e-4), math.log(0.2)))
                v = dt + torch.log(-torch.expm1(-dt))  # inverse softplus
            elif name.endswith(".D"):
                v = normal(shape, 0.5, 1.0)
            elif "conv1d.weight" in name:
                v = normal(shape, 0.5)
            elif "conv1d.bias" in name:
                v = normal(shape, 0.1)
            elif "embed_tokens" in name:
                v = normal(shape, 1.0)
            elif p.dim() == 1:  # every RMSNorm weight (input, pre-ff, gated, final)
                v = normal(shape, 0.3, 1.0)
            elif p.dim() == 2:
                fan_in = shape[1]
                scale = 0.5 if ("adapter_list" in name and name.endswith(".1.weight")) else 1.0
                v = normal(shape, scale / math.sqrt(fan_in))
            else:
                raise RuntimeError(f"no rule for parameter {name} {shape}")
            p.copy_(v.to(p.dtype))


def rewrite_hub_style(ckpt: str) -> None:
    """The hub checkpoints' original config format: mamba/hybrid, rope_theta, torch_dtype."""
    path = os.path.join(ckpt, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["layers_block_type"] = ["hybrid" if k == "hybrid" else "mamba" for k in cfg["layers_block_type"]]
    rope = cfg.pop("rope_parameters", None) or {}
    cfg["rope_theta"] = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
    cfg["torch_dtype"] = cfg.pop("dtype", "bfloat16")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


def build_checkpoint(family: str, ckpt: str) -> None:
    import torch
    from transformers import Zamba2ForCausalLM
    torch.manual_seed(SEED[family])
    config = make_config(family)
    model = Zamba2ForCausalLM(config).to(torch.float32)
    perturb(model, SEED[family])
    model = model.to(torch.bfloat16)
    model.save_pretrained(ckpt, safe_serialization=True)
    gen = os.path.join(ckpt, "generation_config.json")
    if not os.path.exists(gen):
        with open(gen, "w") as f:
            json.dump({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}, f, indent=2)
    if family == "b":
        keep = os.path.join(os.path.dirname(os.path.dirname(ckpt)), "hf-config-" + family)
        os.makedirs(keep, exist_ok=True)
        shutil.copy(os.path.join(ckpt, "config.json"), os.path.join(keep, "config.json"))
        rewrite_hub_style(ckpt)
    from safetensors import safe_open
    with safe_open(os.path.join(ckpt, "model.safetensors"), "pt") as f:
        names = sorted(f.keys())
    log(f"  {family}: {len(names)} tensors, {os.path.getsize(os.path.join(ckpt, 'model.safetensors'))} bytes; "
        f"shared: {[n for n in names if 'shared_transformer' in n and 'q_proj' in n]}")


def cases_for(prompts: dict[str, list[int]]) -> list[tuple[str, list[int], list[int] | None, int]]:
    py, en = prompts["python"], prompts["english"]
    assert len(py) >= 300 and len(en) >= 33
    return [
        ("len1", [1], None, 16),
        ("len6", en[:6], None, 24),
        ("len33", en[:33], [32], 0),
        ("len100", py[:100], [99], 24),
        ("len300", py[:300], [255, 256, 299], 24),
    ]


def versions() -> dict:
    out = {}
    for mod in ("torch", "transformers", "numpy", "tokenizers"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception as error:
            out[mod] = f"unavailable: {error}"
    return out


def run_family(family: str, out_root: str, prompts: dict) -> dict:
    folder = os.path.join(out_root, "fixtures", family)
    os.makedirs(folder, exist_ok=True)
    build_checkpoint(family, folder)
    ref = Zamba2Reference(folder)
    cases = []
    for name, prompt, keep, greedy in cases_for(prompts):
        cases.append(compute_case(ref, name, prompt, keep, greedy, all_positions_for_check=True))
    generator = {"script": "test/golden/make_fixtures.py", "seed": SEED[family], "versions": versions(),
                 "date": time.strftime("%Y-%m-%d")}
    # Write the goldens before the cross-check, so a failing cross-check still leaves them.
    write_golden(folder, family, ".", ref, cases, {"status": "not run"}, generator, DESCRIPTIONS[family])
    try:
        load_note = "loaded from the fixture folder as committed"
        try:
            model = hf_load_float64(folder)
        except Exception as error:
            # transformers may refuse the hub-style config; load the config it wrote itself instead.
            traceback.print_exc()
            alt = os.path.join(out_root, "hf-config-" + family)
            os.symlink(os.path.abspath(os.path.join(folder, "model.safetensors")), os.path.join(alt, "model.safetensors"))
            model = hf_load_float64(alt)
            load_note = f"fixture config refused by transformers ({type(error).__name__}: {error}); loaded with the config transformers wrote"
        log(f"  {load_note}")
        checks = []
        for c in cases:
            checks.extend(hf_cross_check(model, c, chunk_size=256))
            log(f"  cross-check {c['name']}: " + "; ".join(
                f"{x['mode']}: rel {x['maxRelError']:.2e} abs {x['maxAbsError']:.2e}"
                + (f" greedy equal {x['greedyTokensEqual']}" if 'greedyTokensEqual' in x else "")
                for x in checks if x["case"] == c["name"]))
        # Teeth: the same comparison with transformers' default dt floor left on.
        floored = hf_load_float64(folder if load_note.startswith("loaded from") else alt, dt_floor=True)
        c100 = next(c for c in cases if c["name"] == "len100")
        logits = hf_full_logits(floored, c100["prompt"])
        floor_cmp = compare([c100["ref_logits"][p] for p in range(100)], [logits[p] for p in range(100)],
                            list(range(100)))
        log(f"  with transformers' dt floor left on, len100 differs by rel {floor_cmp['maxRelError']:.2e}")
        cross = summarize_checks(checks, {"status": "ok", "load": load_note,
                                          "dtFloorOnMaxRelError_len100": floor_cmp["maxRelError"]})
    except Exception as error:
        traceback.print_exc()
        cross = {"status": f"failed: {type(error).__name__}: {error}"}
    write_golden(folder, family, ".", ref, cases, cross, generator, DESCRIPTIONS[family])
    return cross


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--families", default="a,b")
    args = ap.parse_args()
    prompts = load_prompts()
    report = {}
    for family in args.families.split(","):
        t0 = time.time()
        log(f"fixture {family}")
        try:
            cross = run_family(family, args.out, prompts)
            report[family] = {k: cross.get(k) for k in ("status", "maxRelError", "maxAbsError", "greedyTokensEqual")}
        except Exception as error:
            traceback.print_exc()
            report[family] = {"status": f"failed: {type(error).__name__}: {error}"}
        log(f"fixture {family} done in {time.time() - t0:.1f}s: {report[family]}")
    with open(os.path.join(args.out, "fixtures-report.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
