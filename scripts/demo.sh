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
# Until the trainer's demo lands: the parity check on the committed fixture
# (one batch with images through the model, forward and backward).
m=tests/fixtures/tiny_llava15
./build/llava forward --model "$m" --batch "$m/batch.safetensors" --out /tmp/llava_demo_forward.safetensors --stage 2
