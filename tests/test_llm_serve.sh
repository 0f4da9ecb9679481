#!/usr/bin/env bash
# The language-model commands against our own `llava serve` on loopback with
# the tiny fixture model (tests/fixtures/tiny_llava_text): `llava datagen` on
# the COCO-format fixture writes a data file `llava prep` accepts, and a report
# of what it could not parse (the tiny model writes noise: detailed
# descriptions parse, conversations do not); `llava judge` prints LLaVA's
# summary (noise reviews are unparseable: -1 -1, counted), also on answers
# that `llava eval vqa` wrote (= llava generate's; resumable); the ScienceQA
# ensemble prints its table. The faults themselves are tested against the
# fake server (test_chat_client, test_datagen_cli, test_judge_cli).
# usage: test_llm_serve.sh LLAVA_BINARY SOURCE_DIR BUILD_DIR
set -u
llava=$1
src=$2
M=$src/tests/fixtures/tiny_llava_text
tmp=$(mktemp -d /tmp/llava_llm_serve.XXXXXX)
spid=
trap '[ -n "$spid" ] && kill "$spid" 2> /dev/null; wait 2> /dev/null; rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
if ! "$llava" serve --help > /dev/null 2>&1; then
  echo "FAIL llava serve is not built (libmicrohttpd missing? scripts/install_deps.sh)"; exit 1
fi
"$llava" serve --model "$M" --port 0 --port-file "$tmp/port" --threads 1 --max-batch 4 2> "$tmp/serve.log" &
spid=$!
for _ in $(seq 300); do [ -s "$tmp/port" ] && break; sleep 0.1; done
port=$(cat "$tmp/port" 2> /dev/null)
[ -n "$port" ] || { echo "FAIL: llava serve did not start: $(cat "$tmp/serve.log")"; exit 1; }
endpoint=http://127.0.0.1:$port/v1
# No --no-system-role: llava serve takes the system message as the template's
# system prompt, as an OpenAI endpoint takes it.
common=(--endpoint "$endpoint" --model tiny --max-tokens 12 --temperature 0 --concurrency 2)

# ---- datagen: short prompt folders (the tiny model has 512 positions) ----
for t in conversation detail_description; do
  mkdir -p "$tmp/prompts/$t"
  printf 'Talk about the photo.\n' > "$tmp/prompts/$t/system_message.txt"
  printf 'A cat on a mat.\n' > "$tmp/prompts/$t/000_caps.txt"
  printf 'Question:\nWhat is it?\n===\nAnswer:\nA cat.\n' > "$tmp/prompts/$t/000_conv.txt"
done
fx=$src/tests/fixtures/datagen
"$llava" datagen --coco-captions "$fx/captions_tiny.json" --coco-instances "$fx/instances_tiny.json" \
  --prompts "$tmp/prompts" --types conv,detail --out "$tmp/gen/data.jsonl" "${common[@]}" \
  > "$tmp/gen.txt" 2> "$tmp/gen.err" || fail "datagen: $(cat "$tmp/gen.err")"
n_out=$(wc -l < "$tmp/gen/data.jsonl")
[ "$n_out" -eq 3 ] || fail "datagen wrote $n_out samples (want the 3 detailed descriptions): $(cat "$tmp/gen.txt")"
grep -q "usage: 6 requests (6 ok, 0 failed, 0 retries)" "$tmp/gen.txt" || fail "datagen usage: $(cat "$tmp/gen.txt")"
grep -q '"id":"000000033471_conv".*unparseable response.*"raw":' "$tmp/gen/report.jsonl" ||
  fail "unparseable conversation not in the report: $(cat "$tmp/gen/report.jsonl")"
# Deterministic: greedy answers, so a second folder gets the same file.
"$llava" datagen --coco-captions "$fx/captions_tiny.json" --coco-instances "$fx/instances_tiny.json" \
  --prompts "$tmp/prompts" --types conv,detail --out "$tmp/gen2/data.jsonl" "${common[@]}" > /dev/null 2>&1
