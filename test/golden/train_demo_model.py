"""Trains the bundled demo model (models/) on Python's standard library and writes its goldens.

Runs on the GPU machine (torch + transformers + tokenizers, no network):
    python3 test/golden/train_demo_model.py --out DIR --train-seconds 240
DIR receives: model/ (config.json, model.safetensors, generation_config.json), golden/ (golden.json
and logits for test/golden/fixtures/demo) and train-report.json (the numbers in models/README.md).

Data: every .py file of the interpreter's stdlib (PSF licence, its tests included, files over 400k chars skipped), split by file
(crc32(path) % 20 == 0 is held out), each file wrapped as BOS + text + EOS; plus short ChatML-formatted
question/answer pairs made from the held-in files' docstrings, so the chat template is not alien to it.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import sys
import sysconfig
import time
import traceback
import zlib

import numpy as np

from golden_lib import (HERE, compute_case, hf_cross_check, hf_disable_dt_floor, hf_load_float64, load_prompts,
                        log, summarize_checks, write_golden, Zamba2Reference, dump_json)

MODELS_DIR = os.path.join(HERE, "..", "..", "models")
SEED = 20261128
SEQ = 256
SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__"}
MAX_FILE_CHARS = 400_000  # larger files are mostly data tables

CHAT_PROMPT = "<|im_start|>user\nWhat does the function `os.path.join` do?<|im_end|>\n<|im_start|>assistant\n"

DEMO_CONFIG = dict(
    vocab_size=32000, hidden_size=128, num_hidden_layers=8,
    layers_block_type=["mamba", "mamba", "hybrid", "mamba", "mamba", "hybrid", "mamba", "mamba"],
    num_attention_heads=4, num_mem_blocks=1, use_shared_attention_adapter=True, adapter_rank=16,
    use_mem_rope=True, mamba_d_state=16, mamba_ngroups=1, n_mamba_heads=8, mamba_expand=2, mamba_d_conv=4,
    intermediate_size=512, chunk_size=256, max_position_embeddings=4096, rms_norm_eps=1e-5, hidden_act="gelu",
    tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2,
)


def chat_text(question: str, answer: str) -> str:
    # Same rendering as the chat_template in models/tokenizer_config.json (minus the BOS, added as an id).
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n"


def docstring_pairs(module: str, source: str) -> list[tuple[str, str]]:
    pairs = []
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return pairs
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            doc = ast.get_docstring(node)
            if not doc:
                continue
            answer = doc.strip().split("\n\n")[0].strip()
            if 20 <= len(answer) <= 600:
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                pairs.append((f"What does the {kind} `{module}.{node.name}` do?", answer))
    return pairs


def collect_data(max_chars: int, parse_seconds: float):
    root = sysconfig.get_paths()["stdlib"]
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith(".py"):
                files.append(os.path.join(dirpath, name))
    train, held, pairs, chars = [], [], [], 0
    t0 = time.time()
    for path in files:
        rel = os.path.relpath(path, root)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, OSError):
            continue
        if not text.strip() or len(text) > MAX_FILE_CHARS:
            continue
        chars += len(text)
        if chars > max_chars:
            break
        if zlib.crc32(rel.encode()) % 20 == 0:
            held.append(text)
        else:
            train.append(text)
            if time.time() - t0 < parse_seconds:
                module = rel[:-3].replace(os.sep, ".").removesuffix(".__init__")
                pairs.extend(docstring_pairs(module, text))
    return root, train, held, pairs, chars


def tokenize(tok, texts: list[str]) -> np.ndarray:
    out = []
    for i in range(0, len(texts), 512):
        for enc in tok.encode_batch(texts[i : i + 512], add_special_tokens=False):
            out.append(np.asarray([1] + enc.ids + [2], dtype=np.int32))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int32)


def make_model(torch):
    from transformers import Zamba2Config, Zamba2ForCausalLM
    try:
        config = Zamba2Config(**DEMO_CONFIG, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    except Exception:
        config = Zamba2Config(**DEMO_CONFIG, rope_theta=10000.0)
    torch.manual_seed(SEED)
    model = Zamba2ForCausalLM(config)
    hf_disable_dt_floor(model)  # train with the semantics the engines run (no dt floor)
    return model


def batch_loss(torch, model, ids, autocast: bool):
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        logits = model(input_ids=ids[:, :-1], use_cache=False).logits
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def evaluate(torch, model, stream, n_windows: int, batch: int, seed: int, autocast: bool) -> float:
    g = torch.Generator(device="cpu").manual_seed(seed)
    starts = torch.randint(0, len(stream) - SEQ - 2, (n_windows,), generator=g)
    total = 0.0
    model.eval()
    with torch.no_grad():
        for i in range(0, n_windows, batch):
            s = starts[i : i + batch]
            ids = torch.stack([stream[j : j + SEQ + 1] for j in s.tolist()]).long().cuda()
            total += batch_loss(torch, model, ids, autocast).item() * len(s)
    model.train()
    return total / n_windows


def greedy_sample(torch, model, tok, ids: list[int], n: int) -> str:
    seq = list(ids)
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([seq]).cuda(), use_cache=False).logits[0, -1]
            nxt = int(torch.argmax(logits))
            seq.append(nxt)
            if nxt == 2:
                break
    return tok.decode(seq[len(ids):], skip_special_tokens=False)


def train(args, report: dict) -> None:
    import torch
    from tokenizers import Tokenizer
    t_start = time.time()
    tok = Tokenizer.from_file(os.path.join(MODELS_DIR, "tokenizer.json"))
    prompts = json.load(open(os.path.join(HERE, "prompts.json")))["prompts"]
    same = {k: tok.encode(v["text"]).ids == v["ids"] for k, v in prompts.items()}
    report["tokenizerJsVsRust"] = same
    report["chatPromptIds"] = [1] + tok.encode(CHAT_PROMPT, add_special_tokens=False).ids
    log(f"rust tokenizers vs @huggingface/tokenizers ids equal: {same}")

    root, train_texts, held_texts, pairs, chars = collect_data(args.max_chars, parse_seconds=20)
    rng = np.random.default_rng(SEED)
    rng.shuffle(train_texts)
    chat_docs = [chat_text(q, a) for q, a in pairs]
    train_stream = tokenize(tok, train_texts + chat_docs)
    held_stream = tokenize(tok, held_texts)
    report["data"] = {"stdlib": root, "trainFiles": len(train_texts), "heldOutFiles": len(held_texts),
                      "chatPairs": len(pairs), "chars": chars, "trainTokens": int(len(train_stream)),
                      "heldOutTokens": int(len(held_stream)), "prepSeconds": round(time.time() - t_start, 1)}
    log(f"data: {report['data']}")

    train_t = torch.from_numpy(train_stream)
    held_t = torch.from_numpy(held_stream)
    model = make_model(torch).cuda().train()
    n_params = sum(p.numel() for p in model.parameters())
    report["parameters"] = n_params
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1, eps=1e-8)
    g = torch.Generator(device="cpu").manual_seed(SEED)

    def get_batch(bs):
        starts = torch.randint(0, len(train_t) - SEQ - 2, (bs,), generator=g)
        return torch.stack([train_t[j : j + SEQ + 1] for j in starts.tolist()]).long().cuda(non_blocking=True)

    autocast, batch = True, args.batch
    # Probe: the first step decides autocast and batch size (the slow mamba path is memory-hungry).
    while True:
        try:
            loss = batch_loss(torch, model, get_batch(batch), autocast)
            loss.backward()
            opt.zero_grad(set_to_none=True)
            break
        except torch.OutOfMemoryError:
            opt.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            batch //= 2
            log(f"out of memory; batch -> {batch}")
            if batch < 4:
                raise
        except Exception as error:
            if not autocast:
                raise
            log(f"bf16 autocast step failed ({type(error).__name__}: {error}); training in float32")
            opt.zero_grad(set_to_none=True)
            autocast = False
    torch.backends.cuda.matmul.allow_tf32 = True
    report["train"] = {"batch": batch, "seq": SEQ, "autocastBf16": autocast, "peakLr": args.lr}
    train_deadline = time.time() + args.train_seconds
    warmup, step, total_steps, tokens = 100, 0, None, 0
    t_probe = None
    losses = []
    t_train0 = time.time()
    while time.time() < train_deadline:
        if step == 5:
            torch.cuda.synchronize(); t_probe = time.time()
        if step == 25:
            torch.cuda.synchronize()
            per_step = (time.time() - t_probe) / 20
            total_steps = max(200, int((train_deadline - t_probe) / per_step))
            log(f"{per_step * 1000:.0f} ms/step at batch {batch}; planning {total_steps} steps; "
                f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
        planned = total_steps or 10**9
        if step < warmup:
            lr = args.lr * (step + 1) / warmup
        else:
            frac = min(1.0, (step - warmup) / max(1, planned - warmup))
            lr = args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        ids = get_batch(batch)
        loss = batch_loss(torch, model, ids, autocast)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += ids.numel() - ids.shape[0]
        if step % 100 == 0 or step == 1:
            losses.append((step, round(loss.item(), 4)))
            log(f"step {step} loss {losses[-1][1]} lr {lr:.2e} tok/s {tokens / (time.time() - t_train0):.0f}")
        if total_steps is not None and step >= total_steps:
            break
    wall = time.time() - t_train0
    report["train"].update({"steps": step, "plannedSteps": total_steps, "tokensSeen": tokens,
                            "wallSeconds": round(wall, 1), "warmupSteps": warmup, "schedule": "linear warmup, cosine to 0.1x",
                            "optimizer": "AdamW betas (0.9, 0.95) wd 0.1, grad clip 1.0", "lossCurve": losses,
                            "gpu": torch.cuda.get_device_name(0)})
    log(f"trained {step} steps, {tokens} tokens in {wall:.0f}s")

    out_model = os.path.join(args.out, "model")
    model.eval()
    model_bf16 = model.to(torch.bfloat16)
    model_bf16.save_pretrained(out_model)
    with open(os.path.join(out_model, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}, f, indent=2)
    log(f"saved: {sorted(os.listdir(out_model))}")

    from transformers import Zamba2ForCausalLM
    try:
        reloaded = Zamba2ForCausalLM.from_pretrained(out_model, dtype=torch.float32)
    except TypeError:
        reloaded = Zamba2ForCausalLM.from_pretrained(out_model, torch_dtype=torch.float32)
    reloaded = reloaded.cuda().eval()
    hf_disable_dt_floor(reloaded)
    try:
        saved = {k: v.float() for k, v in model_bf16.state_dict().items()}
        loaded = reloaded.state_dict()
        report["reloadedWeightsEqual"] = all(torch.equal(v, loaded[k].float()) for k, v in saved.items() if k in loaded)
        held_loss = evaluate(torch, reloaded, held_t, 128, 32, seed=1, autocast=False)
        train_loss = evaluate(torch, reloaded, train_t, 128, 32, seed=2, autocast=False)
        report["eval"] = {"heldOutLoss": round(held_loss, 4), "heldOutPerplexity": round(math.exp(held_loss), 2),
                          "trainLoss": round(train_loss, 4), "trainPerplexity": round(math.exp(train_loss), 2),
                          "windows": "128 random windows of 256 tokens, float32 compute on the saved bf16 weights"}
        log(f"eval: {report['eval']} reloaded weights equal: {report['reloadedWeightsEqual']}")
    except Exception as error:
        traceback.print_exc()
        report["eval"] = f"failed: {type(error).__name__}: {error}"
    samples = {}
    cases = [(n, prompts[n]["text"], prompts[n]["ids"]) for n in ("codePrompt", "importPrompt", "docPrompt")]
    cases.append(("chat", CHAT_PROMPT, report["chatPromptIds"]))
    for name, text, ids in cases:
        try:
            samples[name] = {"prompt": text, "greedy": greedy_sample(torch, reloaded, tok, ids, 64)}
            log(f"sample {name}: {text!r} -> {samples[name]['greedy']!r}")
        except Exception as error:
            traceback.print_exc()
            samples[name] = {"prompt": text, "error": f"{type(error).__name__}: {error}"}
    report["samples"] = samples


def demo_goldens(args, report: dict) -> None:
    """Goldens for the demo model from the float64 reference, cross-checked against transformers."""
    import shutil
    ckpt = os.path.join(args.out, "model")
    # The reference reads the checkpoint folder as it will sit in the repo (models/ + tokenizer files).
    ref = Zamba2Reference(ckpt)
    prompts = load_prompts()
    cases = [compute_case(ref, "code", prompts["codePrompt"], [len(prompts["codePrompt"]) - 1], 24, True),
             compute_case(ref, "imports", prompts["importPrompt"], [len(prompts["importPrompt"]) - 1], 24, True),
             compute_case(ref, "chat", report["chatPromptIds"], [len(report["chatPromptIds"]) - 1], 24, True),
             compute_case(ref, "len300", prompts["python"][:300], [255, 299], 16, True)]
    golden_dir = os.path.join(args.out, "golden")
    generator = {"script": "test/golden/train_demo_model.py", "seed": SEED, "date": time.strftime("%Y-%m-%d")}
    desc = "the bundled demo model (models/), trained on Python's standard library"
    write_golden(golden_dir, "demo", "../../../../models", ref, cases, {"status": "not run"}, generator, desc)
    try:
        model = hf_load_float64(ckpt)
        checks = []
        for c in cases:
            checks.extend(hf_cross_check(model, c, chunk_size=256))
        cross = summarize_checks(checks, {"status": "ok"})
        log(f"demo cross-check: rel {cross['maxRelError']:.2e} abs {cross['maxAbsError']:.2e} "
            f"greedy equal {cross['greedyTokensEqual']}")
    except Exception as error:
        traceback.print_exc()
        cross = {"status": f"failed: {type(error).__name__}: {error}"}
    write_golden(golden_dir, "demo", "../../../../models", ref, cases, cross, generator, desc)
    report["demoCrossCheck"] = {k: cross.get(k) for k in ("status", "maxRelError", "maxAbsError", "greedyTokensEqual")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--train-seconds", type=float, default=240)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--max-chars", type=int, default=60_000_000)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    report: dict = {"config": DEMO_CONFIG}
    for stage in (train, demo_goldens):
        t0 = time.time()
        try:
            stage(args, report)
            report[f"{stage.__name__}Status"] = "ok"
        except Exception as error:
            traceback.print_exc()
            report[f"{stage.__name__}Status"] = f"failed: {type(error).__name__}: {error}"
            log(f"stage {stage.__name__} failed: {error}")
        log(f"stage {stage.__name__}: {time.time() - t0:.0f}s")
        with open(os.path.join(args.out, "train-report.json"), "w") as f:
            f.write(dump_json(report))


if __name__ == "__main__":
    main()
