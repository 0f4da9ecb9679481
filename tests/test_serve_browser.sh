#!/usr/bin/env bash
# The chat page in a real browser: headless Chromium driven over WebDriver
# (chromedriver; the W3C protocol spoken with curl + jq) opens `llava serve`'s
# page, uploads an image, asks a question and watches the answer stream in:
# the assistant's text must be seen growing (partial answers before the
# end), and the final text must be `llava generate`'s answer for the same
# image, question and settings; Stop on a second answer frees the server's
# slot. A screenshot of the page is written.
# Chromium and chromedriver come from scripts/install_deps.sh (Debian's
# chromium + chromium-driver); without them the test is skipped (exit 77).
#
# usage: test_serve_browser.sh LLAVA SOURCE_DIR BUILD_DIR
# env:   SERVE_MODEL (default the tiny fixture), SERVE_IMAGE, SERVE_QUESTION,
#        SERVE_TEMPLATE, SERVE_MIN_PARTIALS (default 2), SCREENSHOT (default
#        BUILD_DIR/serve_page.png)
set -u
LLAVA=$1 SRC=$2 BUILD=$3
M=${SERVE_MODEL:-$SRC/tests/fixtures/tiny_llava_text}
IMG=${SERVE_IMAGE:-$SRC/tests/fixtures/tiny_llava_text/example.png}
Q=${SERVE_QUESTION:-What is shown in this image?}
TEMPLATE=${SERVE_TEMPLATE:-vicuna_v1}
SHOT=${SCREENSHOT:-$BUILD/serve_page.png}
MIN_PARTIALS=${SERVE_MIN_PARTIALS:-2}  # a one-token answer (the demo model says "B") streams as one piece
CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
DRIVER=$(command -v chromedriver || true)
if [ -z "$CHROME" ] || [ -z "$DRIVER" ]; then
  echo "SKIP no chromium/chromedriver (scripts/install_deps.sh installs them)"; exit 77
fi
tmp=$(mktemp -d /tmp/llava_serve_browser.XXXXXX)
pids=()
cleanup() {
  [ -n "${SID:-}" ] && curl -s -X DELETE "$WD/session/$SID" >/dev/null
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
free_port() { for p in $(shuf -i 20000-60000 -n 50); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }; done; }

MAXTOK=24
"$LLAVA" generate --model "$M" --template "$TEMPLATE" --image "$IMG" --prompt "$Q" --max-new-tokens $MAXTOK \
  --temperature 0 >"$tmp/expected.txt" 2>/dev/null || { echo "FAIL llava generate"; exit 1; }

# A slow step (--step-delay-ms) so that the stream is seen arriving piece by piece.
"$LLAVA" serve --model "$M" --template "$TEMPLATE" --port 0 --port-file "$tmp/port" --step-delay-ms 60 \
  2>"$tmp/serve.log" &
pids+=($!)
for _ in $(seq 300); do [ -s "$tmp/port" ] && break; sleep 0.1; done
PORT=$(cat "$tmp/port" 2>/dev/null)
[ -n "$PORT" ] || { echo "FAIL the server did not start"; cat "$tmp/serve.log"; exit 1; }

