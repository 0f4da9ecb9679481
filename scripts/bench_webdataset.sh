#!/usr/bin/env bash
# Prep throughput from WebDataset tars vs from a folder of the same JPEGs:
# N generated COCO-like JPEGs (500x375, quality 85, noisy gradients, as
# scripts/bench_prep.sh) written both as an image folder + LLaVA JSON and as
# img2dataset-style tars of 100 samples (KEY.jpg, KEY.txt, KEY.json), prepped
# to 336 px with the plain template, pixels store; then the loader over a 1:1
# mixture of the two folders next to the loader on one of them. Nothing is
# kept: everything lives in a temporary folder.
# usage: scripts/bench_webdataset.sh PYTHON BUILD_DIR [N] [WORKERS]
#   PYTHON: a Python with Pillow and numpy (only to make the images)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
source "$src/scripts/bench_data.sh"
bench_args "$@"
bench_make_data "$python" "$src" "$tmp" "$n"
# The same JPEGs as img2dataset tars of 100 samples (KEY.jpg, KEY.txt, KEY.json).
mkdir -p "$tmp/tars"
"$python" - "$tmp" <<'PY'
import io, json, sys, tarfile
tmp = sys.argv[1]
items = json.load(open(f"{tmp}/data.json"))
def add(t, name, data):
    ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
tar = None
for i, it in enumerate(items):
    if i % 100 == 0:
        if tar: tar.close()
        tar = tarfile.open(f"{tmp}/tars/{i // 100:05d}.tar", "w", format=tarfile.GNU_FORMAT)
    key, cap = it["id"], it["conversations"][1]["value"]
    add(tar, key + ".jpg", open(f"{tmp}/images/{it['image']}", "rb").read())
    add(tar, key + ".txt", cap.encode())
    add(tar, key + ".json", json.dumps({"key": key, "caption": cap, "status": "success"}).encode())
tar.close()
PY
echo "images: $n JPEGs 500x375 ($(du -sh "$tmp/images" | cut -f1)), tars: $(ls "$tmp/tars" | wc -l) x 100 samples; $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
rate() {  # label, out dir, command...
  local label=$1 out=$2; shift 2
  local start end
  start=$(date +%s.%N); "$@" --out "$out" --quiet > "$tmp/log.txt"; end=$(date +%s.%N)
  local written; written=$(sed -n 's/.* items: \([0-9]*\) written.*/\1/p' "$tmp/log.txt" | head -1)
  awk -v n="$written" -v s="$start" -v e="$end" -v l="$label" 'BEGIN { printf "%-40s %d images in %.2f s = %.0f images/s\n", l, n, e - s, n / (e - s) }'
}
for w in 1 "$workers"; do
  rate "folder + JSON, $w worker(s)" "$tmp/json-$w" "$build/llava" prep --data "$tmp/data.json" --images "$tmp/images" \
    --model "$tmp/model" --template plain --workers "$w"
  rate "WebDataset tars, $w worker(s)" "$tmp/wds-$w" "$build/llava" prep --webdataset "$tmp/tars/*.tar" \
    --model "$tmp/model" --workers "$w"
done
printf 'loader, one folder, %d workers:      ' "$workers"
"$build/tests/loader_bench" "$tmp/json-1" 16 "$workers" $((n / 16))
printf 'loader, 1:1 mixture, %d workers each: ' "$workers"
"$build/tests/mixture_bench" "$tmp/json-1" "$tmp/wds-1" 16 "$workers" $((n / 16))
