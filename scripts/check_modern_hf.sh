#!/usr/bin/env bash
# A SigLIP + Qwen2 model composed by `llava init`, trained a few steps in both
# stages, loads in transformers (LlavaForConditionalGeneration.from_pretrained,
# no missing / unexpected weights) and gives the logits `llava forward` gives.
#   bash scripts/check_modern_hf.sh [PYTHON] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-python3}
build=${2:-build}
tmp=$(mktemp -d /tmp/llava_modern_hf.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
parts=tests/fixtures/tiny_parts_modern
"$build/llava" init --vision $parts/siglip --llm $parts/qwen2 --out "$tmp/m" > /dev/null
common=(--set data=synthetic:32 --set max_length=64 --set micro_batch=4 --set max_steps=3 --set lr=1e-3
        --set log_every=100)
"$build/llava" train --set model="$tmp/m" --set stage=1 --set output_dir="$tmp/o1" "${common[@]}" > /dev/null
"$build/llava" train --set model="$tmp/o1/final" --set stage=2 --set output_dir="$tmp/o2" "${common[@]}" > /dev/null
"$py" - "$tmp/o2/final" "$tmp/batch.safetensors" <<'PY'
import json, sys, torch
from safetensors.torch import save_file
folder, out = sys.argv[1:3]
img = json.load(open(folder + "/config.json"))["image_token_index"]
g = torch.Generator().manual_seed(0)
row0 = [5, 9, 33] + [img] * 16 + torch.randint(3, 2000, (20,), generator=g).tolist()
row1 = [7] + [img] * 16 + torch.randint(3, 2000, (10,), generator=g).tolist()
T, pad = len(row0), len(row0) - len(row1)
ids = torch.tensor([row0, row1 + [0] * pad])
mask = torch.tensor([[1] * T, [1] * len(row1) + [0] * pad])
labels = ids.clone()
labels[:, :19] = -100
labels[1, len(row1):] = -100
save_file({"input_ids": ids, "attention_mask": mask, "labels": labels,
           "pixel_values": torch.randn(2, 3, 28, 28, generator=g)}, out)
PY
"$build/llava" forward --model "$tmp/o2/final" --batch "$tmp/batch.safetensors" --out "$tmp/out.safetensors" --stage 0
"$py" scripts/check_hf_load.py "$tmp/o2/final" "$tmp/batch.safetensors" "$tmp/out.safetensors"
