#!/usr/bin/env bash
# `llava datagen` end to end against a real HTTP server on loopback (the fake
# chat-completions server, tests/fake_server.c): COCO-format fixture -> LLaVA
# JSONL that `llava prep` accepts; unparseable answers and failed requests in
# report.jsonl with reason and raw text; a rerun retries only what failed;
# SIGKILL mid-run then resume = the ids of an uninterrupted run, none twice;
# the key comes from the environment and never shows in the output.
# usage: test_datagen_cli.sh LLAVA_BINARY SOURCE_DIR BUILD_DIR
set -u
llava=$1
src=$2
build=$3
fx=$src/tests/fixtures/datagen
. "$src/tests/fake_server_lib.sh" llava_datagen_cli

gen() {
  "$llava" datagen --coco-captions "$fx/captions_tiny.json" --coco-instances "$fx/instances_tiny.json" \
    --prompts "$src/configs/datagen" --endpoint "http://127.0.0.1:$port/v1" --model fake --backoff 0.01 "$@"
}
ids() { grep -o '"id":"[^"]*"' "$1" | sort; }

# ---- flag errors: exit 2 with a message, nothing sent ----
port=1
expect_bad() {
  local what=$1 pattern=$2; shift 2
  "$@" > "$tmp/o.txt" 2> "$tmp/e.txt"
  local rc=$?
  [ $rc -eq 2 ] && grep -qE -e "$pattern" "$tmp/e.txt" || fail "$what: exit $rc, stderr: $(cat "$tmp/e.txt")"
}
expect_bad "no endpoint" "--endpoint" "$llava" datagen --input x.jsonl --prompts "$src/configs/datagen" --out "$tmp/x.jsonl" --model m
expect_bad "two inputs" "--coco-captions" gen --input x.jsonl --out "$tmp/x.jsonl"
expect_bad "bad type" "--types" gen --types conv,chat --out "$tmp/x.jsonl"
expect_bad "unset key variable" "LLAVA_TEST_NO_SUCH_KEY" gen --api-key-env LLAVA_TEST_NO_SUCH_KEY --out "$tmp/x.jsonl"
expect_bad "missing prompt folder" "conversation" gen --prompts "$tmp" --out "$tmp/x.jsonl"
"$llava" datagen --help | grep -q -- "--api-key-env" || fail "--help lacks --api-key-env"

# ---- run 1: every outcome once ----
start_server "$fx/server_rules.json" "$tmp/log1.jsonl"
out=$tmp/run/data.jsonl
mkdir -p "$tmp/run"
gen --out "$out" --concurrency 2 --retries 1 > "$tmp/o1.txt" 2> "$tmp/e1.txt"
rc=$?
[ $rc -eq 1 ] || fail "run 1 exit $rc (want 1: one request failed): $(cat "$tmp/e1.txt")"
printf '%s\n' '"id":"000000000007_conv"' '"id":"000000033471_complex"' '"id":"000000033471_conv"' \
  '"id":"000000033471_detail"' '"id":"000000052846_complex"' '"id":"000000052846_detail"' > "$tmp/want1"
ids "$out" > "$tmp/got1"
diff "$tmp/want1" "$tmp/got1" > /dev/null || fail "run 1 ids: $(cat "$tmp/got1")"
grep -q "6 samples written" "$tmp/o1.txt" || fail "run 1 summary: $(cat "$tmp/o1.txt")"
grep -q "2 unparseable responses, 1 failed requests, 3 samples of unusable images" "$tmp/o1.txt" ||
  fail "run 1 counts: $(cat "$tmp/o1.txt")"
grep -q "usage: 9 requests (8 ok, 1 failed, 2 retries), 88 prompt + 56 completion = 144 tokens" "$tmp/o1.txt" ||
  fail "run 1 usage: $(grep usage "$tmp/o1.txt")"
rep=$tmp/run/report.jsonl
grep -q '"id":"000000052846_conv".*"reason":"unparseable response: a block starts with neither.*"raw":"Sure! Here is' "$rep" ||
  fail "unparseable conv not reported with its raw text: $(cat "$rep")"
grep -q '"id":"000000000007_complex".*found 2 pairs' "$rep" || fail "2-pair complex not reported"
grep -q '"id":"000000000007_detail".*request failed: HTTP 503.*after 2 attempts' "$rep" || fail "failed request not reported"
for t in conv detail complex; do
  grep -q "\"id\":\"000000000009_$t\".*no caption" "$rep" || fail "image without caption ($t) not reported"
