#!/usr/bin/env bash
# `llava serve` on a loopback port with the tiny fixture model
# (tests/fixtures/tiny_llava_text), driven with curl and checked with jq:
#  - a request's answer is what `llava generate` prints for the same prompt,
#    image and sampling settings (greedy and seeded sampling), non-streamed
#    and streamed (the deltas concatenate to it); usage counts are the
#    prompt and generated tokens `llava generate` reports;
#  - 16 concurrent clients (batched: /health shows batches > 1) each get the
#    answer they got alone;
#  - a full queue answers 503 with Retry-After; a client that disconnects
#    frees its slot (the request behind it then runs);
#  - a system message replaces the template's system prompt;
#  - every bad-input class gets its 4xx and an OpenAI error object naming
#    the field, and the server answers normally afterwards;
#  - --api-key-env: 401 without the key; --image-root: files inside only;
#  - SIGTERM: the running stream finishes, then the server exits 0;
#  - --adapter (a LoRA adapter `llava train` writes in 4 steps): answers are
#    `llava generate --adapter`'s (greedy, seeded, streamed) and not the
#    base's; an adapter of another base is refused at start (exit 2, naming
#    the tensor, no port opened).
# usage: test_serve.sh LLAVA SOURCE_DIR BUILD_DIR
set -u
LLAVA=$1 SRC=$2
M=$SRC/tests/fixtures/tiny_llava_text
tmp=$(mktemp -d /tmp/llava_serve_test.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
if ! "$LLAVA" serve --help >/dev/null 2>&1; then
  echo "FAIL llava serve is not built (libmicrohttpd missing? scripts/install_deps.sh)"; exit 1
fi

# start NAME ARGS...: a server on a free port; sets PORT and SPID.
start() {
  local name=$1; shift
  rm -f "$tmp/$name.port"
  "$LLAVA" serve --model "$M" --port 0 --port-file "$tmp/$name.port" --threads 1 "$@" 2>"$tmp/$name.log" &
  SPID=$!
  pids+=("$SPID")
  for _ in $(seq 300); do [ -s "$tmp/$name.port" ] && break; sleep 0.1; done
  PORT=$(cat "$tmp/$name.port" 2>/dev/null)
  [ -n "$PORT" ] || { echo "FAIL server $name did not start"; cat "$tmp/$name.log"; exit 1; }
}
URL() { echo "http://127.0.0.1:$PORT$1"; }
# post FILE OUT [curl args]: prints the HTTP status.
post() { local f=$1 o=$2; shift 2; curl -s -o "$o" -w '%{http_code}' "$@" -H 'Content-Type: application/json' \
  --data-binary @"$f" "$(URL /v1/chat/completions)"; }
# body OUT TEXT [extra JSON fields] [image file]: a one-question request.
body() {
  local out=$1 text=$2 extra=${3:-} img=${4:-}
  if [ -n "$img" ]; then
    printf '{"messages":[{"role":"user","content":[{"type":"text","text":%s},{"type":"image_url","image_url":{"url":"data:image/png;base64,%s"}}]}]%s}' \
      "$(jq -Rn --arg t "$text" '$t')" "$(base64 -w0 "$img")" "$extra" >"$out"
  else
    printf '{"messages":[{"role":"user","content":%s}]%s}' "$(jq -Rn --arg t "$text" '$t')" "$extra" >"$out"
  fi
}
content() { jq -r '.choices[0].message.content' "$1"; }
# The streamed answer: the concatenated delta contents of an SSE body.
stream_text() { sed -n 's/^data: //p' "$1" | grep -v '^\[DONE\]$' | jq -j '.choices[0].delta.content // empty'; }

# A 5 ms step keeps the 16 concurrent requests in flight together however fast the machine.
start main --max-batch 8 --max-queue 32 --step-delay-ms 5
Q1="What is shown in this image?" Q2="Tell me a story about a cat."

# ---- same answer as llava generate -------------------------------------------------
"$LLAVA" generate --model "$M" --threads 1 --image "$M/example.png" --prompt "$Q1" --max-new-tokens 24 \
  >"$tmp/gen1.txt" 2>"$tmp/gen1.err"
body "$tmp/r1.json" "$Q1" ',"temperature":0,"max_tokens":24' "$M/example.png"
check "image question: 200" '[ "$(post "$tmp/r1.json" "$tmp/o1.json")" = 200 ]'
check "image question: answer = llava generate's" '[ "$(content "$tmp/o1.json")" = "$(cat "$tmp/gen1.txt")" ]' \
  || { content "$tmp/o1.json"; cat "$tmp/gen1.txt"; }
# llava generate's stderr: "prefill: N tokens ...; decode: K tokens" (K = generated - 1)
pre=$(sed -n 's/^prefill: \([0-9]*\) tokens.*/\1/p' "$tmp/gen1.err")
dec=$(sed -n 's/.*decode: \([0-9]*\) tokens.*/\1/p' "$tmp/gen1.err")
check "usage: prompt_tokens = llava generate's prompt ($pre, image positions included)" \
  '[ "$(jq .usage.prompt_tokens "$tmp/o1.json")" = "$pre" ]'
check "usage: completion_tokens = generated tokens ($((dec + 1))), total = their sum" \
  '[ "$(jq .usage.completion_tokens "$tmp/o1.json")" = $((dec + 1)) ] && [ "$(jq .usage.total_tokens "$tmp/o1.json")" = $((pre + dec + 1)) ]'
check "finish_reason length at max_tokens; OpenAI shape" \
  '[ "$(jq -r ".choices[0].finish_reason, .object, .choices[0].message.role" "$tmp/o1.json" | tr "\n" " ")" = "length chat.completion assistant " ]'

"$LLAVA" generate --model "$M" --threads 1 --prompt "$Q2" --max-new-tokens 20 --temperature 0.9 --top-p 0.95 \
  --top-k 50 --sample-seed 7 >"$tmp/gen2.txt" 2>/dev/null
body "$tmp/r2.json" "$Q2" ',"temperature":0.9,"top_p":0.95,"top_k":50,"seed":7,"max_tokens":20'
post "$tmp/r2.json" "$tmp/o2.json" >/dev/null
check "seeded sampling: answer = llava generate --sample-seed's" '[ "$(content "$tmp/o2.json")" = "$(cat "$tmp/gen2.txt")" ]'

body "$tmp/r3.json" "$Q1" ',"temperature":0,"max_tokens":24,"stream":true,"stream_options":{"include_usage":true}' \
  "$M/example.png"
check "stream: 200, text/event-stream" \
  '[ "$(post "$tmp/r3.json" "$tmp/o3.sse" -D "$tmp/o3.h")" = 200 ] && grep -qi "^content-type: text/event-stream" "$tmp/o3.h"'
check "stream: deltas concatenate to llava generate's answer" '[ "$(stream_text "$tmp/o3.sse")" = "$(cat "$tmp/gen1.txt")" ]'
check "stream: role first, finish_reason length, usage chunk, then [DONE]" \
  '[ "$(sed -n "s/^data: //p" "$tmp/o3.sse" | head -1 | jq -r .choices[0].delta.role)" = assistant ] &&
   sed -n "s/^data: //p" "$tmp/o3.sse" | grep -v DONE | jq -s -e "map(select(.choices[0].finish_reason == \"length\")) | length == 1" >/dev/null &&
   [ "$(sed -n "s/^data: //p" "$tmp/o3.sse" | grep -v DONE | tail -1 | jq -c "[.usage.prompt_tokens, .usage.completion_tokens]")" = "[$pre,$((dec + 1))]" ] &&
   [ "$(tail -2 "$tmp/o3.sse" | head -1)" = "data: [DONE]" ]'

# stop strings: the answer ends before the first one, finish_reason stop
first_word=$(cut -c1-4 "$tmp/gen1.txt" | sed 's/ .*//')
stop=$(cut -c9-11 "$tmp/gen1.txt")
body "$tmp/r4.json" "$Q1" ",\"temperature\":0,\"max_tokens\":24,\"stop\":[$(jq -Rn --arg t "$stop" '$t')]" "$M/example.png"
post "$tmp/r4.json" "$tmp/o4.json" >/dev/null
expect=$(awk -v s="$stop" '{ i = index($0, s); print substr($0, 1, i - 1) }' "$tmp/gen1.txt" | sed 's/[[:space:]]*$//')
check "stop string: answer cut before it, finish_reason stop" \
  '[ "$(content "$tmp/o4.json")" = "$expect" ] && [ "$(jq -r .choices[0].finish_reason "$tmp/o4.json")" = stop ]'

# a system message replaces the template's system prompt (LLaVA's conv.system)
SYS="A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions."
sysreq() { jq -c --arg s "$1" '.messages = [{role: "system", content: $s}] + .messages' "$tmp/r1.json" >"$tmp/s.json"; }
sysreq "$SYS"; post "$tmp/s.json" "$tmp/s1.json" >/dev/null
check "system message = the template's own text: the same answer and prompt_tokens" \
  '[ "$(content "$tmp/s1.json")" = "$(cat "$tmp/gen1.txt")" ] && [ "$(jq .usage.prompt_tokens "$tmp/s1.json")" = "$pre" ]'
sysreq "Answer briefly."; post "$tmp/s.json" "$tmp/s2.json" >/dev/null
check "another system message: a shorter prompt" '[ "$(jq .usage.prompt_tokens "$tmp/s2.json")" -lt "$pre" ]'

# ---- 16 concurrent clients get their alone-answers ------------------------------------
for i in $(seq 0 15); do
  extra=",\"max_tokens\":$((12 + i)),\"temperature\":0"
  [ $((i % 2)) -eq 1 ] && extra=",\"max_tokens\":$((12 + i)),\"temperature\":0.8,\"seed\":$i"
  if [ $((i % 4)) -eq 0 ]; then body "$tmp/c$i.json" "Question $i: what is here?" "$extra" "$M/example.png"
  else body "$tmp/c$i.json" "Question $i: tell me about cats." "$extra"; fi
  post "$tmp/c$i.json" "$tmp/alone$i.json" >/dev/null
done
clients=()
for i in $(seq 0 15); do post "$tmp/c$i.json" "$tmp/conc$i.json" >"$tmp/conc$i.code" & clients+=($!); done
for p in "${clients[@]}"; do wait "$p"; done
same=0
for i in $(seq 0 15); do
  [ "$(cat "$tmp/conc$i.code")" = 200 ] && [ "$(content "$tmp/conc$i.json")" = "$(content "$tmp/alone$i.json")" ] &&
    [ -n "$(content "$tmp/alone$i.json")" ] && same=$((same + 1))
done
check "16 concurrent clients: each gets its alone-answer ($same/16)" '[ $same -eq 16 ]'
curl -s "$(URL /health)" >"$tmp/health.json"
check "they were batched (largest batch $(jq .largest_batch "$tmp/health.json") > 1)" \
  '[ "$(jq .largest_batch "$tmp/health.json")" -gt 1 ]'

# ---- bad input: the right 4xx, a message naming the field, and the server goes on -------
bad() {  # bad NAME STATUS PARAM|- CODE|- BODYFILE
  local code
  code=$(post "$5" "$tmp/bad.json")
  local ok=1
  [ "$code" = "$2" ] || ok=0
  jq -e '.error.message | length > 0' "$tmp/bad.json" >/dev/null 2>&1 || ok=0
  [ "$3" = - ] || [ "$(jq -r .error.param "$tmp/bad.json")" = "$3" ] || ok=0
  [ "$4" = - ] || [ "$(jq -r .error.code "$tmp/bad.json")" = "$4" ] || ok=0
  check "bad input: $1 -> $2${3:+ ($3)}" '[ $ok = 1 ]' || { echo "  got $code: $(cat "$tmp/bad.json")"; }
}
printf '{"messages": [' >"$tmp/b.json"; bad "malformed JSON" 400 null - "$tmp/b.json"
printf '[1, 2]' >"$tmp/b.json"; bad "body not an object" 400 null - "$tmp/b.json"
printf '{"model": "x"}' >"$tmp/b.json"; bad "no messages" 400 messages - "$tmp/b.json"
printf '{"messages": "hi"}' >"$tmp/b.json"; bad "messages not an array" 400 messages - "$tmp/b.json"
printf '{"messages": [{"role": "user", "content": 5}]}' >"$tmp/b.json"; bad "content a number" 400 'messages[0].content' - "$tmp/b.json"
printf '{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}' >"$tmp/b.json"; bad "temperature a string" 400 temperature - "$tmp/b.json"
printf '{"messages": [{"role": "user", "content": "hi"}], "temperature": 3}' >"$tmp/b.json"; bad "temperature out of range" 400 temperature - "$tmp/b.json"
printf '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1.5}' >"$tmp/b.json"; bad "max_tokens not an integer" 400 max_tokens - "$tmp/b.json"
printf '{"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}' >"$tmp/b.json"; bad "stream not a boolean" 400 stream - "$tmp/b.json"
printf '{"messages": [{"role": "wizard", "content": "hi"}]}' >"$tmp/b.json"; bad "unknown role" 400 'messages[0].role' - "$tmp/b.json"
printf '{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}' >"$tmp/b.json"; bad "roles not alternating" 400 'messages[1].role' - "$tmp/b.json"
printf '{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]}' >"$tmp/b.json"; bad "system message not first" 400 'messages[1].role' - "$tmp/b.json"
printf '{"messages": [{"role": "system", "content": "s"}]}' >"$tmp/b.json"; bad "only a system message" 400 messages - "$tmp/b.json"
printf '{"messages": [{"role": "user", "content": [{"type": "audio"}]}]}' >"$tmp/b.json"; bad "unknown content part" 400 'messages[0].content[0]' - "$tmp/b.json"
printf '{"messages": [{"role": "user", "content": "hi"}], "n": 2}' >"$tmp/b.json"; bad "n > 1" 400 n - "$tmp/b.json"
img='{"type":"image_url","image_url":{"url":"data:image/png;base64,'"$(base64 -w0 "$M/example.png")"'"}}'
printf '{"messages": [{"role": "user", "content": [%s, %s, {"type":"text","text":"q"}]}]}' "$img" "$img" >"$tmp/b.json"
bad "two images" 400 'messages[0].content[1]' too_many_images "$tmp/b.json"
printf '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": [%s]}]}' "$img" >"$tmp/b.json"
bad "image after the first question" 400 'messages[2].content[0]' image_not_in_first_message "$tmp/b.json"
printf '{"messages": [{"role": "user", "content": [{"type":"image_url","image_url":{"url":"data:image/png;base64,%s"}}]}]}' \
  "$(base64 -w0 "$SRC/tests/fixtures/images/bad/truncated.png")" >"$tmp/b.json"
bad "undecodable image" 400 'messages[0].content[0].image_url.url' invalid_image "$tmp/b.json"
printf '{"messages": [{"role": "user", "content": [{"type":"image_url","image_url":{"url":"data:image/png;base64,%s"}}]}]}' \
  "$(base64 -w0 "$SRC/tests/fixtures/images/bad/bomb.png")" >"$tmp/b.json"
bad "oversized image (20000 x 20000)" 400 'messages[0].content[0].image_url.url' invalid_image "$tmp/b.json"
printf '{"messages": [{"role": "user", "content": [{"type":"image_url","image_url":{"url":"data:image/png;base64,@@@@"}}]}]}' >"$tmp/b.json"
bad "malformed base64" 400 'messages[0].content[0].image_url.url' invalid_image_url "$tmp/b.json"
printf '{"messages": [{"role": "user", "content": [{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}' >"$tmp/b.json"
bad "network URL" 400 'messages[0].content[0].image_url.url' invalid_image_url "$tmp/b.json"
printf '{"messages": [{"role": "user", "content": [{"type":"image_url","image_url":{"url":"file:///etc/passwd"}}]}]}' >"$tmp/b.json"
bad "file URL without --image-root" 400 'messages[0].content[0].image_url.url' invalid_image_url "$tmp/b.json"
body "$tmp/b.json" "$(for i in $(seq 400); do printf 'cat dog '; done)"
bad "prompt longer than the context" 400 messages context_length_exceeded "$tmp/b.json"
printf '{"messages": [{"role": "user", "content": "<image> what?"}]}' >"$tmp/b.json"; bad "<image> without an image" 400 messages - "$tmp/b.json"
check "unknown route: 404" '[ "$(curl -s -o /dev/null -w "%{http_code}" "$(URL /v2/nothing)")" = 404 ]'
check "GET /v1/chat/completions: 405" '[ "$(curl -s -o /dev/null -w "%{http_code}" "$(URL /v1/chat/completions)")" = 405 ]'
check "after all that: /health ok, nothing running or queued" \
  '[ "$(curl -s "$(URL /health)" | jq -c "[.status, .queued, .running]")" = "[\"ok\",0,0]" ]'
post "$tmp/r1.json" "$tmp/o1b.json" >/dev/null
check "after all that: the same answer as before" '[ "$(content "$tmp/o1b.json")" = "$(cat "$tmp/gen1.txt")" ]'
check "/v1/models lists the model" '[ "$(curl -s "$(URL /v1/models)" | jq -r ".data[0].id")" = tiny_llava_text ]'
check "/v1/models/ID: the model, 404 model_not_found for another" \
  '[ "$(curl -s "$(URL /v1/models/tiny_llava_text)" | jq -r .id)" = tiny_llava_text ] &&
   [ "$(curl -s "$(URL /v1/models/gpt-4)" | jq -r .error.code)" = model_not_found ]'
check "GET / serves the chat page" 'curl -s "$(URL /)" | grep -q "<title>llava.c chat</title>"'
check "one log line per request (id, status, tokens, time)" \
  'grep -q "^\[serve\] req [0-9]* POST /v1/chat/completions 200 [0-9.]* ms prompt=$pre completion=$((dec + 1)) finish=length" "$tmp/main.log"'
kill -TERM "$SPID"; wait "$SPID"; rc=$?
check "main server: SIGTERM when idle exits 0" '[ $rc -eq 0 ]'

# ---- limits: body size, queue, disconnect ---------------------------------------------
start small --max-batch 1 --max-queue 1 --max-body-mb 1 --step-delay-ms 20
head -c 1500000 /dev/zero | tr '\0' 'a' | jq -Rs '{messages: [{role: "user", content: .}]}' >"$tmp/big.json"
check "body over --max-body-mb: 413 request_too_large" \
  '[ "$(post "$tmp/big.json" "$tmp/big.out")" = 413 ] && [ "$(jq -r .error.code "$tmp/big.out")" = request_too_large ]'
check "chunked body over --max-body-mb (no Content-Length): 413" \
  '[ "$(post "$tmp/big.json" "$tmp/big.out" -H "Transfer-Encoding: chunked")" = 413 ]'
body "$tmp/long.json" "$Q2" ',"max_tokens":400,"ignore_eos":true,"stream":true'
curl -sN -H 'Content-Type: application/json' --data-binary @"$tmp/long.json" "$(URL /v1/chat/completions)" >"$tmp/long.sse" &
long=$!
for _ in $(seq 300); do grep -q '"content":"[^"]' "$tmp/long.sse" 2>/dev/null && break; sleep 0.05; done
body "$tmp/q.json" "$Q2" ',"max_tokens":5,"temperature":0'
post "$tmp/q.json" "$tmp/queued.json" >"$tmp/queued.code" &
queued=$!
for _ in $(seq 300); do [ "$(curl -s "$(URL /health)" | jq .queued)" = 1 ] && break; sleep 0.05; done
check "queue overflow: 503 queue_full with Retry-After" \
  '[ "$(post "$tmp/q.json" "$tmp/full.json" -D "$tmp/full.h")" = 503 ] && [ "$(jq -r .error.code "$tmp/full.json")" = queue_full ] && grep -qi "^retry-after:" "$tmp/full.h"'
kill "$long"; wait "$long" 2>/dev/null
wait "$queued"
check "a client that disconnects frees its slot: the queued request then runs" \
  '[ "$(cat "$tmp/queued.code")" = 200 ] && [ "$(jq .usage.completion_tokens "$tmp/queued.json")" -ge 1 ]'
check "the disconnected stream was cancelled before its 400 tokens" \
  'grep -q "client gone after" "$tmp/small.log" && [ "$(curl -s "$(URL /health)" | jq .tokens)" -lt 400 ]'

# ---- SIGTERM drains a running stream ----------------------------------------------------
body "$tmp/drain.json" "$Q2" ',"max_tokens":40,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}'
curl -sN -H 'Content-Type: application/json' --data-binary @"$tmp/drain.json" "$(URL /v1/chat/completions)" >"$tmp/drain.sse" &
drain=$!
for _ in $(seq 300); do grep -q '"content":"[^"]' "$tmp/drain.sse" 2>/dev/null && break; sleep 0.05; done
kill -TERM "$SPID"
wait "$drain"
wait "$SPID"; rc=$?
check "SIGTERM: the running stream finishes (40 tokens, [DONE])" \
  '[ "$(sed -n "s/^data: //p" "$tmp/drain.sse" | grep -v DONE | tail -1 | jq .usage.completion_tokens)" = 40 ] && grep -q "^data: \[DONE\]" "$tmp/drain.sse"'
check "SIGTERM: then the server exits 0 and the port is closed" \
  '[ $rc -eq 0 ] && ! curl -s -m 2 "$(URL /health)" >/dev/null'

# ---- auth and --image-root --------------------------------------------------------------
mkdir -p "$tmp/root/sub" && cp "$M/example.png" "$tmp/root/sub/cat.png" && echo secret >"$tmp/outside.txt"
# --max-queue 0: a free slot still takes a request (only waiting beyond the slots is refused)
LLAVA_TEST_KEY=sk-test-123 start auth --api-key-env LLAVA_TEST_KEY --image-root "$tmp/root" --max-batch 2 --max-queue 0
body "$tmp/a.json" "$Q2" ',"max_tokens":4'
check "auth: 401 invalid_api_key without the key" \
  '[ "$(post "$tmp/a.json" "$tmp/a.out")" = 401 ] && [ "$(jq -r .error.code "$tmp/a.out")" = invalid_api_key ]'
check "auth: 401 with a wrong key" '[ "$(post "$tmp/a.json" "$tmp/a.out" -H "Authorization: Bearer sk-wrong")" = 401 ]'
check "auth: 200 with the key" '[ "$(post "$tmp/a.json" "$tmp/a.out" -H "Authorization: Bearer sk-test-123")" = 200 ]'
fileq() { printf '{"messages":[{"role":"user","content":[{"type":"text","text":"%s"},{"type":"image_url","image_url":{"url":"%s"}}]}],"temperature":0,"max_tokens":24}' "$Q1" "$1" >"$tmp/f.json"; }
fileq "file://$tmp/root/sub/cat.png"
check "image-root: a file inside gives llava generate's answer" \
  '[ "$(post "$tmp/f.json" "$tmp/f.out" -H "Authorization: Bearer sk-test-123")" = 200 ] && [ "$(content "$tmp/f.out")" = "$(cat "$tmp/gen1.txt")" ]'
fileq "sub/cat.png"
check "image-root: a relative path inside works too" '[ "$(post "$tmp/f.json" "$tmp/f.out" -H "Authorization: Bearer sk-test-123")" = 200 ]'
for u in "file://$tmp/root/../outside.txt" "../outside.txt" "/etc/passwd" "sub/../../outside.txt"; do
  fileq "$u"
  check "image-root: $u refused (400 invalid_image_url)" \
    '[ "$(post "$tmp/f.json" "$tmp/f.out" -H "Authorization: Bearer sk-test-123")" = 400 ] && [ "$(jq -r .error.code "$tmp/f.out")" = invalid_image_url ]'
done
ln -s "$tmp/outside.txt" "$tmp/root/link.png"; fileq "link.png"
check "image-root: a symlink out of the root refused" '[ "$(post "$tmp/f.json" "$tmp/f.out" -H "Authorization: Bearer sk-test-123")" = 400 ]'
kill -TERM "$SPID"; wait "$SPID"

# ---- --adapter: base + LoRA, as llava generate --adapter ---------------------------------
# lr 2e-2 for 4 steps moves the adapters far enough that the greedy answer changes.
"$LLAVA" train --set model="$M" --set data=synthetic:16 --set max_length=96 --set lr=2e-2 --set projector_lr=1e-2 \
  --set log_every=100 --set seed=5 --set stage=2 --set lora_r=4 --set lora_alpha=8 --set micro_batch=4 \
  --set max_steps=4 --set threads=1 --set output_dir="$tmp/lora" >"$tmp/lora_train.log" 2>&1
AD=$tmp/lora/final
check "a LoRA adapter to serve (llava train, 4 steps)" '[ -s "$AD/adapter_model.safetensors" ]' || cat "$tmp/lora_train.log"
"$LLAVA" generate --model "$M" --adapter "$AD" --threads 1 --image "$M/example.png" --prompt "$Q1" --max-new-tokens 24 \
  >"$tmp/genl1.txt" 2>/dev/null
"$LLAVA" generate --model "$M" --adapter "$AD" --threads 1 --prompt "$Q2" --max-new-tokens 20 --temperature 0.9 \
  --top-p 0.95 --top-k 50 --sample-seed 7 >"$tmp/genl2.txt" 2>/dev/null
check "the adapter changes llava generate's answer (else the checks below prove nothing)" \
  '[ -s "$tmp/genl1.txt" ] && ! cmp -s "$tmp/genl1.txt" "$tmp/gen1.txt"'
start lora --adapter "$AD" --max-batch 2
post "$tmp/r1.json" "$tmp/l1.json" >/dev/null
check "adapter: image question = llava generate --adapter's answer" \
  '[ "$(content "$tmp/l1.json")" = "$(cat "$tmp/genl1.txt")" ]' || { content "$tmp/l1.json"; cat "$tmp/genl1.txt"; }
post "$tmp/r2.json" "$tmp/l2.json" >/dev/null
check "adapter: seeded sampling = llava generate --adapter --sample-seed's" \
  '[ "$(content "$tmp/l2.json")" = "$(cat "$tmp/genl2.txt")" ]'
post "$tmp/r3.json" "$tmp/l3.sse" >/dev/null
check "adapter: stream deltas concatenate to it" '[ "$(stream_text "$tmp/l3.sse")" = "$(cat "$tmp/genl1.txt")" ]'
check "adapter: /v1/models names the adapter's folder (lora/final)" \
  '[ "$(curl -s "$(URL /v1/models)" | jq -r ".data[0].id")" = lora/final ]'
check "adapter: the start line names it" 'grep -q "listening on .*adapter $AD" "$tmp/lora.log"'
kill -TERM "$SPID"; wait "$SPID"; rc=$?
check "adapter server: SIGTERM exits 0" '[ $rc -eq 0 ]'
"$LLAVA" serve --model "$M" --adapter "$SRC/tests/fixtures/lora/tiny_llava15/adapter" --port 0 \
  --port-file "$tmp/bad.port" --threads 1 >/dev/null 2>"$tmp/badad.log"; rc=$?
check "an adapter of another base: exit 2 at start naming the tensor, no port opened" \
  '[ $rc -eq 2 ] && grep -q "tensor base_model.model.model.language_model.layers.0.[a-z_.]*lora_[AB].weight has shape" "$tmp/badad.log" && [ ! -e "$tmp/bad.port" ]' \
  || cat "$tmp/badad.log"
"$LLAVA" serve --model "$M" --adapter "$tmp/no_such_adapter" --port 0 --threads 1 >/dev/null 2>"$tmp/noad.log"; rc=$?
check "a missing adapter folder: exit 2 naming adapter_config.json" \
  '[ $rc -eq 2 ] && grep -q "no_such_adapter/adapter_config.json" "$tmp/noad.log"'
exit $fail
