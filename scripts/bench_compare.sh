#!/usr/bin/env bash
# `llava bench` beside PyTorch (transformers) on the same work in the same
# run: the same model folder, batch shape, stage, threads. The runs alternate
# ROUNDS times (ours, theirs, ours, theirs, ...) so that a change in the
# machine's load hits both; each prints one JSON line per round. With
# LLAVA_BASE=path/to/another/llava, that build runs in each round too (a
# before/after comparison in the same run). The summary gives the medians over
# the rounds: CPU seconds per step (all threads of the process: the figure a
# shared machine moves least), wall seconds per step, the process's peak RSS,
# and the ratios, with the load average before and after. Every side runs
# with OMP_WAIT_POLICY=passive (idle OpenMP threads sleep instead of spinning,
# which would count as CPU time on a busy machine).
#   bash scripts/bench_compare.sh PYTHON MODEL_DIR [BATCH TEXT STAGE THREADS STEPS ROUNDS]
# The last line is one JSON object with those figures (scripts/bench_matrix.sh reads it).
set -euo pipefail
cd "$(dirname "$0")/.."
py=$1; model=$2; batch=${3:-8}; text=${4:-64}; stage=${5:-2}; threads=${6:-1}; steps=${7:-5}; rounds=${8:-1}
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=$threads
llava=${LLAVA_BIN:-./build/llava}   # LLAVA_BIN=... benches another build as "llava.c"
base=${LLAVA_BASE:-}
bench_args=(bench --model "$model" --batch "$batch" --text "$text" --stage "$stage" --threads "$threads" --steps "$steps")
load_before=$(cut -d' ' -f1 /proc/loadavg)
ours=(); theirs=(); based=()
for ((r = 0; r < rounds; r++)); do
  ours+=("$("$llava" "${bench_args[@]}")")
  echo "llava.c: ${ours[-1]}"
  if [[ -n $base ]]; then
    based+=("$("$base" "${bench_args[@]}")")
    echo "base:    ${based[-1]}"
  fi
  theirs+=("$("$py" scripts/bench_pytorch.py "$model" --batch "$batch" --text "$text" --stage "$stage" \
              --threads "$threads" --steps "$steps" 2> /dev/null)")
  echo "pytorch: ${theirs[-1]}"
done
load_after=$(cut -d' ' -f1 /proc/loadavg)
"$py" - "$load_before" "$load_after" "$rounds" "${#based[@]}" "${ours[@]}" "${theirs[@]}" "${based[@]}" <<'PY'
import json, statistics, sys
load0, load1, n, nb = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = [json.loads(x) for x in sys.argv[5:]]
a, b, c = rows[:n], rows[n:2 * n], rows[2 * n:2 * n + nb]
med = lambda rs, k: statistics.median(r[k] for r in rs)
out = {"seq": a[0]["seq"], "stage": a[0]["stage"], "batch": a[0]["batch"], "params": a[0]["params"],
       "rounds": n, "load_before": float(load0), "load_after": float(load1)}
for tag, rs in (("llava", a), ("torch", b), ("base", c)):
    if rs:
        out[tag] = {"cpu_s": med(rs, "cpu_s_per_step"), "wall_s": med(rs, "s_per_step"),
                    "rss_mb": med(rs, "peak_rss_mb")}
L, P = out["llava"], out["torch"]
out["speedup_cpu"] = P["cpu_s"] / L["cpu_s"]
out["speedup_wall"] = P["wall_s"] / L["wall_s"]
out["rss_ratio"] = L["rss_mb"] / P["rss_mb"]
line = (f"summary: seq {out['seq']} stage {out['stage']} batch {out['batch']} rounds {n} load {load0}->{load1} | "
        f"CPU s/step llava.c {L['cpu_s']:.3f} pytorch {P['cpu_s']:.3f} speed-up {out['speedup_cpu']:.2f}x | "
        f"wall s/step llava.c {L['wall_s']:.3f} pytorch {P['wall_s']:.3f} speed-up {out['speedup_wall']:.2f}x | "
        f"peak RSS MB llava.c {L['rss_mb']:.0f} pytorch {P['rss_mb']:.0f} ratio {out['rss_ratio']:.2f}")
if c:
    B = out["base"]
    out["base_speedup_cpu"] = P["cpu_s"] / B["cpu_s"]
    out["base_rss_ratio"] = B["rss_mb"] / P["rss_mb"]
    line += (f" | base CPU s/step {B['cpu_s']:.3f} ({out['base_speedup_cpu']:.2f}x), "
             f"RSS {B['rss_mb']:.0f} MB ({out['base_rss_ratio']:.2f})")
print(line)
print(json.dumps(out))
PY
