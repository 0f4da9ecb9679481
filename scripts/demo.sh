#!/usr/bin/env bash
# README's first command: installs what is missing, builds, and runs the
# embedded default job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
# The embedded default: synthetic pictures, a tiny LLaVA trained in both
# stages on the CPU, held-out accuracy vs chance and vs a blank picture.
./build/llava demo --out runs/demo
