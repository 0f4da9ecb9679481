#!/usr/bin/env bash
# The GPU checks of the CUDA backend, in one go (docs/gpu-status.md):
#   1. build for the GPU present (or use a prebuilt build-gpu/, see pack.sh)
#   2. test_gpu_ops: every op against the CPU op (tolerances, poisoned outputs)
#   3. test_model.sh: `llava forward --device cuda` against the golden files
#   4. the per-kernel timing table and the flash-attention benchmark
#   5. a short training run on the GPU beside the same run on the CPU
#   6. `llava bench` training steps (a small model and a 1B LLaVA-1.5 shape)
# About 6 minutes on one H100. Without a GPU it says so and exits 0.
#   bash tests/gpu/run.sh 2>&1 | tee $OUT/gpu.log
set -uo pipefail
cd "$(dirname "$0")/../.."
src=$PWD
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "tests/gpu/run.sh: skipped: no NVIDIA GPU on this machine"
  exit 0
fi
echo "== $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname)"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm --format=csv
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '. ')
export PATH="/usr/local/cuda/bin:$PATH"
start=$(date +%s)

build=${LLAVA_GPU_BUILD:-$src/build-gpu}
if [ -f "$build/.prebuilt" ]; then
  echo "== using the prebuilt binaries in $build ($(cat "$build/.prebuilt"))"
  export LD_LIBRARY_PATH="$build/lib:${LD_LIBRARY_PATH:-}"
else
  echo "== building for sm_$cap in $build"
  mkdir -p "$build"
  if ! cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$cap" \
      -DLLAVA_WITH_MPI=OFF >"$build/configure.log" 2>&1; then
    tail -20 "$build/configure.log"
    echo "tests/gpu/run.sh: configuring failed (missing libraries?). Build on a machine that has them with"
    echo "  bash tests/gpu/pack.sh   and carry build-gpu/ (docs/gpu-status.md)."
    exit 1
  fi
  if ! cmake --build "$build" -j "$(nproc)" --target llava test_gpu_ops compare_golden >"$build/build.log" 2>&1; then
    tail -40 "$build/build.log"
    echo "tests/gpu/run.sh: the build failed"
    exit 1
  fi
  echo "   built in $(( $(date +%s) - start )) s"
fi

status=0
echo
echo "== 1/5 op checks"
timeout 240 "$build/test_gpu_ops" --checks-only || status=1
echo
echo "== 2/5 model against the golden files"
timeout 120 bash "$src/tests/gpu/test_model.sh" "$build/llava" "$src" "$build" || status=1
echo
echo "== 3/5 timings"
timeout 240 "$build/test_gpu_ops" --bench-only || status=1
echo
echo "== 4/5 a short training run: the same 20 steps on cuda and on cpu"
tmp=$(mktemp -d /tmp/llava_gpu_train.XXXXXX)
for dev in cpu cuda; do
  timeout 120 "$build/llava" train --set model="$src/tests/fixtures/tiny_llava15" --set data=synthetic:80 \
    --set device=$dev --set max_steps=20 --set micro_batch=4 --set lr=1e-3 --set max_length=96 \
    --set output_dir="$tmp/$dev" --set log_every=5 || status=1
done
last_loss() { tail -1 "$1/metrics.jsonl" | grep -o '"loss": [0-9.eE+-]*' | cut -d' ' -f2; }
lc=$(last_loss "$tmp/cpu"); lg=$(last_loss "$tmp/cuda")
if awk "BEGIN {d = $lg - $lc; if (d < 0) d = -d; exit !(d < 0.05 * $lc)}"; then
  echo "   step-20 loss: cuda $lg, cpu $lc: ok (within 5%)"
else
  echo "   FAIL: step-20 loss: cuda $lg, cpu $lc (more than 5% apart)"; status=1
fi
rm -rf "$tmp"
echo
echo "== 5/5 llava bench (training steps, bf16)"
timeout 120 "$build/llava" bench --device cuda --config "$src/assets/bench/small_llava.json" --batch 16 --text 448 \
  --stage 2 --steps 10 || status=1
for stage in 1 2; do
  timeout 180 "$build/llava" bench --device cuda --config "$src/assets/bench/llava_1b.json" --batch 8 --text 448 \
    --stage $stage --recompute 1 --steps 5 || status=1
done
echo
echo "== total $(( $(date +%s) - start )) s; $( [ $status -eq 0 ] && echo PASSED || echo FAILED )"
exit $status
