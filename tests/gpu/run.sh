#!/usr/bin/env bash
# The GPU checks of the CUDA backend, in one go (docs/gpu-status.md):
#   1. build for the GPU present (or use a prebuilt build-gpu/, see pack.sh)
#   2. test_gpu_ops: every op against the CPU op (tolerances, poisoned outputs)
#   3. test_model.sh: `llava forward --device cuda` against the golden files
#   4. the per-kernel timing table and the flash-attention benchmark
# About 5 minutes on one H100. Without a GPU it says so and exits 0.
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
echo "== 1/3 op checks"
timeout 240 "$build/test_gpu_ops" --checks-only || status=1
echo
echo "== 2/3 model against the golden files"
timeout 120 bash "$src/tests/gpu/test_model.sh" "$build/llava" "$src" "$build" || status=1
echo
echo "== 3/3 timings"
timeout 240 "$build/test_gpu_ops" --bench-only || status=1
echo
echo "== total $(( $(date +%s) - start )) s; $( [ $status -eq 0 ] && echo PASSED || echo FAILED )"
exit $status
