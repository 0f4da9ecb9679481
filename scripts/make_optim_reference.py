#!/usr/bin/env python3
"""Golden AdamW trajectories from torch.optim.AdamW (the optimizer the HF
Trainer uses) for tests/test_optim.c.

    python scripts/make_optim_reference.py   # writes tests/fixtures/optim/adamw.safetensors

Two parameter vectors, three steps each, with the gradients given:
  case0: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0
  case1: lr 2e-2, betas (0.8, 0.95), eps 1e-6, weight decay 0.1
Stored: case{k}.p0, case{k}.g{1,2,3}, case{k}.p{1,2,3} (params after each
step) and case{k}.hparams = [lr, beta1, beta2, eps, weight_decay].

Also the HF Trainer's LR schedules (transformers.optimization): the LR factor
at optimizer steps 0..T-1 for cosine / linear / constant-with-warmup, T = 50,
warmup = ceil(0.03 * 50) = 2 and warmup = 0: sched.{kind}.w{warmup}.
"""
import os

import torch
from safetensors.torch import save_file

CASES = [(1e-3, 0.9, 0.999, 1e-8, 0.0), (2e-2, 0.8, 0.95, 1e-6, 0.1)]


def main():
    out = {}
    g = torch.Generator().manual_seed(7)
    for k, (lr, b1, b2, eps, wd) in enumerate(CASES):
        p = torch.nn.Parameter(torch.randn(257, generator=g))
        out[f"case{k}.p0"] = p.detach().clone()
        opt = torch.optim.AdamW([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, foreach=False)
        for step in range(1, 4):
            grad = torch.randn(257, generator=g) * (10.0 ** (step - 2))
            out[f"case{k}.g{step}"] = grad.clone()
            p.grad = grad
            opt.step()
            out[f"case{k}.p{step}"] = p.detach().clone()
        out[f"case{k}.hparams"] = torch.tensor([lr, b1, b2, eps, wd], dtype=torch.float32)
    from transformers import (get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup,
                              get_linear_schedule_with_warmup)
    total = 50
    for warmup in (2, 0):
        for kind, make in (("cosine", lambda o: get_cosine_schedule_with_warmup(o, warmup, total)),
                           ("linear", lambda o: get_linear_schedule_with_warmup(o, warmup, total)),
                           ("constant", lambda o: get_constant_schedule_with_warmup(o, warmup))):
            opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
            sched = make(opt)
            factors = []
            for _ in range(total):
                factors.append(opt.param_groups[0]["lr"])
                opt.step()
                sched.step()
            out[f"sched.{kind}.w{warmup}"] = torch.tensor(factors, dtype=torch.float32)
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "optim")
    os.makedirs(path, exist_ok=True)
    save_file(out, os.path.join(path, "adamw.safetensors"))
    print("wrote", os.path.join(path, "adamw.safetensors"))


if __name__ == "__main__":
    main()
