#!/usr/bin/env bash
# `llava bench` beside PyTorch (transformers) on the same work in the same
# run: the same model folder, batch shape, stage, threads; prints both JSON
# lines and the speed ratio (PyTorch seconds per step / ours).
#   bash scripts/bench_compare.sh PYTHON MODEL_DIR [BATCH TEXT STAGE THREADS STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
py=$1; model=$2; batch=${3:-8}; text=${4:-64}; stage=${5:-2}; threads=${6:-1}; steps=${7:-5}
ours=$(OMP_NUM_THREADS=$threads ./build/llava bench --model "$model" --batch "$batch" --text "$text" --stage "$stage" \
       --threads "$threads" --steps "$steps")
theirs=$("$py" scripts/bench_pytorch.py "$model" --batch "$batch" --text "$text" --stage "$stage" \
         --threads "$threads" --steps "$steps" 2> /dev/null)
echo "llava.c: $ours"
echo "pytorch: $theirs"
"$py" - "$ours" "$theirs" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"speed-up (PyTorch s/step / llava.c s/step): mean {b['s_per_step'] / a['s_per_step']:.2f}x, "
      f"best {b['best_s_per_step'] / a['best_s_per_step']:.2f}x")
PY