diff <(sort "$tmp/gen/data.jsonl") <(sort "$tmp/gen2/data.jsonl") > /dev/null || fail "datagen not reproducible"
# The system message reached serve as one (it replaced vicuna's longer system
# prompt): folded into the first user message, the same requests are longer.
"$llava" datagen --coco-captions "$fx/captions_tiny.json" --coco-instances "$fx/instances_tiny.json" \
  --prompts "$tmp/prompts" --types conv,detail --out "$tmp/gen3/data.jsonl" "${common[@]}" --no-system-role \
  > "$tmp/gen3.txt" 2>&1 || fail "datagen --no-system-role: $(cat "$tmp/gen3.txt")"
ptok() { sed -n 's/^usage: .*), \([0-9]*\) prompt + .*/\1/p' "$1"; }
[ -n "$(ptok "$tmp/gen.txt")" ] && [ "$(ptok "$tmp/gen.txt")" -lt "$(ptok "$tmp/gen3.txt")" ] ||
  fail "system role: $(ptok "$tmp/gen.txt") prompt tokens, not fewer than --no-system-role's $(ptok "$tmp/gen3.txt")"
mkdir -p "$tmp/model" "$tmp/images"
sed 's/"vocab_size": 160/"vocab_size": 4008/; s/"image_token_index": 150/"image_token_index": 4004/' \
  "$src/tests/fixtures/tiny_llava15/config.json" > "$tmp/model/config.json"
cp "$src/tests/fixtures/tokenizer/legacy/tokenizer.json" "$src/tests/fixtures/tokenizer/legacy/tokenizer_config.json" \
  "$tmp/model/"
for id in 000000033471 000000052846 000000000007; do cp "$src/tests/fixtures/images/src/jpeg_rgb_444.jpg" "$tmp/images/$id.jpg"; done
"$llava" prep --data "$tmp/gen/data.jsonl" --images "$tmp/images" --model "$tmp/model" --template vicuna_v1 --quiet \
  --out "$tmp/shards" > "$tmp/prep.txt" 2>&1 || fail "prep refused the generated data: $(cat "$tmp/prep.txt")"
grep -q "3 items: 3 written" "$tmp/prep.txt" || fail "prep: $(cat "$tmp/prep.txt")"

# ---- judge: LLaVA's summary over the tiny model's reviews ----
jf=$src/tests/fixtures/judge
"$llava" judge --questions "$jf/questions.jsonl" --context "$jf/context.jsonl" --reference "$jf/answers_ref.jsonl" \
  --answers "$jf/answers_model.jsonl" --rules "$jf/rule.json" --out "$tmp/review.jsonl" "${common[@]}" \
  > "$tmp/judge.txt" 2> "$tmp/judge.err" || fail "judge: $(cat "$tmp/judge.err")"
[ "$(wc -l < "$tmp/review.jsonl")" -eq 5 ] || fail "judge wrote $(wc -l < "$tmp/review.jsonl") reviews"
grep -q '^all ' "$tmp/judge.txt" && grep -q '^llava_bench_conv ' "$tmp/judge.txt" && grep -q '^=====' "$tmp/judge.txt" ||
  fail "no LLaVA summary: $(cat "$tmp/judge.txt")"
u=$(grep -c '"tuple":\[-1,-1\]' "$tmp/review.jsonl")
grep -q "^all .* 5 *$u$" "$tmp/judge.txt" || fail "unparseable count ($u) not in the table: $(cat "$tmp/judge.txt")"

