#!/usr/bin/env bash
# The CPU table of docs/performance.md: scripts/bench_compare.sh over the
# three bench shapes (assets/bench/small_llava.json, m32_llava.json,
# m113_llava.json; random weights written by `llava init` into WORK), stages 1
# and 2, sequence lengths T = 128 .. 2048 (batch 1: BOS + 64 image tokens +
# T - 65 text tokens). Appends one JSON object per cell to OUT.jsonl (a cell
# already there is skipped, so an interrupted run continues), then prints
# the markdown table. LLAVA_BASE=path/to/llava adds a baseline build's column.
# The table also gives each cell's matmul FLOPs and the time they take at
# PEAK_GFLOPS (default 140: OpenBLAS sgemm on large shapes, one core here).
#   bash scripts/bench_matrix.sh PYTHON OUT.jsonl [WORK] [THREADS]
# CELLS="small:128,512 m113:2048" narrows the run (model:T list); CELLS="" only prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$1; out=$2; work=${3:-/tmp/llava_bench_models}; threads=${4:-1}
cells=${CELLS-"small:128,512,2048 m32:128,512,2048 m113:128,512,2048"}
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
"$py" - "$out" "$work" "${PEAK_GFLOPS:-140}" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
work, peak = sys.argv[2], float(sys.argv[3])


def step_gflop(model, T, stage):
    """Matmul FLOPs of one training step (batch 1): what the CPU's FMA units
    must do whatever the framework. Forward 2 * params * rows per linear
    layer; backward input gradients as much again, weight gradients as much
    again for what trains; causal attention 2 T^2 HS per head forward (half of
    4 T^2 HS), 2.5x that backward; the frozen vision tower forward only."""
    c = json.load(open(f"{work}/{model}/config.json"))
    t, v = c["text_config"], c["vision_config"]
    C, I, L, V = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"], t["vocab_size"]
    NH = t["num_attention_heads"]
    NKV = t.get("num_key_value_heads", NH)
    HS = C // NH
    layer = C * (NH + 2 * NKV) * HS + NH * HS * C + 3 * C * I
    lin = 2.0 * T * (L * layer + C * V)
    att = L * NH * 2.0 * T * T * HS
    Dv, Iv, Lv = v["hidden_size"], v["intermediate_size"], v["num_hidden_layers"]
    NT = (v["image_size"] // v["patch_size"]) ** 2 + 1
    vis = 2.0 * NT * Lv * (4 * Dv * Dv + 2 * Dv * Iv) + Lv * 4.0 * NT * NT * Dv
    proj = 2.0 * (NT - 1) * (Dv * C + C * C)
    fwd = lin + att + vis + proj
    bwd = lin + 2.5 * att + 2 * proj + (lin if stage == 2 else 0.0)
    return (fwd + bwd) / 1e9


base = any("base" in r["result"] for r in rows)
head = ("| model | T | stage | load | GFLOP/step (floor s at %g GFLOP/s) | llava.c CPU s/step | PyTorch CPU s/step | "
        "speed-up (CPU) | speed-up (wall) | llava.c peak RSS MB | PyTorch peak RSS MB | RSS ratio |" % peak)
if base:
    head += " before: CPU s/step (speed-up), RSS MB (ratio) |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
for r in rows:
    x = r["result"]
    L, P = x["llava"], x["torch"]
    g = step_gflop(r["model"], r["T"], r["stage"])
    line = (f"| {r['model']} ({x['params'] / 1e6:.1f} M) | {r['T']} | {r['stage']} | "
            f"{x['load_before']:.0f}-{x['load_after']:.0f} | {g:.0f} ({g / peak:.2f}) | {L['cpu_s']:.3f} | "
            f"{P['cpu_s']:.3f} | {x['speedup_cpu']:.2f}x | {x['speedup_wall']:.2f}x | {L['rss_mb']:.0f} | "
            f"{P['rss_mb']:.0f} | {x['rss_ratio']:.2f} |")
    if base:
        B = x.get("base")
        line += (f" {B['cpu_s']:.3f} ({x['base_speedup_cpu']:.2f}x), {B['rss_mb']:.0f} ({x['base_rss_ratio']:.2f}) |"
                 if B else " |")
    print(line)
PY
