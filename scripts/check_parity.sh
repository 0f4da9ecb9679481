#!/usr/bin/env bash
# Parity of `llava forward` with transformers on a model that is NOT one of
# the committed fixtures (variant c of scripts/make_reference.py: other sizes,
# image 30 / patch 6, feature layer -3, MQA, bf16 weights in two shards,
# legacy tensor names), both stages, recompute on and off.
#   bash scripts/check_parity.sh [PYTHON] [BUILD_DIR]
# PYTHON needs torch, transformers, safetensors (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-python3}
build=${2:-build}
tmp=$(mktemp -d /tmp/llava_parity.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$py" scripts/make_reference.py --variant c --out "$tmp"
m=$tmp/tiny_llava_other
for stage in 1 2; do
  for rc in 0 1; do
    echo "== stage $stage, recompute $rc"
    "$build/llava" forward --model "$m" --batch "$m/batch.safetensors" --out "$tmp/out.safetensors" \
      --stage "$stage" --recompute "$rc"
    "$py" scripts/compare_outputs.py "$tmp/out.safetensors" "$m/golden.safetensors" --stage "$stage" | tail -1
  done
done
