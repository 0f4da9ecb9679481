#!/usr/bin/env bash
# Text in, text out, against LLaVA's pipeline run on transformers
# (tests/fixtures/tiny_llava_text, scripts/make_text_generation_reference.py):
#  - `llava generate --image --prompt` and `--prompt` alone print the answer
#    LLaVA's run_llava.py would (template, tokenizer_image_token, pad-to-square
#    preprocessing, greedy, decode + strip);
#  - `llava chat` holds a two-turn conversation as LLaVA's cli.py does;
#  - `llava eval scienceqa --model` writes the answers model_vqa_science.py
#    would (compared through the result/output files both produce).
# usage: test_text_cli.sh LLAVA SOURCE_DIR BUILD_DIR
set -u
LLAVA=$1 SRC=$2
M=$SRC/tests/fixtures/tiny_llava_text SQA=$SRC/tests/fixtures/scienceqa
tmp=$(mktemp -d /tmp/llava_text_cli.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }

"$LLAVA" generate --model "$M" --image "$M/example.png" --prompt "What is shown in this image?" \
  --max-new-tokens 32 >"$tmp/img.out" 2>"$tmp/img.err"
check "generate --image --prompt = LLaVA's answer" 'cmp -s "$tmp/img.out" "$M/expected_generate_image.txt"' \
  || { diff "$tmp/img.out" "$M/expected_generate_image.txt"; cat "$tmp/img.err"; }
"$LLAVA" generate --model "$M" --prompt "Tell me a story about a cat." --max-new-tokens 32 >"$tmp/txt.out" 2>/dev/null
check "generate --prompt (no image) = LLaVA's answer" 'cmp -s "$tmp/txt.out" "$M/expected_generate_text.txt"'
"$LLAVA" generate --model "$M" --prompt "What is in the <image>?" >/dev/null 2>"$tmp/err"
check "<image> in the prompt without an image: exit 2, named" '[ $? -eq 2 ] && grep -q "<image>" "$tmp/err"'

"$LLAVA" chat --model "$M" --image "$M/example.png" --temperature 0 --max-new-tokens 16 <"$M/chat_input.txt" \
  >"$tmp/chat.out" 2>"$tmp/chat.err"
check "chat: two turns = LLaVA's answers" 'cmp -s "$tmp/chat.out" "$M/expected_chat.txt"' \
  || { diff "$tmp/chat.out" "$M/expected_chat.txt"; cat "$tmp/chat.err"; }

"$LLAVA" eval scienceqa --model "$M" --data "$SQA/llava_test_CQM-A.json" --images "$SQA/images/test" \
  --problems "$SQA/problems.json" --single-pred-prompt --max-new-tokens 8 --batch-size 4 --out "$tmp/ours" \
  >"$tmp/sqa.out" 2>"$tmp/sqa.err"
check "eval scienceqa --model exits 0 and writes answers.jsonl" '[ $? -eq 0 ] && [ -s "$tmp/ours/answers.jsonl" ]' \
  || cat "$tmp/sqa.err"
check "its progress line in a captured log is plain lines (no carriage return)" \
  'grep -q "answered" "$tmp/sqa.err" && ! grep -q $'"'"'\r'"'"' "$tmp/sqa.err"'
"$LLAVA" eval scienceqa --answers "$M/scienceqa_answers.jsonl" --problems "$SQA/problems.json" --out "$tmp/llava" \
  >/dev/null 2>&1
check "answers = model_vqa_science.py's (result.json: texts and parsed choices)" \
  'cmp -s "$tmp/ours/result.json" "$tmp/llava/result.json"'
check "answers = model_vqa_science.py's (output.json: prompts and texts)" \
  'cmp -s "$tmp/ours/output.json" "$tmp/llava/output.json"'
exit $fail
