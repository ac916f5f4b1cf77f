"""Shared pieces of make_fixtures.py and train_demo_model.py: golden cases computed with the float64
reference, the golden.json writer, and the cross-check against transformers (float64, dt floor off).

Golden format: test/golden/README.md. numpy-only except the functions whose names start with `hf_`
(they import torch lazily, so the rest can be tested on a machine without torch).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

from zamba2_ref import Zamba2Reference  # noqa: E402

FORMAT = "zamba2-golden/1"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_prompts() -> dict[str, list[int]]:
    with open(os.path.join(HERE, "prompts.json")) as f:
        return {k: v["ids"] for k, v in json.load(f)["prompts"].items()}


def dims_summary(ref: Zamba2Reference) -> dict:
    d = ref.dims
    return {
        "vocabSize": d.vocab, "hiddenSize": d.hidden, "numLayers": len(d.layer_kinds),
        "hybridLayerIds": d.hybrid_layer_ids, "numMemBlocks": d.num_mem_blocks,
        "numAttentionHeads": d.heads, "attentionHeadDim": d.ahd, "kvChannels": d.kv_channels,
        "intermediateSize": d.ffn, "mambaDState": d.d_state, "mambaNGroups": d.ngroups,
        "nMambaHeads": d.nheads, "mambaHeadDim": d.head_dim, "dInner": d.d_inner,
        "useMemRope": d.use_rope, "useSharedAttentionAdapter": d.attn_adapter,
        "ropeTheta": d.rope_theta, "chunkSize": int(ref.config.get("chunk_size", 256)),
    }


def compute_case(ref: Zamba2Reference, name: str, prompt: list[int], keep: list[int] | None,
                 greedy: int, all_positions_for_check: bool) -> dict:
    """Runs the reference once; keeps all prompt positions in memory when a cross-check wants
    them (the stored file holds only `keep`)."""
    t0 = time.time()
    want = None if all_positions_for_check or keep is None else keep
    out = ref.run(prompt, keep_positions=want, greedy_steps=greedy, keep_greedy_logits=greedy > 0)
    positions = list(range(len(prompt))) if keep is None else list(keep)
    log(f"  case {name}: {len(prompt)} tokens, {greedy} greedy, {time.time() - t0:.1f}s")
    return {
        "name": name, "prompt": list(map(int, prompt)), "positions": positions,
        "ref_logits": out["logits"], "greedy": out["greedy"], "margins": out["margins"],
        "greedy_logits": out["greedy_logits"],
    }


def write_golden(folder: str, fixture: str, checkpoint_rel: str, ref: Zamba2Reference,
                 cases: list[dict], cross_check: dict, generator: dict, description: str) -> None:
    os.makedirs(folder, exist_ok=True)
    entries = []
    for c in cases:
        mat = np.stack([c["ref_logits"][p] for p in c["positions"]]).astype("<f4")
        fname = f"logits-{c['name']}.f32"
        mat.tofile(os.path.join(folder, fname))
        entries.append({
            "name": c["name"],
            "promptTokens": c["prompt"],
            "logitPositions": c["positions"],
            "logitsFile": fname,
            "greedyTokens": c["greedy"],
            "greedyTop2Margins": [round(m, 6) for m in c["margins"]],
        })
    doc = {
        "format": FORMAT,
        "fixture": fixture,
        "description": description,
        "checkpoint": checkpoint_rel,
        "dims": dims_summary(ref),
        "generator": generator,
        "crossCheck": cross_check,
        "cases": entries,
    }
    with open(os.path.join(folder, "golden.json"), "w") as f:
        f.write(dump_json(doc))


def dump_json(doc) -> str:
    """Indented JSON with lists of numbers kept on one line (token lists stay readable)."""
    text = json.dumps(doc, indent=1)
    return re.sub(r"\[\s*([-0-9.eE+,\s]*?)\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",") if x.strip()) + "]", text) + "\n"


def compare(ref_rows: list[np.ndarray], got_rows: list[np.ndarray], positions: list[int]) -> dict:
    """maxAbsError and maxRelError (= max|got-ref| / max|ref| per position, worst position)."""
    worst = {"maxAbsError": 0.0, "maxRelError": 0.0, "worstPosition": None}
    for pos, r, g in zip(positions, ref_rows, got_rows):
        err = float(np.max(np.abs(np.asarray(g, dtype=np.float64) - r)))
        rel = err / max(float(np.max(np.abs(r))), 1e-30)
        worst["maxAbsError"] = max(worst["maxAbsError"], err)
        if rel >= worst["maxRelError"]:
            worst["maxRelError"], worst["worstPosition"] = rel, pos
    worst["positionsCompared"] = len(positions)
    return worst


# ---------------------------------------------------------------------------------------------
# transformers cross-check (torch imported lazily)
# ---------------------------------------------------------------------------------------------

def hf_disable_dt_floor(model) -> int:
    """Kernel semantics (spec §6.8, §8): no dt clamp. Both attributes, whichever this version reads."""
    n = 0
    for module in model.modules():
        if hasattr(module, "time_step_limit") and hasattr(module, "A_log"):
            module.time_step_limit = (0.0, float("inf"))
            if hasattr(module, "time_step_min"):
                module.time_step_min = 0.0
            n += 1
    return n


def hf_load_float64(ckpt_dir: str, dt_floor: bool = False):
    import torch
    from transformers import Zamba2ForCausalLM
    try:
        model = Zamba2ForCausalLM.from_pretrained(ckpt_dir, dtype=torch.float64, attn_implementation="eager")
    except TypeError:
        model = Zamba2ForCausalLM.from_pretrained(ckpt_dir, torch_dtype=torch.float64, attn_implementation="eager")
    model.eval()
    if not dt_floor:
        n = hf_disable_dt_floor(model)
        if n == 0:
            raise RuntimeError("found no mamba mixers to switch the dt floor off on")
    return model


def hf_full_logits(model, ids: list[int]) -> np.ndarray:
    import torch
    with torch.no_grad():
        out = model(torch.tensor([ids]), use_cache=False)
    return out.logits[0].double().numpy()


def hf_prefill_then_decode(model, prefill: list[int], decode: list[int]):
    import torch
    with torch.no_grad():
        out = model(torch.tensor([prefill]), use_cache=True)
        cache = out.past_key_values
        if cache is None:  # versions that only fill a cache they are handed
            from transformers.models.zamba2.modeling_zamba2 import Zamba2HybridDynamicCache
            cache = Zamba2HybridDynamicCache(model.config, 1, dtype=model.dtype, device=model.device)
            out = model(torch.tensor([prefill]), past_key_values=cache, use_cache=True)
            cache = out.past_key_values or cache
        prefill_logits = out.logits[0].double().numpy()
        steps = []
        for tok in decode:
            out = model(torch.tensor([[tok]]), past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            steps.append(out.logits[0, -1].double().numpy())
    return prefill_logits, steps


def hf_cross_check(model, case: dict, chunk_size: int) -> list[dict]:
    """Checks for one case. transformers' torch path is right only for T <= chunk_size from a zero
    state (spec §6.9), so longer prompts are prefilled up to 200 tokens and decoded token by token."""
    checks = []
    prompt, greedy = case["prompt"], case["greedy"]
    ref_all = case["ref_logits"]
    if len(prompt) <= chunk_size:
        # Full forward over prompt (+ greedy continuation when it fits): every position.
        seq = prompt + greedy[:-1] if greedy and len(prompt) + len(greedy) - 1 <= chunk_size else prompt
        logits = hf_full_logits(model, seq)
        pos = [p for p in range(len(prompt)) if p in ref_all]
        c = compare([ref_all[p] for p in pos], [logits[p] for p in pos], pos)
        c.update(case=case["name"], mode="full-forward prompt")
        checks.append(c)
        if seq is not prompt:
            gpos = list(range(len(prompt), len(seq)))
            c = compare(case["greedy_logits"][: len(gpos)], [logits[p] for p in gpos], gpos)
            c.update(case=case["name"], mode="full-forward greedy continuation")
            hf_greedy = [int(np.argmax(logits[len(prompt) - 1]))] + [int(np.argmax(logits[p])) for p in gpos]
            c["greedyTokensEqual"] = hf_greedy == greedy
            checks.append(c)
        split = len(prompt)
    else:
        split = 200
    # Prefill then decode on the cache (teacher-forced through the rest of the prompt, then greedy).
    decode = prompt[split:] + greedy[:-1]
    if split < 1 or (not decode and split == len(prompt) and not greedy):
        return checks
    pre, steps = hf_prefill_then_decode(model, prompt[:split], decode)
    ref_rows, got_rows, pos = [], [], []
    for i, row in enumerate(steps):
        p = split + i
        if p < len(prompt):
            if p in ref_all:
                ref_rows.append(ref_all[p]); got_rows.append(row); pos.append(p)
        else:
            ref_rows.append(case["greedy_logits"][p - len(prompt)]); got_rows.append(row); pos.append(p)
    if split - 1 in ref_all:
        ref_rows.insert(0, ref_all[split - 1]); got_rows.insert(0, pre[split - 1]); pos.insert(0, split - 1)
    c = compare(ref_rows, got_rows, pos)
    c.update(case=case["name"], mode=f"prefill {split} then decode {len(decode)} on the cache")
    if greedy:
        last_prompt = pre[-1] if split == len(prompt) else steps[len(prompt) - split - 1]
        hf_greedy = [int(np.argmax(last_prompt))] + [int(np.argmax(s)) for s in steps[len(prompt) - split:]]
        c["greedyTokensEqual"] = hf_greedy == greedy
    checks.append(c)
    return checks


def summarize_checks(checks: list[dict], extra: dict) -> dict:
    summary = {
        "reference": "test/reference/zamba2_ref.py (float64, token by token, no dt floor)",
        "against": extra.get("against", "transformers Zamba2ForCausalLM, float64, eager attention, "
                             "pure-torch mamba path with the dt floor switched off"),
        "relErrorDefinition": "max |hf - ref| / max |ref| over one logits row; the worst row",
        "maxAbsError": max((c["maxAbsError"] for c in checks), default=None),
        "maxRelError": max((c["maxRelError"] for c in checks), default=None),
        "greedyTokensEqual": all(c.get("greedyTokensEqual", True) for c in checks) if checks else None,
        "checks": checks,
    }
    summary.update({k: v for k, v in extra.items() if k != "against"})
    return summary
