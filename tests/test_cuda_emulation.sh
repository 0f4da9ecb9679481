#!/usr/bin/env bash
# The CUDA backend's kernels, emulated on the CPU (tests/gpu/emu): every op
# against the CPU op, the whole model against the golden files (as
# tests/gpu/test_ops.c and tests/gpu/test_model.sh do on a real GPU), and a
# short `llava train --set device=cuda`: losses follow the CPU run's, and a
# second run (with a tiny upload staging ring) gives bitwise the same weights;
# a LoRA run's losses follow the CPU run's too, and with selective recompute
# it gives bitwise the same adapter.
# Skipped when the build has no CUDA toolkit (nothing to emulate).
set -euo pipefail
src=$2 build=$3
if [ ! -x "$build/test_gpu_emu" ] || [ ! -x "$build/llava_emu" ]; then
  echo "test_cuda_emulation: skipped: this build has no CUDA backend"
  exit 0
fi
# A 64 KiB upload staging ring (the backend's default is 64 MiB) wraps on
# nearly every upload: the emulator defers copies out of pinned memory, so a
# ring region rewritten before its copy landed would corrupt inputs here.
LLAVA_CUDA_STAGING_KB=64 "$build/test_gpu_emu"
bash "$src/tests/gpu/test_model.sh" "$build/llava_emu" "$src" "$build"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
train() {
  "$build/llava_emu" train --set "model=$src/tests/fixtures/tiny_llava15" --set data=synthetic:16 \
    --set max_length=64 --set lr=2e-3 --set warmup_ratio=0.1 --set log_every=100 --set seed=3 --set stage=2 \
    --set micro_batch=2 --set max_steps=3 --set device="$1" --set output_dir="$tmp/$2" "${@:3}" >"$tmp/$2.log" 2>&1 ||
    { cat "$tmp/$2.log"; echo "FAIL: llava train on $1"; exit 1; }
  grep -o '"loss": [0-9.eE+-]*' "$tmp/$2/metrics.jsonl" | cut -d' ' -f2
}
train cpu cpu >"$tmp/cpu.loss"
train cuda cuda1 >"$tmp/cuda1.loss"
# bash exports an assignment before a function call to what the function runs.
LLAVA_CUDA_STAGING_KB=64 train cuda cuda2 >"$tmp/cuda2.loss"  # must not change a bit
echo "train losses (cpu | emulated cuda):"
paste "$tmp/cpu.loss" "$tmp/cuda1.loss"
paste "$tmp/cpu.loss" "$tmp/cuda1.loss" | awk '{ d = ($1 - $2) / $1; if (d < 0) d = -d; if (d > 1e-2 || NF != 2) bad = 1 }
  END { if (bad || NR != 3) { print "FAIL: cuda losses differ from cpu by more than 1e-2"; exit 1 } }'
"$build/tests/st_diff" "$tmp/cuda1/final/model.safetensors" "$tmp/cuda2/final/model.safetensors" ||
  { echo "FAIL: two cuda training runs differ"; exit 1; }
# LoRA (adapters, dropout 0.1, the projector in full) on the emulated CUDA ops follows the CPU run too.
lora=(--set lora_r=4 --set lora_alpha=8 --set lora_dropout=0.1)
train cpu lora_cpu "${lora[@]}" >"$tmp/lora_cpu.loss"
train cuda lora_cuda "${lora[@]}" >"$tmp/lora_cuda.loss"
echo "LoRA train losses (cpu | emulated cuda):"
paste "$tmp/lora_cpu.loss" "$tmp/lora_cuda.loss"
paste "$tmp/lora_cpu.loss" "$tmp/lora_cuda.loss" | awk '{ d = ($1 - $2) / $1; if (d < 0) d = -d; if (d > 1e-2 || NF != 2) bad = 1 }
  END { if (bad || NR != 3) { print "FAIL: LoRA cuda losses differ from cpu by more than 1e-2"; exit 1 } }'
# LoRA with selective recompute (the adapters' u kept, their inputs recomputed,
# dropout masks redrawn from the seed): bitwise the same adapter.
train cuda lora_sel "${lora[@]}" --set selective_recompute=true >/dev/null
"$build/tests/st_diff" "$tmp/lora_cuda/final/adapter_model.safetensors" "$tmp/lora_sel/final/adapter_model.safetensors" ||
  { echo "FAIL: LoRA with selective recompute differs from LoRA without"; exit 1; }
echo "test_cuda_emulation: passed"
