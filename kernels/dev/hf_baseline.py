"""transformers (torch, bf16) baseline on a preset's dims with random weights: 512- and 2048-token prefill and
greedy decode at batch 1 and 16 through `generate`. Prints lines the device-run summary and
kernels/dev/bench-compare.mjs read:
    hf prefill 512: MS ms
    hf decode b1: TOK tok/s (MS ms/step)
Usage (GPU machine): python3 kernels/dev/hf_baseline.py config/models/zamba2-1.2b.json [budget_s]
"""

import json
import sys
import time

import torch
from transformers import Zamba2Config, Zamba2ForCausalLM


def main() -> None:
    cfg_path = sys.argv[1]
    budget_s = float(sys.argv[2]) if len(sys.argv) > 2 else 90.0
    t_start = time.time()
    with open(cfg_path) as f:
        cfg = Zamba2Config(**json.load(f))
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = Zamba2ForCausalLM(cfg).eval()
    print(f"hf model built in {time.time() - t_start:.1f}s, transformers torch path, bf16", flush=True)
    V = cfg.vocab_size

    def sync_time(fn):
        torch.cuda.synchronize()
        t0 = time.time()
        out = fn()
        torch.cuda.synchronize()
        return time.time() - t0, out

    with torch.no_grad():
        ids = torch.randint(3, V, (1, 2048), device="cuda")
        sync_time(lambda: model(ids[:, :128]))  # warm-up
        for n in (512, 2048):
            dt, _ = sync_time(lambda: model(ids[:, :n]))
            print(f"hf prefill {n}: {dt * 1000:.0f} ms", flush=True)
        for batch, new in ((1, 24), (16, 16)):
            if time.time() - t_start > budget_s:
                print(f"hf decode b{batch}: skipped (budget)")
                continue
            prompt = torch.randint(3, V, (batch, 128), device="cuda")
            gen = lambda n: model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False)  # noqa: E731
            t1, _ = sync_time(lambda: gen(1))
            tn, _ = sync_time(lambda: gen(new))
            per_step = (tn - t1) / (new - 1)
            print(f"hf decode b{batch}: {batch / per_step:.1f} tok/s ({per_step * 1000:.1f} ms/step)", flush=True)


if __name__ == "__main__":
    main()
