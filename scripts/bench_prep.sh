#!/usr/bin/env bash
# Prep throughput: N generated COCO-like JPEGs (500x375, quality 85, noisy
# gradients so they compress like photos) prepped to 336 px with the v1
# template, in each image mode; then the loader's rate on each folder
# (micro-batches of 16, all of an epoch). Nothing is kept: images, model
# folder and shards live in a temporary folder.
# usage: scripts/bench_prep.sh PYTHON BUILD_DIR [N] [WORKERS]
#   PYTHON: a Python with Pillow and numpy (only to make the images)
set -euo pipefail
python=$1
build=$2
n=${3:-1000}
workers=${4:-$(nproc)}
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d /tmp/llava_bench_prep.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# A model folder at LLaVA-1.5's image size: CLIP 336 px / patch 14 (576
# image tokens); the tokenizer fixture; CLIP preprocessing defaults.
mkdir -p "$tmp/model" "$tmp/images"
sed 's/"vocab_size": 160/"vocab_size": 4008/; s/"image_token_index": 150/"image_token_index": 4004/;
     s/"image_size": 28/"image_size": 336/; s/"patch_size": 7/"patch_size": 14/;
     s/"image_seq_length": 16/"image_seq_length": 576/; s/"max_position_embeddings": 256/"max_position_embeddings": 2048/' \
  "$src/tests/fixtures/tiny_llava15/config.json" > "$tmp/model/config.json"
cp "$src/tests/fixtures/tokenizer/legacy/tokenizer.json" "$src/tests/fixtures/tokenizer/legacy/tokenizer_config.json" \
  "$tmp/model/"

"$python" - "$tmp" "$n" <<'EOF'
import json, sys
import numpy as np
from PIL import Image
tmp, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:375, 0:500]
items, size = [], 0
for i in range(n):
    base = np.stack([(xx * (i % 7 + 1) + yy * 3) % 256, (yy * (i % 5 + 2)) % 256, (xx + yy + 37 * i) % 256], -1)
    img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    path = f"{tmp}/images/{i:05d}.jpg"
    Image.fromarray(img).save(path, quality=85)
    items.append({"id": f"{i:05d}", "image": f"{i:05d}.jpg",
                  "conversations": [{"from": "human", "value": "<image>\nWhat is shown in this picture?"},
                                    {"from": "gpt", "value": f"A synthetic pattern number {i} with noise."}]})
json.dump(items, open(f"{tmp}/data.json", "w"))
EOF
echo "images: $n JPEGs 500x375, $(du -sh "$tmp/images" | cut -f1) on disk; workers: $workers; $(nproc) cores"

for mode in "square pixels" "pad pixels" "square encoded"; do
  set -- $mode
  out=$tmp/out-$1-$2
  start=$(date +%s.%N)
  "$build/llava" prep --data "$tmp/data.json" --images "$tmp/images" --model "$tmp/model" --template vicuna_v1 \
    --aspect "$1" --store "$2" --out "$out" --workers "$workers" --quiet > "$tmp/log.txt"
  end=$(date +%s.%N)
  written=$(sed -n 's/.* items: \([0-9]*\) written.*/\1/p' "$tmp/log.txt")
  awk -v n="$written" -v s="$start" -v e="$end" -v a="$1" -v st="$2" -v sz="$(du -sm "$out" | cut -f1)" \
    'BEGIN { printf "aspect %-6s store %-7s: %d images in %.2f s = %.0f images/s (shards %d MB)\n", a, st, n, e - s, n / (e - s), sz }'
  printf '  loader, %d workers: ' "$workers"
  "$build/tests/loader_bench" "$out" 16 "$workers" $((written / 16))
done
