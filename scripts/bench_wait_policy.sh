#!/usr/bin/env bash
# OpenMP wait policy x thread count x extra load, on one training step of a
# model folder (`llava bench`). Prints one line per run: policy, threads,
# busy processes added, mean and best seconds per step.
#   bash scripts/bench_wait_policy.sh MODEL_DIR [BUSY] [BATCH TEXT STEPS] [LLAVA]
# Policies: "runtime default" (what libgomp does when OMP_WAIT_POLICY is unset:
# spin 300000 rounds, then sleep; GOMP_SPINCOUNT=300000 reproduces it now that
# llava sets passive by default), "active" (spin without end) and "passive"
# (sleep at once: llava's default). BUSY busy-loop processes (default: one
# per core) are started by this script for the loaded runs and stopped by
# their process ids at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1; busy=${2:-$(nproc)}; batch=${3:-4}; text=${4:-64}; steps=${5:-5}; llava=${6:-./build/llava}
cores=$(nproc)
pids=()
stop_load() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; pids=(); }
trap stop_load EXIT
run() {  # policy-name threads
  local env_args=()
  case $1 in
    default) env_args=(GOMP_SPINCOUNT=300000) ;;
    active) env_args=(OMP_WAIT_POLICY=active) ;;
    passive) env_args=(OMP_WAIT_POLICY=passive) ;;
  esac
  env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "${env_args[@]}" "$llava" bench --model "$model" --batch "$batch" \
    --text "$text" --threads "$2" --steps "$steps" |
    sed -n 's/.*"s_per_step": \([0-9.e-]*\).*"best_s_per_step": \([0-9.e-]*\).*/\1 \2/p'
}
echo "cores $cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-8s %7s %5s %10s %10s\n" policy threads busy mean_s best_s
for load in 0 "$busy"; do
  stop_load
  for ((i = 0; i < load; i++)); do (while :; do :; done) & pids+=($!); done
  for policy in default active passive; do
    for threads in 1 "$cores"; do
      read -r mean best < <(run "$policy" "$threads")
      printf "%-8s %7s %5s %10s %10s\n" "$policy" "$threads" "$load" "$mean" "$best"
    done
  done
done
