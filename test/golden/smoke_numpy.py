"""numpy-only smoke run of the reference and the golden writer (no torch needed):
    python3 test/golden/smoke_numpy.py /tmp/smoke
Writes a random HF-layout checkpoint with numpy (bf16 safetensors), computes a few golden cases
and writes golden.json. Used to debug the scripts before spending device time."""

import json
import os
import struct
import sys

import numpy as np

from golden_lib import compute_case, load_prompts, write_golden, Zamba2Reference


def to_bf16_bytes(a: np.ndarray) -> bytes:
    bits = a.astype(np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")  # round to nearest even
    return rounded.tobytes()


def write_safetensors(path: str, tensors: dict[str, np.ndarray]) -> None:
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        raw = to_bf16_bytes(tensors[name])
        header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main(out: str) -> None:
    rng = np.random.default_rng(0)
    H, V, nh, N, G, F, r = 16, 32000, 4, 8, 2, 64, 4
    kinds = ["linear_attention", "hybrid", "linear_attention", "hybrid", "hybrid"]
    d = 2 * H
    conv = d + 2 * G * N
    cfg = {"model_type": "zamba2", "vocab_size": V, "hidden_size": H, "num_hidden_layers": len(kinds),
           "layers_block_type": kinds, "num_attention_heads": 2, "num_mem_blocks": 2, "mamba_d_state": N,
           "mamba_ngroups": G, "n_mamba_heads": nh, "mamba_expand": 2, "mamba_d_conv": 4, "intermediate_size": F,
           "adapter_rank": r, "use_shared_attention_adapter": True, "use_mem_rope": True,
           "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}, "rms_norm_eps": 1e-5,
           "chunk_size": 256, "tie_word_embeddings": True, "dtype": "bfloat16"}
    t = {"model.embed_tokens.weight": rng.normal(size=(V, H)), "model.final_layernorm.weight": 1 + 0.3 * rng.normal(size=H)}
    hybrid = [i for i, k in enumerate(kinds) if k == "hybrid"]
    for i, k in enumerate(kinds):
        p = f"model.layers.{i}." + ("mamba_decoder." if k == "hybrid" else "")
        t[p + "input_layernorm.weight"] = 1 + 0.3 * rng.normal(size=H)
        t[p + "mamba.in_proj.weight"] = rng.normal(size=(2 * d + 2 * G * N + nh, H)) / np.sqrt(H)
        t[p + "mamba.conv1d.weight"] = 0.5 * rng.normal(size=(conv, 1, 4))
        t[p + "mamba.conv1d.bias"] = 0.1 * rng.normal(size=conv)
        t[p + "mamba.dt_bias"] = rng.uniform(-8, 0, size=nh)
        t[p + "mamba.A_log"] = np.log(rng.uniform(0.5, 10, size=nh))
        t[p + "mamba.D"] = 1 + 0.5 * rng.normal(size=nh)
        t[p + "mamba.norm.weight"] = 1 + 0.3 * rng.normal(size=d)
        t[p + "mamba.out_proj.weight"] = rng.normal(size=(H, d)) / np.sqrt(d)
        if k == "hybrid":
            t[f"model.layers.{i}.linear.weight"] = rng.normal(size=(H, H)) / np.sqrt(H)
    for blk in range(2):
        p = f"model.layers.{hybrid[blk]}.shared_transformer."
        t[p + "input_layernorm.weight"] = 1 + 0.3 * rng.normal(size=2 * H)
        for n in "qkv":
            t[p + f"self_attn.{n}_proj.weight"] = rng.normal(size=(2 * H, 2 * H)) / np.sqrt(2 * H)
        t[p + "self_attn.o_proj.weight"] = rng.normal(size=(H, 2 * H)) / np.sqrt(2 * H)
        t[p + "pre_ff_layernorm.weight"] = 1 + 0.3 * rng.normal(size=H)
        t[p + "feed_forward.gate_up_proj.weight"] = rng.normal(size=(2 * F, H)) / np.sqrt(H)
        t[p + "feed_forward.down_proj.weight"] = rng.normal(size=(H, F)) / np.sqrt(F)
        for h in range(len(hybrid)):
            if h % 2 != blk:
                continue
            for n in "qkv":
                t[p + f"self_attn.linear_{n}_adapter_list.{h}.0.weight"] = rng.normal(size=(r, 2 * H)) / np.sqrt(2 * H)
                t[p + f"self_attn.linear_{n}_adapter_list.{h}.1.weight"] = 0.5 * rng.normal(size=(2 * H, r)) / np.sqrt(r)
            t[p + f"feed_forward.gate_up_proj_adapter_list.{h}.0.weight"] = rng.normal(size=(r, H)) / np.sqrt(H)
            t[p + f"feed_forward.gate_up_proj_adapter_list.{h}.1.weight"] = 0.5 * rng.normal(size=(2 * F, r)) / np.sqrt(r)
    os.makedirs(out, exist_ok=True)
    write_safetensors(os.path.join(out, "model.safetensors"), t)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f)
    ref = Zamba2Reference(out)
    prompts = load_prompts()
    cases = [compute_case(ref, "len6", prompts["english"][:6], None, 8, True),
             compute_case(ref, "len300", prompts["python"][:300], [255, 299], 8, True)]
    # Prefix consistency: a fresh run on a prefix reproduces the longer run's logits exactly.
    again = ref.run(prompts["python"][:256], keep_positions=[255])
    assert np.array_equal(again["logits"][255], cases[1]["ref_logits"][255])
    # Greedy replay: feeding prompt + greedy tokens reproduces the greedy logits exactly.
    seq = prompts["english"][:6] + cases[0]["greedy"][:-1]
    replay = ref.run(seq)
    for j in range(len(cases[0]["greedy"]) - 1):
        assert np.array_equal(replay["logits"][6 + j], cases[0]["greedy_logits"][j])
    write_golden(out, "smoke", ".", ref, cases, {"status": "not run"}, {"script": "smoke"}, "numpy smoke")
    margins = cases[0]["margins"]
    print("ok", cases[0]["greedy"], [round(m, 3) for m in margins],
          float(np.abs(cases[1]["ref_logits"][299]).max()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/zamba2-smoke")
