#!/usr/bin/env bash
# `llava forward --device cuda` on the golden fixtures against transformers'
# fp32 outputs, at bf16 tolerances (logits 2e-2, loss 1e-2, gradients 5e-2,
# norm-wise), for stage 2 (also with the LM head on labeled rows only, as
# training runs it) and stage 1; gradient checkpointing, full or selective,
# must not change a single bit (the ops are deterministic); and `llava generate
# --verify` (KV-cache steps against the full forward).
#   bash tests/gpu/test_model.sh LLAVA_BINARY SOURCE_DIR BUILD_DIR
# BUILD_DIR holds compare_golden. Exits 0 when skipped (no usable GPU).
set -euo pipefail
llava=$1 src=$2 build=$3
compare=$build/compare_golden
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
for model in tiny_llava15 tiny_llava_v1 tiny_siglip_qwen2 tiny_clip_llama3; do
  dir=$src/tests/fixtures/$model
  set +e
  "$llava" forward --model "$dir" --batch "$dir/batch.safetensors" --out "$tmp/s2.safetensors" \
    --stage 2 --device cuda >"$tmp/log" 2>&1
  rc=$?
  set -e
  if [ $rc -ne 0 ]; then
    if grep -q "no GPU found\|no usable CUDA device" "$tmp/log"; then
      echo "test_model: skipped: $(cat "$tmp/log")"
      exit 0
    fi
    cat "$tmp/log"
    echo "test_model: $model: llava forward --device cuda failed ($rc)"
    fail=1
    continue
  fi
  echo "== $model, stage 2: $(cat "$tmp/log")"
  "$compare" "$tmp/s2.safetensors" "$dir/golden.safetensors" 2e-2 1e-2 5e-2 || fail=1
  "$llava" forward --model "$dir" --batch "$dir/batch.safetensors" --out "$tmp/s2r.safetensors" \
    --stage 2 --recompute 1 --device cuda >/dev/null
  "$llava" forward --model "$dir" --batch "$dir/batch.safetensors" --out "$tmp/s2s.safetensors" \
    --stage 2 --recompute 2 --device cuda >/dev/null
  for mode in 1 2; do
    out=$tmp/s2r.safetensors
    [ $mode = 2 ] && out=$tmp/s2s.safetensors
    if cmp -s "$tmp/s2.safetensors" "$out"; then
      echo "  --recompute $mode ($([ $mode = 1 ] && echo full || echo selective)): bitwise identical"
    else
      echo "FAIL: $model: --recompute $mode changed the outputs (must be bitwise identical)"
      fail=1
    fi
  done
  # Training's mode: the LM head and the loss only on the labeled rows.
  echo "== $model, stage 2, --labeled-only 1 (the head on labeled rows, as llava train runs it)"
  "$llava" forward --model "$dir" --batch "$dir/batch.safetensors" --out "$tmp/s2l.safetensors" \
    --stage 2 --labeled-only 1 --device cuda >/dev/null
  "$compare" "$tmp/s2l.safetensors" "$dir/golden.safetensors" 2e-2 1e-2 5e-2 || fail=1
  echo "== $model, stage 1"
  "$llava" forward --model "$dir" --batch "$dir/batch.safetensors" --out "$tmp/s1.safetensors" \
    --stage 1 --device cuda >/dev/null
  "$compare" "$tmp/s1.safetensors" "$dir/golden.safetensors" 2e-2 1e-2 5e-2 || fail=1
done
# Generation: KV-cache ops (kv_cache_write, attention_cached) against the full
# forward at every step (--verify; bf16 tolerance 3e-2, set by llava generate).
gen=$src/tests/fixtures/generation
if "$llava" generate --model "$src/tests/fixtures/tiny_llava15" --ids "$(cat "$gen/cli_prompt.txt")" \
    --pixels "$gen/image.safetensors" --max-new-tokens 12 --eos -1 --verify --device cuda \
    >"$tmp/gen.out" 2>"$tmp/gen.err" && grep -q "(ok," "$tmp/gen.err"; then
  echo "== generate --verify: $(grep verify "$tmp/gen.err")"
else
  cat "$tmp/gen.err"
  echo "FAIL: llava generate --device cuda --verify"
  fail=1
fi
if [ $fail -ne 0 ]; then
  echo "test_model: FAILED"
  exit 1
fi
echo "test_model: passed"
