#!/usr/bin/env bash
# LoRA end to end with `llava train` on the tiny fixture (synthetic data):
#  - final/ is a PEFT adapter folder (adapter_config.json, adapter_model.safetensors
#    with PEFT's names, non_lora_trainables.bin, config.json);
#  - with dropout 0.1: recompute on/off bitwise, resume after a kill in a
#    checkpoint bitwise (adapters and every loss);
#  - mpirun -np 2 (micro 2) == one process (micro 4) at dropout 0; ZeRO-1 == replicated;
#  - `llava merge` writes a folder whose forward equals base + adapter, which
#    differs from the base only in the adapted linears and the projector;
#  - generate/eval accept --adapter and answer as the merged folder does;
#  - bad input: an adapter of another base (exit 2, naming the tensor), LoRA in stage 1.
# usage: test_lora_train.sh LLAVA SOURCE_DIR BUILD_DIR
set -u
llava=$1
src=$2
build=$3
st_diff=$build/tests/st_diff
tmp=$(mktemp -d /tmp/llava_lora_train.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
model=$src/tests/fixtures/tiny_llava_text
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@" > "$tmp/check.txt" 2>&1; then echo "ok: $what"; else fail "$what"; cat "$tmp/check.txt"; fi; }
losses() { grep -o '"loss": [0-9.eE+-]*' "$1/metrics.jsonl" | cut -d' ' -f2; }

common=(--set "model=$model" --set data=synthetic:32 --set max_length=96 --set lr=2e-3 --set projector_lr=1e-3
        --set warmup_ratio=0.1 --set log_every=100 --set seed=5 --set stage=2 --set lora_r=4 --set lora_alpha=8
        --set lora_dropout=0.1)
train() { "$llava" train "${common[@]}" "$@"; }

# --- the adapter folder --------------------------------------------------------------------
run=(--set micro_batch=4 --set max_steps=6 --set save_every=2 --set keep_last=3)
train "${run[@]}" --set output_dir="$tmp/ref" > "$tmp/ref.log" 2>&1 || { fail "LoRA run"; cat "$tmp/ref.log"; }
fin=$tmp/ref/final
check "final/ holds the PEFT files and LLaVA's non_lora_trainables.bin" \
  test -s "$fin/adapter_config.json" -a -s "$fin/adapter_model.safetensors" -a -s "$fin/non_lora_trainables.bin" -a -s "$fin/config.json"
check "adapter_config.json: LORA, r 4, alpha 8, a target regex on the language model, projector in modules_to_save" \
  bash -c "grep -q '\"peft_type\":[[:space:]]*\"LORA\"' '$fin/adapter_config.json' && grep -q '\"r\":[[:space:]]*4' '$fin/adapter_config.json' \
    && grep -q '\"lora_alpha\":[[:space:]]*8' '$fin/adapter_config.json' && grep -q 'language_model' '$fin/adapter_config.json' \
    && grep -q 'multi_modal_projector' '$fin/adapter_config.json'"
check "adapter tensors carry PEFT's names" \
  grep -q "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight" "$fin/adapter_model.safetensors"
check "checkpoints hold the adapter too" test -s "$tmp/ref/checkpoint-00000004/model/adapter_model.safetensors"

# --- recompute and resume, with dropout -------------------------------------------------------
train "${run[@]}" --set output_dir="$tmp/norec" --set recompute=false > "$tmp/norec.log" 2>&1 || fail "recompute off run"
check "dropout 0.1: recompute on == off (bitwise adapters)" \
  "$st_diff" "$tmp/norec/final/adapter_model.safetensors" "$fin/adapter_model.safetensors"
LLAVA_TEST_CRASH_DURING_SAVE=4 train "${run[@]}" --set output_dir="$tmp/crash" > "$tmp/crash1.log" 2>&1
train "${run[@]}" --set output_dir="$tmp/crash" > "$tmp/crash2.log" 2>&1 || { fail "resume"; cat "$tmp/crash2.log"; }
check "resumed from step 2" grep -q "resumed from .*checkpoint-00000002 at step 2" "$tmp/crash2.log"
check "resume with dropout: final adapter bitwise equal" \
  "$st_diff" "$tmp/crash/final/adapter_model.safetensors" "$fin/adapter_model.safetensors"
check "resume with dropout: every loss identical" diff <(losses "$tmp/crash" | tail -4) <(losses "$tmp/ref" | tail -4)
train "${run[@]}" --set output_dir="$tmp/seed" --set seed=6 > /dev/null 2>&1
check "another seed gives other adapters" \
  "$st_diff" "$tmp/seed/final/adapter_model.safetensors" "$fin/adapter_model.safetensors" --expect-diff base_model.

# --- data parallel ----------------------------------------------------------------------------
if command -v mpirun > /dev/null 2>&1; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
  dp=(--set lora_dropout=0 --set max_steps=4 --set threads=1)
  OMP_NUM_THREADS=1 mpirun -np 2 "$llava" train "${common[@]}" "${dp[@]}" --set micro_batch=2 --set output_dir="$tmp/dp" \
    > "$tmp/dp.log" 2>&1 || { fail "mpirun -np 2"; cat "$tmp/dp.log"; }
  train "${dp[@]}" --set micro_batch=4 --set output_dir="$tmp/single" > "$tmp/single.log" 2>&1 || fail "single"
  check "LoRA: mpirun -np 2 (micro 2) == 1 process (micro 4)" \
    "$st_diff" "$tmp/dp/final/adapter_model.safetensors" "$tmp/single/final/adapter_model.safetensors" --tol 1e-5
  OMP_NUM_THREADS=1 mpirun -np 2 "$llava" train "${common[@]}" "${dp[@]}" --set micro_batch=2 --set zero_stage=1 \
    --set output_dir="$tmp/zero" > "$tmp/zero.log" 2>&1 || { fail "ZeRO-1"; cat "$tmp/zero.log"; }
  check "LoRA: ZeRO-1 == replicated (bitwise)" \
    "$st_diff" "$tmp/zero/final/adapter_model.safetensors" "$tmp/dp/final/adapter_model.safetensors"
else
  echo "skip: mpirun not found"
fi

# --- merge -----------------------------------------------------------------------------------
"$llava" merge --base "$model" --adapter "$fin" --out "$tmp/merged" > "$tmp/merge.log" 2>&1 || { fail "merge"; cat "$tmp/merge.log"; }
check "merged: vision tower, embeddings and norms bitwise the base's" \
  "$st_diff" "$tmp/merged/model.safetensors" "$model/model.safetensors" --only vision_tower. --only language_model.model.embed_tokens. \
  --only language_model.model.norm. --only language_model.lm_head.
check "merged: the adapted linears and the projector changed" \
  "$st_diff" "$tmp/merged/model.safetensors" "$model/model.safetensors" --only language_model.model.layers.0.self_attn.q_proj \
  --only multi_modal_projector. --expect-diff language_model. --expect-diff multi_modal_projector.
check "merged folder keeps the tokenizer" test -s "$tmp/merged/tokenizer.json"
batch=$src/tests/fixtures/tiny_llava15/batch.safetensors
gen() { "$llava" generate "$@" --image "$model/example.png" --prompt "What is shown in this image?" --max-new-tokens 12; }
gen --model "$tmp/merged" > "$tmp/g_merged.txt" 2>/dev/null || fail "generate on the merged folder"
gen --model "$model" --adapter "$fin" > "$tmp/g_adapter.txt" 2>"$tmp/g_adapter.err" || { fail "generate --adapter"; cat "$tmp/g_adapter.err"; }
gen --model "$model" > "$tmp/g_base.txt" 2>/dev/null
check "generate --adapter answers as the merged folder" cmp "$tmp/g_adapter.txt" "$tmp/g_merged.txt"
check "... and not as the base" bash -c "! cmp -s '$tmp/g_adapter.txt' '$tmp/g_base.txt'"
check "chat and eval have --adapter" bash -c "'$llava' chat --help | grep -q -- --adapter && '$llava' eval scienceqa --help 2>&1 | grep -q -- --adapter"

# --- bad input ---------------------------------------------------------------------------------
out=$("$llava" merge --base "$src/tests/fixtures/tiny_llava_v1" --adapter "$fin" --out "$tmp/bad" 2>&1); rc=$?
check "an adapter of another base is refused (exit 2) naming the tensor" \
  bash -c "[ $rc -eq 2 ] && echo \"\$0\" | grep -q 'tensor base_model.model.model.[a-z_.0-9]* has shape'" "$out"
check "and nothing is written" test ! -e "$tmp/bad"
out=$(train --set stage=1 --set output_dir="$tmp/s1" 2>&1); rc=$?
check "LoRA in stage 1 is refused (exit 2)" bash -c "[ $rc -eq 2 ] && echo \"\$0\" | grep -q 'lora_r'" "$out"
out=$(train --set lora_targets=q,kk --set output_dir="$tmp/t" 2>&1); rc=$?
check "an unknown LoRA target is refused (exit 2)" bash -c "[ $rc -eq 2 ] && echo \"\$0\" | grep -q 'kk'" "$out"
mkdir -p "$tmp/binonly" && cp "$fin/adapter_config.json" "$tmp/binonly/" && touch "$tmp/binonly/adapter_model.bin"
out=$("$llava" merge --base "$model" --adapter "$tmp/binonly" --out "$tmp/bad2" 2>&1); rc=$?
check "an adapter with only adapter_model.bin is refused with the way out" \
  bash -c "[ $rc -eq 2 ] && echo \"\$0\" | grep -q 'safe_serialization'" "$out"
check "llava merge --help" "$llava" merge --help

echo "$failures failures"
[ $failures -eq 0 ]
