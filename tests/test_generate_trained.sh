#!/usr/bin/env bash
# `llava generate` on a model folder written by `llava train`: a short stage-2
# run on the tiny fixture, then generation from its final folder with the
# KV-cache self-check (--verify: every step's logits against a full forward),
# deterministic, and different from the untrained model's (the trained weights
# are the ones used); then the same from a folder with a tokenizer, with
# text in and out.
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
# Text in, text out: a run from the tiny model that ships a tokenizer and a
# processor config; the final folder carries them, so --prompt/--image work.
T=$SRC/tests/fixtures/tiny_llava_text
"$LLAVA" train --set model="$T" --set data=synthetic:8 --set stage=2 --set max_steps=1 --set micro_batch=4 \
  --set lr=2e-3 --set log_every=100 --set output_dir="$tmp/text" >"$tmp/text.log" 2>&1
check "llava train from a folder with a tokenizer exits 0, the final folder keeps tokenizer and processor" \
  '[ $? -eq 0 ] && [ -s "$tmp/text/final/tokenizer.json" ] && [ -s "$tmp/text/final/preprocessor_config.json" ]' \
  || cat "$tmp/text.log"
"$LLAVA" generate --model "$tmp/text/final" --image "$T/example.png" --prompt "What is shown in this image?" \
  --max-new-tokens 12 --verify >"$tmp/t.out" 2>"$tmp/t.err"
check "generate --image --prompt on the trained folder: an answer, --verify ok" \
  '[ $? -eq 0 ] && [ -s "$tmp/t.out" ] && grep -q "(ok," "$tmp/t.err"' || cat "$tmp/t.err"
exit $fail