DPORT=$(free_port)
"$DRIVER" --port="$DPORT" >"$tmp/driver.log" 2>&1 &
pids+=($!)
WD=http://127.0.0.1:$DPORT
for _ in $(seq 100); do curl -s "$WD/status" | jq -e .value.ready >/dev/null 2>&1 && break; sleep 0.1; done
# wd METHOD PATH [JSON]: one WebDriver command; prints its "value".
wd() { curl -s -X "$1" -H 'Content-Type: application/json' ${3:+--data-binary "$3"} "$WD$2" | jq -c .value; }
caps=$(jq -nc --arg bin "$CHROME" '{capabilities: {alwaysMatch: {"goog:chromeOptions": {binary: $bin,
  args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,860"]}}}}')
SID=$(wd POST /session "$caps" | jq -r .sessionId)
check "chromium started under chromedriver" '[ -n "$SID" ] && [ "$SID" != null ]' || { cat "$tmp/driver.log"; exit 1; }
wd POST "/session/$SID/url" "{\"url\": \"http://127.0.0.1:$PORT/\"}" >/dev/null
el() { wd POST "/session/$SID/element" "{\"using\": \"css selector\", \"value\": \"$1\"}" | jq -r '.[]'; }
js() { wd POST "/session/$SID/execute/sync" "$(jq -nc --arg s "$1" '{script: $s, args: []}')"; }
name=$(curl -s "http://127.0.0.1:$PORT/v1/models" | jq -c '.data[0].id')
check "the page loads and names the model ($name)" \
  'for _ in $(seq 50); do [ "$(js "return document.getElementById(\"model\").textContent")" = "$name" ] && break; sleep 0.1; done;
   [ "$(js "return document.getElementById(\"model\").textContent")" = "$name" ]'

# Upload the image through the file input, set greedy decoding, ask.
wd POST "/session/$SID/element/$(el '#file')/value" "$(jq -nc --arg f "$(realpath "$IMG")" '{text: $f}')" >/dev/null
check "the uploaded image is previewed" \
  'for _ in $(seq 50); do [ "$(js "return document.getElementById(\"preview\").src.startsWith(\"data:image/\")")" = true ] && break; sleep 0.1; done;
   [ "$(js "return document.getElementById(\"preview\").src.startsWith(\"data:image/\")")" = true ]'
js "const t = document.getElementById('temperature'); t.value = '0'; t.dispatchEvent(new Event('input')); document.getElementById('max_tokens').value = '$MAXTOK'; return 1" >/dev/null
wd POST "/session/$SID/element/$(el '#prompt')/value" "$(jq -nc --arg t "$Q" '{text: $t}')" >/dev/null
wd POST "/session/$SID/element/$(el '#send')/click" '{}' >/dev/null

# Watch the assistant's bubble: record every distinct text seen before it is done.
probe='const b = document.querySelector(".msg.assistant"); return b ? [b.classList.contains("done"), b.querySelector(".text").textContent] : [false, null]'
: >"$tmp/seen.txt"
final=
for _ in $(seq 600); do
  v=$(js "$probe")
  if [ "$(jq -r '.[0]' <<<"$v")" = true ]; then final=$(jq -r '.[1]' <<<"$v"); break; fi
  t=$(jq -r '.[1] // empty' <<<"$v")
  [ -n "$t" ] && ! grep -qxF -- "$t" "$tmp/seen.txt" && printf '%s\n' "$t" >>"$tmp/seen.txt"
  sleep 0.05
done
partials=$(grep -c . "$tmp/seen.txt")
check "streamed text appeared piece by piece ($partials partial answers seen before the end)" '[ "$partials" -ge "$MIN_PARTIALS" ]'
check "the final answer is llava generate's" '[ "$final" = "$(cat "$tmp/expected.txt")" ]' \
  || { echo "  page:     $final"; echo "  expected: $(cat "$tmp/expected.txt")"; }
check "no error shown" '[ "$(js "return document.getElementById(\"error\").textContent")" = "\"\"" ]'

# Stop: a second question, stopped once its answer has begun; the server
# frees the slot (the page's fetch is aborted, the connection closes).
js "document.getElementById('max_tokens').value = '200'; return 1" >/dev/null
wd POST "/session/$SID/element/$(el '#prompt')/value" '{"text": "And what else?"}' >/dev/null
wd POST "/session/$SID/element/$(el '#send')/click" '{}' >/dev/null
probe2='const b = document.querySelectorAll(".msg.assistant"); return b.length > 1 ? b[1].querySelector(".text").textContent.length : 0'
for _ in $(seq 200); do [ "$(js "$probe2")" -gt 0 ] 2>/dev/null && break; sleep 0.05; done
wd POST "/session/$SID/element/$(el '#stop')/click" '{}' >/dev/null
running=1
for _ in $(seq 60); do running=$(curl -s "http://127.0.0.1:$PORT/health" | jq .running); [ "$running" = 0 ] && break; sleep 0.1; done
check "Stop: the answer stops and the server frees its slot" \
  '[ "$running" = 0 ] && [ "$(js "return document.getElementById(\"send\").disabled")" = false ] && grep -q "client gone" "$tmp/serve.log"'
# The screenshot shows the first exchange.
js "const b = document.querySelectorAll(\".msg\"); for (let i = 2; i < b.length; i++) b[i].remove(); return 1" >/dev/null
js "window.scrollTo(0, 0); return 1" >/dev/null
wd GET "/session/$SID/screenshot" | jq -r . | base64 -d >"$SHOT"
check "screenshot written ($SHOT)" '[ "$(head -c 4 "$SHOT" | tail -c 3)" = PNG ]'
exit $fail