# ---- llava eval vqa (the answers), then llava judge on them: LLaVA-Bench end to end ----
cat > "$tmp/vqa_q.jsonl" <<'Q'
{"question_id": 0, "image": "example.png", "text": "What is shown in this image?", "category": "conv"}
{"question_id": 1, "image": "example.png", "text": "Describe the photo in detail.", "category": "detail"}
{"question_id": 2, "image": "example.png", "text": "What might happen next?", "category": "complex"}
Q
printf '{"image": "example.png", "caption": ["A small test picture."]}\n' > "$tmp/vqa_c.jsonl"
for i in 0 1 2; do printf '{"question_id": %d, "text": "A reference answer.", "answer_id": "r%d"}\n' $i $i; done > "$tmp/vqa_ref.jsonl"
"$llava" eval vqa --model "$M" --questions "$tmp/vqa_q.jsonl" --images "$M" --out "$tmp/vqa_a.jsonl" \
  --max-new-tokens 16 --threads 1 --batch-size 2 > "$tmp/vqa.txt" 2>&1 || fail "eval vqa: $(cat "$tmp/vqa.txt")"
[ "$(wc -l < "$tmp/vqa_a.jsonl")" -eq 3 ] || fail "eval vqa wrote $(wc -l < "$tmp/vqa_a.jsonl") answers"
# model_vqa's prompt is run_llava's: the answer equals llava generate's.
want=$("$llava" generate --model "$M" --threads 1 --image "$M/example.png" --prompt "What is shown in this image?" \
  --max-new-tokens 16 2> /dev/null)
grep -F "\"question_id\":0,\"prompt\":\"What is shown in this image?\",\"text\":\"$want\"" "$tmp/vqa_a.jsonl" > /dev/null ||
  fail "eval vqa answer differs from llava generate's ($want): $(head -1 "$tmp/vqa_a.jsonl")"
"$llava" eval vqa --model "$M" --questions "$tmp/vqa_q.jsonl" --images "$M" --out "$tmp/vqa_a.jsonl" \
  --max-new-tokens 16 --threads 1 > "$tmp/vqa2.txt" 2>&1
grep -q "all 3 questions already answered" "$tmp/vqa2.txt" || fail "eval vqa resume: $(cat "$tmp/vqa2.txt")"
"$llava" judge --questions "$tmp/vqa_q.jsonl" --context "$tmp/vqa_c.jsonl" --reference "$tmp/vqa_ref.jsonl" \
  --answers "$tmp/vqa_a.jsonl" --rules "$jf/rule.json" --out "$tmp/vqa_review.jsonl" "${common[@]}" \
  > "$tmp/vqa_judge.txt" 2>&1 || fail "judge on eval vqa answers: $(cat "$tmp/vqa_judge.txt")"
grep -q '^llava_bench_complex ' "$tmp/vqa_judge.txt" && grep -q '^all ' "$tmp/vqa_judge.txt" ||
  fail "no summary for the eval vqa answers: $(cat "$tmp/vqa_judge.txt")"

# ---- ScienceQA ensemble with the tiny model as the judge ----
sq=$src/tests/fixtures/scienceqa
"$llava" eval scienceqa --problems "$sq/problems.json" --answers "$sq/answers.jsonl" --ensemble "$sq/ensemble/other_answers.jsonl" \
  --judge-endpoint "$endpoint" --judge-model tiny --judge-max-tokens 12 --out "$tmp/sqa" \
  > "$tmp/sqa.txt" 2> "$tmp/sqa.err" || fail "ensemble: $(cat "$tmp/sqa.err")"
grep -q "^ensemble: 3 agree, 11 disagree" "$tmp/sqa.txt" || fail "ensemble counts: $(cat "$tmp/sqa.txt")"
grep -q "^ensemble  *[0-9.]*  *" "$tmp/sqa.txt" && grep -q "^first " "$tmp/sqa.txt" || fail "ensemble table: $(cat "$tmp/sqa.txt")"
[ "$(wc -l < "$tmp/sqa/judge.jsonl")" -eq 11 ] || fail "judge.jsonl has $(wc -l < "$tmp/sqa/judge.jsonl") replies"
[ -f "$tmp/sqa/ensemble/scores.json" ] || fail "ensemble/scores.json missing"

kill "$spid"; wait "$spid" 2> /dev/null; spid=
if [ $failures -ne 0 ]; then echo "test_llm_serve: $failures failures"; exit 1; fi
echo "test_llm_serve: ok"
