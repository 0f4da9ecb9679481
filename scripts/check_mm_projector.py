#!/usr/bin/env python3
"""Checks that a stage-1 mm_projector.bin (written by `llava train` in
torch.save format) loads with torch.load as LLaVA's --pretrain_mm_mlp_adapter
does, under the original LLaVA names, with the values of projector.safetensors.

    python scripts/check_mm_projector.py RUN/final
"""
import sys

import torch
from safetensors.torch import load_file


def main():
    folder = sys.argv[1]
    weights = torch.load(f"{folder}/mm_projector.bin", map_location="cpu")  # weights_only, as torch >= 2.6
    ours = load_file(f"{folder}/projector.safetensors")
    # LLaVA's loader: keys containing "mm_projector", prefix stripped
    stripped = {k.split("mm_projector.")[1]: v for k, v in weights.items() if "mm_projector" in k}
    print("mm_projector.bin:", {k: tuple(v.shape) for k, v in weights.items()})
    by_index = {"linear_1": "0", "linear_2": "2"}
    ok = len(stripped) == len(ours)
    for name, t in ours.items():
        layer, leaf = name.split(".")[-2], name.split(".")[-1]
        key = f"{by_index[layer]}.{leaf}" if "0.weight" in stripped else leaf
        ok &= key in stripped and torch.equal(stripped[key], t.float())
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
