#!/usr/bin/env bash
# `llava bench` beside PyTorch (transformers) on the same work in the same
# run: the same model folder, batch shape, stage, threads. The two alternate
# ROUNDS times (ours, theirs, ours, theirs, ...) so that a change in the
# machine's load hits both; each prints one JSON line per round. The summary
# gives the medians over the rounds: CPU seconds per step (all threads of the
# process: the figure a shared machine moves least), wall seconds per step,
# the process's peak RSS, and the ratios, with the load average before and
# after. Both sides run with OMP_WAIT_POLICY=passive (idle OpenMP threads
# sleep instead of spinning, which would count as CPU time on a busy machine).
#   bash scripts/bench_compare.sh PYTHON MODEL_DIR [BATCH TEXT STAGE THREADS STEPS ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
py=$1; model=$2; batch=${3:-8}; text=${4:-64}; stage=${5:-2}; threads=${6:-1}; steps=${7:-5}; rounds=${8:-1}
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=$threads
load_before=$(cut -d' ' -f1 /proc/loadavg)
llava=${LLAVA_BIN:-./build/llava}   # LLAVA_BIN=... benches another build (e.g. a baseline)
ours=(); theirs=()
for ((r = 0; r < rounds; r++)); do
  ours+=("$("$llava" bench --model "$model" --batch "$batch" --text "$text" --stage "$stage" \
            --threads "$threads" --steps "$steps")")
  echo "llava.c: ${ours[-1]}"
  theirs+=("$("$py" scripts/bench_pytorch.py "$model" --batch "$batch" --text "$text" --stage "$stage" \
              --threads "$threads" --steps "$steps" 2> /dev/null)")
  echo "pytorch: ${theirs[-1]}"
done
load_after=$(cut -d' ' -f1 /proc/loadavg)
"$py" - "$load_before" "$load_after" "${#ours[@]}" "${ours[@]}" "${theirs[@]}" <<'PY'
import json, statistics, sys
load0, load1, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
a = [json.loads(x) for x in sys.argv[4:4 + n]]
b = [json.loads(x) for x in sys.argv[4 + n:4 + 2 * n]]
med = lambda rows, k: statistics.median(r[k] for r in rows)
ca, cb = med(a, "cpu_s_per_step"), med(b, "cpu_s_per_step")
wa, wb = med(a, "s_per_step"), med(b, "s_per_step")
ra, rb = med(a, "peak_rss_mb"), med(b, "peak_rss_mb")
print(f"summary: seq {a[0]['seq']} stage {a[0]['stage']} batch {a[0]['batch']} rounds {n} load {load0}->{load1} | "
      f"CPU s/step llava.c {ca:.3f} pytorch {cb:.3f} speed-up {cb / ca:.2f}x | "
      f"wall s/step llava.c {wa:.3f} pytorch {wb:.3f} speed-up {wb / wa:.2f}x | "
      f"peak RSS MB llava.c {ra:.0f} pytorch {rb:.0f} ratio {ra / rb:.2f}")
PY
