#!/usr/bin/env bash
# A bounded load run against `llava serve` on loopback: N requests from C
# concurrent clients (curl), then the same N requests one at a time, on the
# same server and model. Every request asks a different question about the
# same image, greedy, with ignore_eos and a fixed max_tokens, so each must
# come back 200 with exactly max_tokens tokens ("lost" counts those that do
# not). Prints requests/s, p50/p99 latency and generated tokens/s for both.
# usage: bash scripts/serve_load.sh LLAVA MODEL_DIR IMAGE [N=200] [C=16] [MAX_TOKENS=32] [MAX_BATCH=16]
set -euo pipefail
LLAVA=$1 M=$2 IMG=$3 N=${4:-200} C=${5:-16} T=${6:-32} B=${7:-16}
tmp=$(mktemp -d /tmp/llava_serve_load.XXXXXX)
"$LLAVA" serve --model "$M" --port 0 --port-file "$tmp/port" --max-batch "$B" --max-queue "$N" 2>"$tmp/serve.log" &
spid=$!
trap 'kill $spid 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 600); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || { echo "serve_load: the server did not start:" >&2; cat "$tmp/serve.log" >&2; exit 1; }
export URL="http://127.0.0.1:$(cat "$tmp/port")/v1/chat/completions" TMPD=$tmp T
b64=$(base64 -w0 "$IMG")
for i in $(seq "$N"); do
  printf '{"messages":[{"role":"user","content":[{"type":"text","text":"Question %d: what is in the picture?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,%s"}}]}],"temperature":0,"max_tokens":%d,"ignore_eos":true}' \
    "$i" "$b64" "$T" >"$tmp/req$i.json"
done
one() {  # one I PHASE: a request; appends "code seconds tokens" to PHASE.txt
  local r
  r=$(curl -s -o "$TMPD/out.$2.$1" -w '%{http_code} %{time_total}' -H 'Content-Type: application/json' \
    --data-binary @"$TMPD/req$1.json" "$URL")
  echo "$r $(jq -r '.usage.completion_tokens // 0' "$TMPD/out.$2.$1" 2>/dev/null || echo 0)" >>"$TMPD/$2.txt"
  rm -f "$TMPD/out.$2.$1"
}
export -f one
one 1 warm; one 2 warm
phase() {  # phase NAME CLIENTS
  local t0 t1
  t0=$(date +%s.%N)
  seq "$N" | xargs -P "$2" -I{} bash -c 'one {} '"$1"
  t1=$(date +%s.%N)
  sort -k2 -g "$tmp/$1.txt" | awk -v n="$N" -v t="$T" -v wall="$(echo "$t1 - $t0" | bc -l)" -v name="$1" -v c="$2" '
    { lat[NR] = $2; if ($1 == 200 && $3 == t) { ok++; tok += $3 } }
    END {
      p50 = lat[int((NR + 1) * 0.50)]; p99 = lat[int(NR * 0.99 + 0.999)]
      printf "%-10s clients %2d: %d requests in %.1f s, %.2f requests/s, latency p50 %.3f s p99 %.3f s, %.1f generated tokens/s, lost %d\n",
             name, c, NR, wall, NR / wall, p50, p99, tok / wall, n - ok
    }'
}
phase concurrent "$C"
health=$(curl -s "${URL%/v1/chat/completions}/health")
phase sequential 1
echo "largest batch during the concurrent phase: $(jq .largest_batch <<<"$health") (--max-batch $B)"
