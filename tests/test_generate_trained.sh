#!/usr/bin/env bash
# `llava generate` on a model folder written by `llava train`: a short stage-2
# run on the tiny fixture, then generation from its final folder with the
# KV-cache self-check (--verify: every step's logits against a full forward),
# deterministic, and different from the untrained model's (the trained weights
# are the ones used).
# usage: test_generate_trained.sh LLAVA SOURCE_DIR BUILD_DIR
set -u
LLAVA=$1 SRC=$2
GEN=$SRC/tests/fixtures/generation
tmp=$(mktemp -d /tmp/llava_gen_trained.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }

"$LLAVA" train --set model="$SRC/tests/fixtures/tiny_llava15" --set data=synthetic:16 --set stage=2 \
  --set max_steps=2 --set micro_batch=4 --set lr=2e-3 --set log_every=100 --set output_dir="$tmp/run" \
  >"$tmp/train.log" 2>&1
check "llava train (2 steps, stage 2) exits 0" '[ $? -eq 0 ] && [ -s "$tmp/run/final/config.json" ]' || cat "$tmp/train.log"

gen() { "$LLAVA" generate --model "$1" --ids "$(cat "$GEN/cli_prompt.txt")" --pixels "$GEN/image.safetensors" \
          --max-new-tokens 24 --eos -1 --verify; }
gen "$tmp/run/final" >"$tmp/a.out" 2>"$tmp/a.err"
check "generate on the trained folder exits 0 with --verify ok" '[ $? -eq 0 ] && grep -q "(ok," "$tmp/a.err"' \
  || cat "$tmp/a.err"
check "24 new tokens" '[ "$(grep -o "\"ids\": \[[^]]*\]" "$tmp/a.out" | tr "," "\n" | wc -l)" -eq 24 ]'
gen "$tmp/run/final" >"$tmp/b.out" 2>/dev/null
check "deterministic" 'cmp -s "$tmp/a.out" "$tmp/b.out"'
gen "$SRC/tests/fixtures/tiny_llava15" >"$tmp/base.out" 2>/dev/null
check "the trained weights are used (output differs from the untrained model's)" '! cmp -s "$tmp/a.out" "$tmp/base.out"'
exit $fail
