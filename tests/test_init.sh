#!/usr/bin/env bash
# `llava init`: a composed folder (CLIP + LLaMA parts) is the LLaVA fixture
# itself; a random folder from a config runs; tokenizer files gain <image>;
# an existing model folder is not overwritten without --force.
set -u
llava=$1
src=$2
build=$3
tmp=$(mktemp -d /tmp/llava_init.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
check() { local what=$1; shift; if "$@" > "$tmp/c.txt" 2>&1; then echo "ok: $what"; else echo "FAIL: $what"; cat "$tmp/c.txt"; failures=$((failures + 1)); fi; }
parts=$src/tests/fixtures/tiny_parts

check "compose: init from CLIP + LLaMA + projector parts" \
  "$llava" init --vision "$parts/clip" --llm "$parts/llama" --projector "$parts/mm_projector.safetensors" \
  --image-token 150 --out "$tmp/composed"
check "the composed folder holds the fixture's projector and LLM bitwise" \
  "$build/tests/st_diff" "$tmp/composed/model.safetensors" "$src/tests/fixtures/tiny_llava15/model.safetensors" --skip vision_tower.
check "and runs: llava forward" "$llava" forward --model "$tmp/composed" \
  --batch "$src/tests/fixtures/tiny_llava15/batch.safetensors" --out "$tmp/f.safetensors" --stage 1
check "with the fixture's golden logits (transformers)" \
  "$build/tests/st_diff" "$tmp/f.safetensors" "$src/tests/fixtures/tiny_llava15/golden.safetensors" --only logits --tol 1e-4
check "random init from a config with a tokenizer" \
  "$llava" init --config "$src/assets/demo/config.json" --tokenizer "$src/assets/demo/tokenizer" --out "$tmp/random" --seed 3
check "the tokenizer folder gains processor files and keeps <image> at the model's id" \
  bash -c "test -f '$tmp/random/preprocessor_config.json' -a -f '$tmp/random/processor_config.json' && grep -q '\"<image>\"' '$tmp/random/tokenizer.json' && grep -q '\"585\"' '$tmp/random/tokenizer_config.json'"
"$llava" init --config "$src/assets/demo/config.json" --out "$tmp/random" > "$tmp/again.txt" 2>&1; rc=$?
check "an existing model folder is refused (exit 2)" bash -c "[ $rc -eq 2 ] && grep -q -- '--force' '$tmp/again.txt'"
check "--force overwrites it" "$llava" init --config "$src/assets/demo/config.json" --out "$tmp/random" --force
echo "$failures failures"
[ $failures -eq 0 ]
