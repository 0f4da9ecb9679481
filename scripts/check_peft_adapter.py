#!/usr/bin/env python3
"""Checks an adapter folder written by `llava train` (LoRA) with the
ecosystem's own loaders:
  1. PeftModel.from_pretrained(LlavaForConditionalGeneration(base), adapter)
     gives the logits `llava forward --adapter` wrote (rel. error < 1e-4);
     the projector comes from the adapter's modules_to_save;
  2. non_lora_trainables.bin loads with torch.load(weights_only=True) under
     LLaVA's names (base_model.model.model.mm_projector.*) and holds the same
     projector;
  3. with --merged: the `llava merge` folder loads with
     LlavaForConditionalGeneration.from_pretrained and gives the same logits,
     and its weights equal peft's merge_and_unload() (rel. error < 1e-5).

    llava forward --model BASE --adapter ADAPTER --batch BATCH --stage 0 --out ours.safetensors
    llava merge --base BASE --adapter ADAPTER --out MERGED
    python3 scripts/check_peft_adapter.py --base BASE --adapter ADAPTER --batch BATCH \\
        --ours ours.safetensors [--merged MERGED]
"""
import argparse
import os
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import LlavaForConditionalGeneration


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--batch", required=True)
    ap.add_argument("--ours", required=True, help="llava forward output (logits)")
    ap.add_argument("--merged")
    a = ap.parse_args()
    batch = load_file(a.batch)
    ours = load_file(a.ours)["logits"]
    ok = True

    base = LlavaForConditionalGeneration.from_pretrained(a.base, dtype=torch.float32)
    pm = PeftModel.from_pretrained(base, a.adapter).eval()
    n_lora = sum("lora_" in n for n, _ in pm.named_parameters())
    with torch.no_grad():
        theirs = pm(**batch).logits
    e = rel(ours, theirs)
    print(f"PeftModel.from_pretrained: {n_lora} LoRA tensors; logits vs llava forward --adapter: rel. error {e:.2e}")
    ok &= e < 1e-4

    adapter = load_file(os.path.join(a.adapter, "adapter_model.safetensors"))
    nlt = torch.load(os.path.join(a.adapter, "non_lora_trainables.bin"), weights_only=True)
    for k, v in sorted(nlt.items()):
        # LLaVA: mm_projector.0 / .2 = HF multi_modal_projector.linear_1 / linear_2
        hf = k.replace("mm_projector.0.", "multi_modal_projector.linear_1.").replace(
            "mm_projector.2.", "multi_modal_projector.linear_2.")
        same = hf in adapter and torch.equal(adapter[hf], v)
        print(f"non_lora_trainables.bin: {k} {tuple(v.shape)} {'== adapter ' + hf if same else 'MISSING/DIFFERENT'}")
        ok &= same

    if a.merged:
        merged = LlavaForConditionalGeneration.from_pretrained(a.merged, dtype=torch.float32).eval()
        with torch.no_grad():
            logits = merged(**batch).logits
        e = rel(logits, theirs)
        print(f"merged folder in transformers: logits vs PeftModel rel. error {e:.2e}")
        ok &= e < 1e-4
        reference = pm.merge_and_unload().state_dict()
        errors = [rel(p, reference[n]) for n, p in merged.state_dict().items() if n in reference]
        worst = max(errors)
        print(f"merged weights vs peft merge_and_unload(): {len(errors)} tensors, worst rel. error {worst:.2e}")
        ok &= len(errors) == len(reference)
        ok &= worst < 1e-5
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
