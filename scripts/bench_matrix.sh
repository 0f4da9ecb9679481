#!/usr/bin/env bash
# The CPU table of docs/performance.md: scripts/bench_compare.sh over the
# three bench shapes (assets/bench/small_llava.json, m32_llava.json,
# m113_llava.json; random weights written by `llava init` into WORK), stages 1
# and 2, sequence lengths T = 128 .. 2048 (batch 1: BOS + 64 image tokens +
# T - 65 text tokens). Appends one JSON object per cell to OUT.jsonl (a cell
# already there is skipped, so an interrupted run continues), then prints
# the markdown table. LLAVA_BASE=path/to/llava adds a baseline build's column.
#   bash scripts/bench_matrix.sh PYTHON OUT.jsonl [WORK] [THREADS]
# CELLS="small:128,512 m113:2048" narrows the run (model:T list).
set -euo pipefail
cd "$(dirname "$0")/.."
py=$1; out=$2; work=${3:-/tmp/llava_bench_models}; threads=${4:-1}
cells=${CELLS:-"small:128,512,2048 m32:128,512,2048 m113:128,512,2048"}
mkdir -p "$work"
touch "$out"
for cell in $cells; do
  name=${cell%%:*}; lens=${cell#*:}
  dir=$work/$name
  if [[ ! -f $dir/model.safetensors ]]; then
    ./build/llava init --config "assets/bench/${name}_llava.json" --out "$dir" > /dev/null
  fi
  for T in ${lens//,/ }; do
    for stage in 1 2; do
      key="\"model\": \"$name\", \"T\": $T, \"stage\": $stage,"
      if grep -qF "$key" "$out"; then continue; fi
      # long steps: one timed step, one round; short ones: three steps, two rounds
      if (( T >= 1024 )); then steps=1; rounds=1; elif (( T >= 512 )); then steps=2; rounds=1; else steps=3; rounds=2; fi
      res=$(bash scripts/bench_compare.sh "$py" "$dir" 1 $((T - 65)) "$stage" "$threads" "$steps" "$rounds" | tail -1)
      echo "{$key \"threads\": $threads, \"steps\": $steps, \"result\": $res}" >> "$out"
      echo "$name T=$T stage $stage: $res" >&2
    done
  done
done
"$py" - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
base = any("base" in r["result"] for r in rows)
head = "| model | T | stage | load | llava.c CPU s/step | PyTorch CPU s/step | speed-up (CPU) | speed-up (wall) | llava.c peak RSS MB | PyTorch peak RSS MB | RSS ratio |"
if base:
    head += " before: CPU s/step (speed-up), RSS MB (ratio) |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
for r in rows:
    x = r["result"]
    L, P = x["llava"], x["torch"]
    line = (f"| {r['model']} ({x['params'] / 1e6:.1f} M) | {r['T']} | {r['stage']} | "
            f"{x['load_before']:.0f}-{x['load_after']:.0f} | {L['cpu_s']:.3f} | {P['cpu_s']:.3f} | "
            f"{x['speedup_cpu']:.2f}x | {x['speedup_wall']:.2f}x | {L['rss_mb']:.0f} | {P['rss_mb']:.0f} | "
            f"{x['rss_ratio']:.2f} |")
    if base:
        B = x.get("base")
        line += (f" {B['cpu_s']:.3f} ({x['base_speedup_cpu']:.2f}x), {B['rss_mb']:.0f} ({x['base_rss_ratio']:.2f}) |"
                 if B else " |")
    print(line)
PY
