#!/usr/bin/env bash
# `llava judge` end to end against a real HTTP server on loopback (the fake
# chat-completions server): LLaVA's review prompt and settings on the wire,
# review records, score parsing (an unparseable review kept as -1 -1), a 500
# retried, a request that keeps failing left out and asked again by the
# rerun, nothing asked twice, the summary LLaVA prints; bad input exits 2
# before anything is sent.
# usage: test_judge_cli.sh LLAVA_BINARY SOURCE_DIR BUILD_DIR
set -u
llava=$1
src=$2
build=$3
fx=$src/tests/fixtures/judge
. "$src/tests/fake_server_lib.sh" llava_judge_cli
start_server "$fx/server_rules.json" "$tmp/log.jsonl"

judge() {
  "$llava" judge --questions "$fx/questions.jsonl" --context "$fx/context.jsonl" --reference "$fx/answers_ref.jsonl" \
    --answers "$fx/answers_model.jsonl" --rules "$fx/rule.json" --endpoint "http://127.0.0.1:$port/v1" \
    --model judge --backoff 0.01 --retries 1 "$@"
}
lines() { [ -f "$1" ] && wc -l < "$1" || echo 0; }

# ---- bad input: exit 2, nothing sent ----
judge --out "$tmp/x.jsonl" --category-prefix nope_ > /dev/null 2> "$tmp/e.txt"
rc=$?
[ $rc -eq 2 ] && grep -q 'no rule "nope_conv"' "$tmp/e.txt" || fail "missing rule: exit $rc, $(cat "$tmp/e.txt")"
grep -v '"question_id": 4' "$fx/answers_model.jsonl" > "$tmp/partial.jsonl"
"$llava" judge --questions "$fx/questions.jsonl" --context "$fx/context.jsonl" --reference "$fx/answers_ref.jsonl" \
  --answers "$tmp/partial.jsonl" --rules "$fx/rule.json" --endpoint "http://127.0.0.1:$port/v1" --model judge \
  --out "$tmp/x.jsonl" > /dev/null 2> "$tmp/e.txt"
rc=$?
[ $rc -eq 2 ] && grep -q "question 4: no answer in --answers" "$tmp/e.txt" || fail "missing answer: exit $rc, $(cat "$tmp/e.txt")"
[ "$(lines "$tmp/log.jsonl")" -eq 0 ] || fail "bad input still sent requests"
"$llava" judge --help | grep -q -- "--rules" || fail "--help"

# ---- run 1 ----
out=$tmp/review.jsonl
judge --out "$out" --concurrency 2 > "$tmp/o1.txt" 2> "$tmp/e1.txt"
rc=$?
[ $rc -eq 1 ] || fail "run 1 exit $rc (want 1: question 4 kept failing): $(cat "$tmp/e1.txt")"
grep -q "question 4: HTTP 503.*after 2 attempts" "$tmp/e1.txt" || fail "failure not named: $(cat "$tmp/e1.txt")"
[ "$(lines "$out")" -eq 4 ] || fail "run 1 wrote $(lines "$out") reviews (want 4)"
grep -q '"id":1,"question_id":0,"answer1_id":"ref0","answer2_id":"m0","category":"llava_bench_conv","content":"9 7\\nAssistant 2 omits the colour.","tuple":\[9,7\]' "$out" ||
  fail "review record: $(grep '"question_id":0' "$out")"
grep -q '"question_id":1,.*"tuple":\[8,6\]' "$out" || fail "comma-separated scores"
grep -q '"question_id":2,.*"tuple":\[7,7\]' "$out" || fail "500 then ok"
grep -q '"question_id":3,.*"content":"Both answers are correct.\\n10 10","tuple":\[-1,-1\]' "$out" || fail "unparseable review"
grep -q "4 reviews written.*1 unparseable.*1 failed" "$tmp/o1.txt" || fail "run 1 summary: $(cat "$tmp/o1.txt")"
# LLaVA's summary of the 4 reviews: all (23/4, 19/4) -> 82.6; conv (4, 3) -> 75.0.
printf '%s\n' review "all 82.6" "llava_bench_complex 100.0" "llava_bench_conv 75.0" "llava_bench_detail 75.0" \
  "=================================" > "$tmp/want1"
grep -A5 '^review$' "$tmp/o1.txt" > "$tmp/got1"
diff "$tmp/want1" "$tmp/got1" > /dev/null || fail "run 1 LLaVA lines: $(cat "$tmp/got1")"
grep -q "^llava_bench_conv *75.0% *4.000 *3.000 *2 *1$" "$tmp/o1.txt" || fail "table row: $(grep conv "$tmp/o1.txt")"
# On the wire: LLaVA's system message, temperature 0.2, max_tokens 1024, the prompt layout.
req=$(grep 'What is the cat lying on?' "$tmp/log.jsonl" | head -1)
echo "$req" | grep -q '"role":"system","content":"You are a helpful and precise assistant for checking the quality of the answer."' || fail "system message"
echo "$req" | grep -q '"temperature":0.2,"max_tokens":1024' || fail "settings: $req"
echo "$req" | grep -q '"content":"\[Context\]\\nA grey cat sleeps on a red sofa.\\nA cat curled up on a couch.\\n\\n\[Question\]\\nWhat is the cat lying on?\\n\\n\[Assistant 1\]\\nThe cat is lying on a red sofa.\\n\\n\[End of Assistant 1\]\\n\\n\[Assistant 2\]\\nA sofa.\\n\\n\[End of Assistant 2\]\\n\\n\[System\]\\nRate both answers to the conversation question' ||
  fail "review prompt: $req"

# ---- run 2: only question 4 is asked again ----
n_before=$(lines "$tmp/log.jsonl")
judge --out "$out" > "$tmp/o2.txt" 2> "$tmp/e2.txt" || fail "run 2: $(cat "$tmp/e2.txt")"
[ $(( $(lines "$tmp/log.jsonl") - n_before )) -eq 2 ] || fail "run 2 sent $(( $(lines "$tmp/log.jsonl") - n_before )) requests (want 2: one 503, one answer)"
[ "$(lines "$out")" -eq 5 ] || fail "run 2: $(lines "$out") reviews"
[ "$(grep -c '"question_id":4,' "$out")" -eq 1 ] || fail "question 4 twice or missing"
grep -q "^all 67.7$" "$tmp/o2.txt" && grep -q "^llava_bench_complex 60.0$" "$tmp/o2.txt" || fail "run 2 summary: $(cat "$tmp/o2.txt")"
# ---- run 3: nothing left to ask ----
n_before=$(lines "$tmp/log.jsonl")
judge --out "$out" > "$tmp/o3.txt" 2>&1 || fail "run 3: $(cat "$tmp/o3.txt")"
[ "$(lines "$tmp/log.jsonl")" -eq "$n_before" ] || fail "run 3 asked again"
grep -q "5 already there" "$tmp/o3.txt" || fail "run 3 summary: $(cat "$tmp/o3.txt")"
# `llava judge summarize` prints the same summary.
"$llava" judge summarize "$out" > "$tmp/s.txt" || fail "summarize"
diff <(grep -A20 '^review$' "$tmp/o3.txt") "$tmp/s.txt" > /dev/null || fail "summarize differs: $(cat "$tmp/s.txt")"
stop_server

if [ $failures -ne 0 ]; then echo "test_judge_cli: $failures failures"; exit 1; fi
echo "test_judge_cli: ok"
