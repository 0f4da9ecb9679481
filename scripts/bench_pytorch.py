#!/usr/bin/env python3
"""PyTorch's side of scripts/bench_compare.sh: the same training step as
`llava bench` (forward + backward + AdamW on batch samples of BOS + one image
+ `text` tokens, fp32 on the CPU) with transformers' LlavaForConditionalGeneration.

    python scripts/bench_pytorch.py MODEL_DIR --batch 8 --text 64 --stage 2 --steps 5 --threads 1

Prints one JSON line in the format of `llava bench` (wall and process CPU
seconds per step, peak RSS of the process).
"""
import argparse
import json
import resource
import time

import torch
from transformers import LlavaForConditionalGeneration


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--text", type=int, default=64)
    ap.add_argument("--stage", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model = LlavaForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32)
    cfg = model.config
    for name, p in model.named_parameters():
        trains = "multi_modal_projector" in name or (args.stage == 2 and "vision_tower" not in name)
        p.requires_grad_(trains)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
    n_img = cfg.image_seq_length
    T = 1 + n_img + args.text
    S = cfg.vision_config.image_size
    g = torch.Generator().manual_seed(1)
    V = cfg.text_config.vocab_size
    ids = torch.randint(3, min(V, cfg.image_token_index) - 1, (args.batch, T), generator=g)
    ids[:, 0] = 1
    ids[:, 1:1 + n_img] = cfg.image_token_index
    labels = ids.clone()
    labels[:, :1 + n_img + args.text // 3] = -100
    pixels = torch.randn(args.batch, 3, S, S, generator=g)
    model.train()
    total, best, cpu_total = 0.0, float("inf"), 0.0
    for step in range(args.warmup + args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        out = model(input_ids=ids, pixel_values=pixels, labels=labels)
        out.loss.backward()
        opt.step()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if step >= args.warmup:
            cpu_total += dc
            total += dt
            best = min(best, dt)
    print(json.dumps({"device": "pytorch-cpu", "stage": args.stage, "batch": args.batch, "seq": T,
                      "params": sum(p.numel() for p in model.parameters()),
                      "trainable": sum(p.numel() for p in params), "steps": args.steps,
                      "s_per_step": total / args.steps, "best_s_per_step": best,
                      "cpu_s_per_step": cpu_total / args.steps,
                      "tokens_per_s": args.batch * T * args.steps / total,
                      "images_per_s": args.batch * args.steps / total,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))


if __name__ == "__main__":
    main()
