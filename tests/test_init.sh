#!/usr/bin/env bash
# `llava init`: a composed folder (CLIP + LLaMA parts) is the LLaVA fixture
# itself; a random folder from a config runs; tokenizer files gain <image>;
# an existing model folder is not overwritten without --force; a
# Vicuna-v1.5-style LLM gets <image>/<pad> numbered as transformers' llava-hf
# conversion does; a training run composed from vision + llm writes final/
# and checkpoints with the same non-weight files as `llava init`.
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

# --- a Vicuna-v1.5-style LLM (config pad_token_id 0 = <unk>, tokenizer pad_token null):
# <pad> is numbered after the vocabulary and <image> as transformers' llava-hf
# conversion does (tests/fixtures/vicuna_style, scripts/make_vicuna_style_fixture.py).
vic=$src/tests/fixtures/vicuna_style
check "compose with a Vicuna-style LLM" "$llava" init --vision "$parts/clip" --llm "$vic/llm" --out "$tmp/vic"
check "config.json: pad_token_id 4005 (top level and text_config), image_token_index 4004" \
  bash -c "[ \$(grep -c '\"pad_token_id\":[[:space:]]*4005' '$tmp/vic/config.json') -eq 2 ] && grep -q '\"image_token_index\":[[:space:]]*4004' '$tmp/vic/config.json'"
check "the llava-hf conversion gives the same ids (expected.json)" \
  bash -c "grep -q '\"image_token_id\": 4004' '$vic/expected.json' && grep -q '\"pad_token_id\": 4005' '$vic/expected.json'"
check "tokenizer_config.json: pad_token <pad>; tokenizer.json: <pad> = 4005, nothing else at id 0" \
  bash -c "grep -q '\"pad_token\":[[:space:]]*\"<pad>\"' '$tmp/vic/tokenizer_config.json' && grep -q '\"4005\"' '$tmp/vic/tokenizer_config.json' && ! grep -q '\"id\":[[:space:]]*0,[[:space:]]*\"content\":[[:space:]]*\"<pad>\"' '$tmp/vic/tokenizer.json'"
for i in 0 1 2 3; do
  check "our tokenizer on the written files = HF's (string $i)" \
    bash -c "'$llava' tokenize --tokenizer '$tmp/vic' < '$vic/strings/$i.txt' | cmp - '$vic/strings/$i.ids'"
done
# --config with pad_token_id 0 and a tokenizer without a pad token: the
# token at id 0 (<unk>) becomes the pad token; no <pad> collides with it.
sed 's/"pad_token_id":[[:space:]]*4005/"pad_token_id": 0/' "$tmp/vic/config.json" > "$tmp/pad0.json"
check "init --config (pad_token_id 0) --tokenizer (no pad token)" \
  "$llava" init --config "$tmp/pad0.json" --tokenizer "$vic/llm" --out "$tmp/pad0"
check "pad_token is <unk> (id 0, as config.json says), no <pad> added" \
  bash -c "grep -q '\"pad_token\":[[:space:]]*\"<unk>\"' '$tmp/pad0/tokenizer_config.json' && ! grep -q '<pad>' '$tmp/pad0/tokenizer.json'"

# --- training a model composed from vision + llm: final/ (and checkpoints) hold what
# `llava init` writes, besides the trained weights (issue 9, item 11).
check "train stage 2 composed from vision + llm" "$llava" train --set vision="$parts/clip" --set llm="$vic/llm" \
  --set stage=2 --set data=synthetic:8 --set max_steps=2 --set micro_batch=4 --set max_length=64 --set save_every=1 \
  --set output_dir="$tmp/run"
for f in config.json tokenizer.json tokenizer_config.json preprocessor_config.json processor_config.json; do
  check "final/$f = llava init's" cmp "$tmp/run/final/$f" "$tmp/vic/$f"
  check "checkpoint-00000001/model/$f = llava init's" cmp "$tmp/run/checkpoint-00000001/model/$f" "$tmp/vic/$f"
done
check "final/: <image> is one id (4004) to our tokenizer" \
  bash -c "printf '<image>' | '$llava' tokenize --tokenizer '$tmp/run/final' | grep -qx '\[1, 4004\]'"
check "final/ holds the trained weights" \
  "$build/tests/st_diff" "$tmp/run/final/model.safetensors" "$tmp/vic/model.safetensors" --only multi_modal_projector. --expect-diff multi_modal_projector.
echo "$failures failures"
[ $failures -eq 0 ]
