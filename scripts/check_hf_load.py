#!/usr/bin/env python3
"""Checks that a model folder written by `llava train` / `llava init` loads in
transformers with no missing or unexpected weights and gives the logits
`llava forward` gives on it.

    python scripts/check_hf_load.py MODEL_DIR BATCH.safetensors LLAVA_FORWARD_OUT.safetensors

(see scripts/check_hf_roundtrip.sh, which produces all three). Exit 0 on a
match (logits rel. error < 1e-4), 1 otherwise.
"""
import sys

import torch
from safetensors.torch import load_file
from transformers import LlavaForConditionalGeneration


def main():
    folder, batch_path, out_path = sys.argv[1:4]
    model, info = LlavaForConditionalGeneration.from_pretrained(folder, output_loading_info=True,
                                                                dtype=torch.float32)
    problems = {k: v for k, v in info.items() if v}
    print("loading info:", problems or "clean (no missing / unexpected / mismatched weights)")
    batch = load_file(batch_path)
    model.eval()
    with torch.no_grad():
        logits = model(**batch).logits
    ours = load_file(out_path)["logits"]
    err = ((logits.double() - ours.double()).norm() / logits.double().norm()).item()
    print(f"logits rel. error vs llava forward: {err:.3e}")
    ok = not problems and err < 1e-4
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
