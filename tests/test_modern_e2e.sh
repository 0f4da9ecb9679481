#!/usr/bin/env bash
# A SigLIP + Qwen2 model end to end (issue 10): `llava init --vision SIGLIP
# --llm QWEN2` keeps the tokenizer's own <image>, writes SigLIP's processor
# files; prep with plain (stage 1) and qwen_2 (stage 2, masks as LLaVA-NeXT);
# a few steps of both stages; generate / chat pick qwen_2 from the tokenizer.
# (scripts/check_modern_hf.sh runs the same and loads final/ in transformers.)
# usage: test_modern_e2e.sh LLAVA SOURCE_DIR BUILD_DIR
set -u
llava=$1
src=$2
build=$3
tmp=$(mktemp -d /tmp/llava_modern.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@" > "$tmp/c.txt" 2>&1; then echo "ok: $what"; else fail "$what"; cat "$tmp/c.txt"; fi; }
parts=$src/tests/fixtures/tiny_parts_modern
imgs=$src/tests/fixtures/images/src

check "init from a SigLIP folder and a Qwen2 folder" "$llava" init --vision "$parts/siglip" --llm "$parts/qwen2" --out "$tmp/m"
check "config: SigLIP tower, Qwen2 text model, strategy full, <image> at the tokenizer's id 2573" \
  bash -c "grep -q '\"siglip_vision_model\"' '$tmp/m/config.json' && grep -q '\"qwen2\"' '$tmp/m/config.json' &&
           grep -q '\"full\"' '$tmp/m/config.json' && grep -q '\"image_token_index\":[[:space:]]*2573' '$tmp/m/config.json'"
check "SigLIP's preprocessor config is kept" grep -q SiglipImageProcessor "$tmp/m/preprocessor_config.json"

mkdir -p "$tmp/images"
cp "$imgs/jpeg_rgb_444.jpg" "$tmp/images/a.jpg"
cp "$imgs/png_rgb.png" "$tmp/images/b.png"
cp "$imgs/jpeg_very_wide.jpg" "$tmp/images/c.jpg"
{
  echo "["
  for i in $(seq 0 15); do
    img=$(case $((i % 3)) in 0) echo a.jpg;; 1) echo b.png;; *) echo c.jpg;; esac)
    sep=$([ "$i" -lt 15 ] && echo ,)
    echo "{\"id\": \"$i\", \"image\": \"$img\", \"conversations\": [{\"from\": \"human\", \"value\": \"<image>\\nWhat is shown $i?\"}, {\"from\": \"gpt\", \"value\": \"A red cat on a mat, $i.\"}]}$sep"
  done
  echo "]"
} > "$tmp/data.json"
check "prep stage 1 (plain)" "$llava" prep --data "$tmp/data.json" --images "$tmp/images" --model "$tmp/m" \
  --template plain --out "$tmp/s1" --quiet
check "prep stage 2 (qwen_2, pad)" "$llava" prep --data "$tmp/data.json" --images "$tmp/images" --model "$tmp/m" \
  --template qwen_2 --aspect pad --out "$tmp/s2" --quiet
"$llava" inspect "$tmp/s2" --sample 0 > "$tmp/inspect.txt" 2>&1
check "a qwen_2 sample: ChatML text, the answer and its <|im_end|> in the loss" \
  bash -c "grep -q '<|im_start|>system' '$tmp/inspect.txt' && grep -q 'loss_text.*<|im_start|>assistant\\\\nA red cat on a mat, 0.<|im_end|>' '$tmp/inspect.txt'"
common=(--set micro_batch=4 --set max_steps=3 --set lr=1e-3 --set log_every=100)
check "stage 1: 3 steps" "$llava" train --set model="$tmp/m" --set data="$tmp/s1" --set stage=1 --set output_dir="$tmp/o1" "${common[@]}"
check "stage 2: 3 steps" "$llava" train --set model="$tmp/o1/final" --set data="$tmp/s2" --set stage=2 --set output_dir="$tmp/o2" "${common[@]}"
check "stage 2 changed the projector and the LLM, not the tower" \
  "$build/tests/st_diff" "$tmp/o2/final/model.safetensors" "$tmp/m/model.safetensors" --skip vision_tower. \
  --expect-diff multi_modal_projector. --expect-diff language_model.
gen=(--model "$tmp/o2/final" --image "$tmp/images/a.jpg" --prompt "What is it?" --max-new-tokens 6 --temperature 1 --sample-seed 5)
"$llava" generate "${gen[@]}" > "$tmp/auto.txt" 2> /dev/null || fail "generate (auto template)"
"$llava" generate "${gen[@]}" --template qwen_2 > "$tmp/qwen.txt" 2> /dev/null || fail "generate (qwen_2)"
check "generate picks qwen_2 for a ChatML tokenizer" cmp "$tmp/auto.txt" "$tmp/qwen.txt"
check "chat answers two questions" bash -c "printf 'What is it?\nAnd now?\n' | '$llava' chat --model '$tmp/o2/final' --image '$tmp/images/a.jpg' --max-new-tokens 4 > '$tmp/chat.txt' 2>&1 && [ \$(grep -c ASSISTANT '$tmp/chat.txt') -ge 2 ]"
echo "$failures failures"
[ $failures -eq 0 ]
