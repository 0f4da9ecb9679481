#!/usr/bin/env bash
# `llava generate --ids` and `llava eval scienceqa --answers` end to end:
# the generated ids equal transformers' (tests/fixtures/generation/cli_*),
# the ScienceQA table equals the leaderboard formula's (golden_scores.json),
# and bad input exits 2 with a message naming the problem.
set -u
LLAVA=$1 SRC=$2 BUILD=$3
GEN=$SRC/tests/fixtures/generation SQA=$SRC/tests/fixtures/scienceqa
TMP=$(mktemp -d) ; trap 'rm -rf "$TMP"' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }

# Generation: one image, 40 greedy tokens, no eos.
"$LLAVA" generate --model "$SRC/tests/fixtures/tiny_llava15" --ids "$(cat "$GEN/cli_prompt.txt")" \
  --pixels "$GEN/image.safetensors" --max-new-tokens 40 --eos -1 >"$TMP/gen.out" 2>"$TMP/gen.err"
check "generate exits 0" '[ $? -eq 0 ]'
check "generate prints transformers' tokens" 'diff -q "$TMP/gen.out" "$GEN/cli_expected.txt" >/dev/null'
check "generate reports decode speed" 'grep -q "tokens/s" "$TMP/gen.err"'
# One image token per image is expanded to image_seq_length (16 here).
ONE=$(sed 's/150, \(150, \)*150/150/' "$GEN/cli_prompt.txt")
"$LLAVA" generate --model "$SRC/tests/fixtures/tiny_llava15" --ids "$ONE" --pixels "$GEN/image.safetensors" \
  --max-new-tokens 40 --eos -1 >"$TMP/gen1.out" 2>/dev/null
check "one image token per image is expanded" 'diff -q "$TMP/gen1.out" "$GEN/cli_expected.txt" >/dev/null'
"$LLAVA" generate --model "$SRC/tests/fixtures/tiny_llava15" --ids "$ONE" >/dev/null 2>"$TMP/err"
check "image tokens without pixels: exit 2, named" '[ $? -eq 2 ] && grep -q "image token" "$TMP/err"'
"$LLAVA" generate --model "$SRC/tests/fixtures/tiny_llava15" --ids '[1, 999]' >/dev/null 2>"$TMP/err"
check "token outside the vocabulary: exit 2" '[ $? -eq 2 ] && grep -q "vocabulary" "$TMP/err"'

# Running into the model's 256 positions: stop "context", and --verify checks every cached step
# (the last token, predicted at the last position, has no cache row to go into).
"$LLAVA" generate --model "$SRC/tests/fixtures/tiny_llava15" --ids "$(cat "$GEN/cli_prompt.txt")" \
  --pixels "$GEN/image.safetensors" --max-new-tokens 300 --eos -1 --verify >"$TMP/ctx.out" 2>"$TMP/ctx.err"
check "generate up to the context limit with --verify exits 0" '[ $? -eq 0 ] && grep -q "(ok," "$TMP/ctx.err"'
check "... stops for context after 256 - 29 + 1 tokens" \
  'grep -q "\"stop\": \"context\"" "$TMP/ctx.out" && [ "$(grep -o "\"ids\": \[[^]]*\]" "$TMP/ctx.out" | tr "," "\n" | wc -l)" -eq 228 ]'

# Sampling is seeded: the same seed gives the same tokens, another seed others.
samp() { "$LLAVA" generate --model "$SRC/tests/fixtures/tiny_llava15" --ids '[1, 5, 6]' --temperature 1 \
           --max-new-tokens 12 --eos -1 --sample-seed "$1" 2>/dev/null; }
check "seeded sampling is reproducible" '[ "$(samp 3)" = "$(samp 3)" ]'
check "another seed samples other tokens" '[ "$(samp 3)" != "$(samp 4)" ]'

# ScienceQA scoring of an existing answers file.
"$LLAVA" eval scienceqa --problems "$SQA/problems.json" --answers "$SQA/answers.jsonl" --out "$TMP/sqa" \
  >"$TMP/sqa.out" 2>&1
check "eval scienceqa --answers exits 0" '[ $? -eq 0 ]'
check "writes LLaVA's result/output files and scores.json" \
  '[ -s "$TMP/sqa/result.json" ] && [ -s "$TMP/sqa/output.json" ] && [ -s "$TMP/sqa/scores.json" ]'
# The printed table row equals the golden per-category accuracies, in order.
want=$(grep -o '"acc_[a-z_0-9]*": "[0-9.]*"' "$SQA/golden_scores.json" | sed 's/.*: "\(.*\)"/\1/' | tr '\n' ' ')
got=$(grep -A1 '^NAT' "$TMP/sqa.out" | tail -1 | tr -s ' ' | sed 's/ $//')
check "table row = leaderboard formula ($want)" '[ "$got " = "$want" ]'
"$LLAVA" eval scienceqa --problems "$SQA/problems.json" --answers "$TMP/missing.jsonl" >/dev/null 2>"$TMP/err"
check "missing answers file: exit 2, named" '[ $? -eq 2 ] && grep -q "missing.jsonl" "$TMP/err"'
"$LLAVA" eval scienceqa --problems "$SQA/problems.json" --answers "$SQA/answers.jsonl" --split nope \
  --out "$TMP/x" >/dev/null 2>"$TMP/err"
check "unknown split: exit 2, named" '[ $? -eq 2 ] && grep -q "nope" "$TMP/err"'
exit $fail
