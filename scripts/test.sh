#!/usr/bin/env bash
# The test command of README.md (and what .ci/run calls): installs missing
# distribution packages, builds from scratch in build-test/ (CUDA sources
# included wherever nvcc exists) and runs the whole ctest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
rm -rf build-test
# nvcc is often installed outside PATH
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Release
cmake --build build-test -j "$jobs"
cd build-test
ctest --output-on-failure -j "$jobs" "$@"
