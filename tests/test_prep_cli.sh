#!/usr/bin/env bash
# `llava prep` and `llava inspect` from the command line: flag errors exit 2
# with a message, a prep writes its summary and report, a second run on the
# complete folder does nothing, a different recipe is refused, inspect
# prints the summary and a decoded sample. (The reasons of report.json are
# checked one by one in test_prep_hostile.c.)
# usage: test_prep_cli.sh LLAVA_BINARY SOURCE_DIR BUILD_DIR
set -u
llava=$1
src=$2
tmp=$(mktemp -d /tmp/llava_prep_cli.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# A model folder: tiny_llava15's config with the tokenizer fixture's 4008 ids
# and <image> = 4004, the tokenizer files, no preprocessor_config.json (CLIP
# defaults at the vision tower's 28 px).
mkdir -p "$tmp/model" "$tmp/images"
sed 's/"vocab_size": 160/"vocab_size": 4008/; s/"image_token_index": 150/"image_token_index": 4004/' \
  "$src/tests/fixtures/tiny_llava15/config.json" > "$tmp/model/config.json"
cp "$src/tests/fixtures/tokenizer/legacy/tokenizer.json" "$src/tests/fixtures/tokenizer/legacy/tokenizer_config.json" \
  "$tmp/model/"
cp "$src/tests/fixtures/images/src/jpeg_rgb_444.jpg" "$tmp/images/cat.jpg"
cp "$src/tests/fixtures/images/bad/text.jpg" "$tmp/images/text.jpg"
cat > "$tmp/data.json" <<'EOF'
[
  {"id": "a", "image": "cat.jpg", "conversations": [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A cat."}]},
  {"id": "b", "image": "text.jpg", "conversations": [{"from": "human", "value": "<image>\nAnd this?"}, {"from": "gpt", "value": "Text."}]},
  {"id": "c", "conversations": [{"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Hi there."}]}
]
EOF
prep() { "$llava" prep --data "$tmp/data.json" --images "$tmp/images" --model "$tmp/model" --quiet "$@"; }

# expect_bad DESCRIPTION PATTERN -- command...
expect_bad() {
  local what=$1 pattern=$2; shift 3
  "$@" > "$tmp/out.txt" 2> "$tmp/err.txt"
  local rc=$?
  if [ $rc -ne 2 ] || ! grep -qE -e "$pattern" "$tmp/err.txt"; then
    fail "$what: exit $rc (want 2), stderr: $(cat "$tmp/err.txt")"
  fi
}
expect_bad "missing --out" "--out" -- prep --template vicuna_v1
expect_bad "unknown template" "unknown template" -- prep --template v9 --out "$tmp/x"
expect_bad "bad store" "--store" -- prep --template v1 --out "$tmp/x" --store jpeg
expect_bad "missing model" "model folder .* does not exist" -- \
  "$llava" prep --data "$tmp/data.json" --model "$tmp/nope" --template v1 --out "$tmp/x"
expect_bad "max length over the model's positions" "max_position_embeddings" -- prep --template v1 --out "$tmp/x" --max-length 100000
expect_bad "missing data file" "data.jsonl: " -- \
  "$llava" prep --data "$tmp/data.jsonl" --model "$tmp/model" --template v1 --out "$tmp/x"

out=$tmp/shards
if ! prep --template vicuna_v1 --out "$out" > "$tmp/out.txt" 2> "$tmp/err.txt"; then
  fail "prep: $(cat "$tmp/err.txt")"
fi
grep -q "3 items: 2 written (0 truncated), 1 skipped" "$tmp/out.txt" || fail "summary line: $(cat "$tmp/out.txt")"
for f in manifest.json report.json preprocessor_config.json tokenizer/tokenizer.json shard-00000.h5; do
  [ -f "$out/$f" ] || fail "$f missing"
done
grep -q '"reason":[[:space:]]*"corrupt_image"' "$out/report.json" || fail "report.json lacks the corrupt image"

prep --template vicuna_v1 --out "$out" > "$tmp/out.txt" 2>&1 || fail "second run failed"
grep -q "nothing to do" "$tmp/out.txt" || fail "second run is not a no-op: $(cat "$tmp/out.txt")"
expect_bad "other recipe" "different recipe" -- prep --template plain --out "$out"

"$llava" inspect "$out" > "$tmp/summary.json" 2> "$tmp/err.txt" || fail "inspect: $(cat "$tmp/err.txt")"
grep -q '"complete":[[:space:]]*true' "$tmp/summary.json" || fail "inspect summary: $(cat "$tmp/summary.json")"
"$llava" inspect "$out" --sample 1 > "$tmp/sample.json" 2> "$tmp/err.txt" || fail "inspect --sample: $(cat "$tmp/err.txt")"
grep -q '"id":[[:space:]]*"c"' "$tmp/sample.json" || fail "sample 1 is not item c"
grep -q 'USER: Hello ASSISTANT: Hi there.</s>' "$tmp/sample.json" || fail "decoded text: $(cat "$tmp/sample.json")"
grep -q '"loss_text":[[:space:]]*"Hi there.</s>"' "$tmp/sample.json" || fail "loss text: $(cat "$tmp/sample.json")"
expect_bad "sample out of range" "no sample 2" -- "$llava" inspect "$out" --sample 2
expect_bad "not a shard folder" "no manifest.json" -- "$llava" inspect "$tmp/images"

# A disk that fills up while a shard is written (a file size limit stands in for it): an error
# naming the shard, never a crash, and no shard or complete manifest left behind.
{ printf '['; for i in $(seq 1 300); do [ $i -gt 1 ] && printf ','
  printf '{"id": "f%d", "image": "cat.jpg", "conversations": [{"from": "human", "value": "<image>\\nWhat %d?"}, {"from": "gpt", "value": "A cat."}]}' $i $i
  done; printf ']\n'; } > "$tmp/full.json"
(trap '' XFSZ; ulimit -f 300; exec "$llava" prep --data "$tmp/full.json" --images "$tmp/images" --model "$tmp/model" \
  --template vicuna_v1 --out "$tmp/full" --quiet --workers 1) > "$tmp/out.txt" 2> "$tmp/err.txt"
rc=$?
if [ $rc -eq 0 ] || [ $rc -ge 128 ] || ! grep -q "shard-00000.h5.tmp: writing the shard failed" "$tmp/err.txt"; then
  fail "write error while writing a shard: exit $rc, stderr: $(cat "$tmp/err.txt")"
fi
[ -f "$tmp/full/shard-00000.h5" ] && fail "a failed shard was left as shard-00000.h5"
grep -q '"complete":[[:space:]]*true' "$tmp/full/manifest.json" && fail "manifest complete after a failed write"

# plain ignores roles as LLaVA's preprocess_plain (issue 9, item 14): a pair
# whose image prompt comes from gpt, or two human turns, is a caption sample.
cat > "$tmp/plain.json" <<'EOF'
[
  {"id": "p1", "image": "cat.jpg", "conversations": [{"from": "gpt", "value": "<image>"}, {"from": "human", "value": "A cat."}]},
  {"id": "p2", "image": "cat.jpg", "conversations": [{"from": "human", "value": "<image>\nDescribe."}, {"from": "human", "value": "A cat."}]},
  {"id": "p3", "image": "cat.jpg", "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "A cat."}]}
]
EOF
"$llava" prep --data "$tmp/plain.json" --images "$tmp/images" --model "$tmp/model" --template plain --out "$tmp/plain" \
  --quiet > "$tmp/out.txt" 2> "$tmp/err.txt" || fail "plain prep: $(cat "$tmp/err.txt")"
grep -q "3 items: 3 written (0 truncated), 0 skipped" "$tmp/out.txt" || fail "plain, roles ignored: $(cat "$tmp/out.txt")"
for i in 0 1; do
  "$llava" inspect "$tmp/plain" --sample $i > "$tmp/p$i.json" 2>&1
  grep -q '"loss_text":[[:space:]]*"A cat.\\n"' "$tmp/p$i.json" || fail "plain sample $i: $(cat "$tmp/p$i.json")"
done

if [ $failures -ne 0 ]; then echo "test_prep_cli: $failures failures"; exit 1; fi
echo "test_prep_cli: ok"
