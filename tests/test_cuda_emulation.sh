#!/usr/bin/env bash
# The CUDA backend's kernels, emulated on the CPU (tests/gpu/emu): every op
# against the CPU op, then the whole model against the golden files, as
# tests/gpu/test_ops.c and tests/gpu/test_model.sh do on a real GPU.
# Skipped when the build has no CUDA toolkit (nothing to emulate).
set -euo pipefail
src=$2 build=$3
if [ ! -x "$build/test_gpu_emu" ] || [ ! -x "$build/llava_emu" ]; then
  echo "test_cuda_emulation: skipped: this build has no CUDA backend"
  exit 0
fi
"$build/test_gpu_emu"
bash "$src/tests/gpu/test_model.sh" "$build/llava_emu" "$src" "$build"