done
[ "$(wc -l < "$rep")" -eq 6 ] || fail "report has $(wc -l < "$rep") lines (want 6)"
# The records: LLaVA's shape; <image> in the first human turn; paper formats parsed.
grep -q '{"id":"000000033471_conv","image":"000000033471.jpg","conversations":\[{"from":"human","value":"\(<image>\\nWhat vehicle is this?\|What vehicle is this?\\n<image>\)"},{"from":"gpt","value":"It is a white city bus."},{"from":"human","value":"Where is it parked?"},{"from":"gpt","value":"At the curb, next to a stop sign."}\]}' "$out" ||
  fail "conv record: $(grep 33471_conv "$out")"
grep -q '"id":"000000000007_conv".*"value":"On a sandy beach."' "$out" || fail "JSON-lines conv not parsed"
grep -q '"id":"000000033471_detail".*"from":"gpt","value":"A white city bus is parked' "$out" || fail "detail record"
# The prompts sent: system + 2 few-shot pairs + the context for conversations;
# conversations see captions only, detail/complex also the boxes.
conv_req=$(grep 'A bus parked' "$tmp/log1.jsonl" | grep 'a conversation' | head -1)
[ "$(echo "$conv_req" | grep -o '"role":"assistant"' | wc -l)" -eq 2 ] || fail "conversation request lacks its 2 examples"
echo "$conv_req" | grep -q 'quiet street."}\]' || fail "conversation context is not the captions alone"
grep 'A bus parked' "$tmp/log1.jsonl" | grep 'thoroughly' | grep -q 'stop sign: \[0.938, 0.021, 1.0, 0.146\]"}\]' ||
  fail "detail context lacks the boxes"

# ---- run 2: the same command retries only what is missing ----
n_before=$(wc -l < "$tmp/log1.jsonl")
gen --out "$out" --concurrency 2 --retries 1 > "$tmp/o2.txt" 2> "$tmp/e2.txt"
rc=$?
[ $rc -eq 0 ] || fail "run 2 exit $rc: $(cat "$tmp/e2.txt")"
sent=$(( $(wc -l < "$tmp/log1.jsonl") - n_before ))
[ "$sent" -eq 3 ] || fail "run 2 sent $sent requests (want 3: the two unparseable and the failed one)"
grep -q "1 samples written.*6 already there" "$tmp/o2.txt" || fail "run 2 summary: $(cat "$tmp/o2.txt")"
ids "$out" > "$tmp/got2"
[ "$(wc -l < "$tmp/got2")" -eq 7 ] && [ -z "$(uniq -d "$tmp/got2")" ] || fail "run 2 ids: $(cat "$tmp/got2")"
grep -q 000000000007_detail "$tmp/got2" || fail "the failed request was not retried"
grep -q 000000000007_detail "$rep" && fail "report still lists the sample that is now written"
[ "$(wc -l < "$rep")" -eq 5 ] || fail "report after run 2 has $(wc -l < "$rep") lines (want 5, one per missing sample)"
stop_server

# ---- the output is a data file llava prep accepts as is ----
mkdir -p "$tmp/model" "$tmp/images"
sed 's/"vocab_size": 160/"vocab_size": 4008/; s/"image_token_index": 150/"image_token_index": 4004/' \
  "$src/tests/fixtures/tiny_llava15/config.json" > "$tmp/model/config.json"
cp "$src/tests/fixtures/tokenizer/legacy/tokenizer.json" "$src/tests/fixtures/tokenizer/legacy/tokenizer_config.json" \
  "$tmp/model/"
for id in 000000033471 000000052846 000000000007; do
  cp "$src/tests/fixtures/images/src/jpeg_rgb_444.jpg" "$tmp/images/$id.jpg"
done
if "$llava" prep --data "$out" --images "$tmp/images" --model "$tmp/model" --template vicuna_v1 --quiet \
     --out "$tmp/shards" > "$tmp/prep.txt" 2>&1; then
  grep -q "7 items: 7 written" "$tmp/prep.txt" || fail "prep summary: $(cat "$tmp/prep.txt")"
else
  fail "llava prep refused the generated file: $(cat "$tmp/prep.txt")"
fi

# ---- SIGKILL mid-run, then resume: same ids as an uninterrupted run, none twice ----
# Each answer hangs 400 ms so that a loaded machine still kills the run well
# before its 9th line (the check below says so if it did not).
cat > "$tmp/slow_rules.json" <<'RULES'
[{"system": "needs reasoning", "hang_ms": 400, "content": "Question:\nWhy?\n===\nAnswer:\nBecause."},
 {"system": "a conversation", "hang_ms": 400, "content": "Question:\nWhat?\n===\nAnswer:\nThat."},
 {"hang_ms": 400, "content": "A description."}]
