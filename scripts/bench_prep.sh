#!/usr/bin/env bash
# Prep throughput: N generated COCO-like JPEGs (500x375, quality 85, noisy
# gradients so they compress like photos) prepped to 336 px with the v1
# template, in each image mode; then the loader's rate on each folder
# (micro-batches of 16, all of an epoch). Nothing is kept: images, model
# folder and shards live in a temporary folder.
# usage: scripts/bench_prep.sh PYTHON BUILD_DIR [N] [WORKERS]
#   PYTHON: a Python with Pillow and numpy (only to make the images)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
source "$src/scripts/bench_data.sh"
bench_args "$@"
bench_make_data "$python" "$src" "$tmp" "$n"
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
