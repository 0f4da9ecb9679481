#!/usr/bin/env bash
# A stage-2 output folder of `llava train` loads in transformers
# (LlavaForConditionalGeneration.from_pretrained) and gives the logits that
# `llava forward` gives on it.
#   bash scripts/check_hf_roundtrip.sh [PYTHON] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-python3}
build=${2:-build}
tmp=$(mktemp -d /tmp/llava_hf_roundtrip.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
m=tests/fixtures/tiny_llava15
"$build/llava" train --set model=$m --set data=synthetic:32 --set max_length=96 --set stage=2 \
  --set micro_batch=4 --set max_steps=4 --set lr=1e-3 --set output_dir="$tmp/run" --set log_every=100 > /dev/null
"$build/llava" forward --model "$tmp/run/final" --batch $m/batch.safetensors --out "$tmp/out.safetensors" --stage 0
"$py" scripts/check_hf_load.py "$tmp/run/final" $m/batch.safetensors "$tmp/out.safetensors"