RULES
start_server "$tmp/slow_rules.json" "$tmp/log3.jsonl"
mkdir -p "$tmp/whole" "$tmp/killed"
gen --out "$tmp/whole/data.jsonl" --concurrency 2 --batch 2 > /dev/null 2>&1 || fail "uninterrupted run failed"
# exec: $! must be llava itself, not a subshell around it.
(exec "$llava" datagen --coco-captions "$fx/captions_tiny.json" --coco-instances "$fx/instances_tiny.json" \
   --prompts "$src/configs/datagen" --endpoint "http://127.0.0.1:$port/v1" --model fake \
   --out "$tmp/killed/data.jsonl" --concurrency 2 --batch 2 > /dev/null 2>&1) &
gen_pid=$!
for _ in $(seq 1 200); do
  [ -s "$tmp/killed/data.jsonl" ] && [ "$(wc -l < "$tmp/killed/data.jsonl")" -ge 3 ] && break
  sleep 0.02
done
kill -9 "$gen_pid" 2> /dev/null
wait "$gen_pid" 2> /dev/null
n_killed=$(wc -l < "$tmp/killed/data.jsonl")
[ "$n_killed" -lt 9 ] || fail "the run finished before the kill ($n_killed lines): the test proves nothing"
# Simulate a torn last line as well: the process died inside a write.
printf '{"id":"000000052846_co' >> "$tmp/killed/data.jsonl"
gen --out "$tmp/killed/data.jsonl" --concurrency 2 --batch 2 > "$tmp/o4.txt" 2> "$tmp/e4.txt" ||
  fail "resume failed: $(cat "$tmp/e4.txt")"
grep -q "torn last line" "$tmp/e4.txt" || fail "the torn line was not reported"
ids "$tmp/whole/data.jsonl" > "$tmp/ids_whole"
ids "$tmp/killed/data.jsonl" > "$tmp/ids_killed"
[ "$(wc -l < "$tmp/ids_whole")" -eq 9 ] || fail "uninterrupted run wrote $(wc -l < "$tmp/ids_whole") samples (want 9)"
diff "$tmp/ids_whole" "$tmp/ids_killed" > /dev/null || fail "killed + resumed ids differ: $(diff "$tmp/ids_whole" "$tmp/ids_killed")"
[ -z "$(uniq -d "$tmp/ids_killed")" ] || fail "duplicate ids after resume: $(uniq -d "$tmp/ids_killed")"
# Deterministic choices: the two files hold the same records.
diff <(sort "$tmp/whole/data.jsonl") <(sort "$tmp/killed/data.jsonl") > /dev/null || fail "resumed records differ"
stop_server

# ---- the key: from the environment, sent, never printed ----
start_server "$tmp/slow_rules.json" "$tmp/log5.jsonl" "sk-test-right-key"
mkdir -p "$tmp/key"
LLAVA_TEST_KEY=sk-test-wrong-key gen --api-key-env LLAVA_TEST_KEY --types detail --concurrency 1 --out "$tmp/key/a.jsonl" \
  > "$tmp/o5.txt" 2> "$tmp/e5.txt"
rc=$?
[ $rc -eq 1 ] || fail "wrong key: exit $rc"
grep -q 'HTTP 401.*check the key in \$LLAVA_TEST_KEY' "$tmp/key/report.jsonl" || fail "401 not reported: $(head -2 "$tmp/key/report.jsonl")"
grep -q "stopped sending after" "$tmp/o5.txt" || fail "401 did not stop the run: $(cat "$tmp/o5.txt")"
[ "$(wc -l < "$tmp/log5.jsonl")" -eq 1 ] || fail "after a 401, $(wc -l < "$tmp/log5.jsonl") requests were sent (want 1)"
grep -rq "sk-test-wrong-key" "$tmp/o5.txt" "$tmp/e5.txt" "$tmp/key" && fail "the key was printed or stored"
LLAVA_TEST_KEY=sk-test-right-key gen --api-key-env LLAVA_TEST_KEY --types detail --limit 2 --out "$tmp/key/a.jsonl" \
  > "$tmp/o6.txt" 2> "$tmp/e6.txt" || fail "right key: $(cat "$tmp/e6.txt")"
grep -q "2 samples written" "$tmp/o6.txt" || fail "right key summary: $(cat "$tmp/o6.txt")"
stop_server

if [ $failures -ne 0 ]; then echo "test_datagen_cli: $failures failures"; exit 1; fi
echo "test_datagen_cli: ok"
