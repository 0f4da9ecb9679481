#!/usr/bin/env bash
# `llava demo` end to end (the embedded default README's first command runs):
# loss falls in both stages, held-out accuracy far above chance, the
# blank-picture control near chance. No timing assertion: how long the demo
# takes depends on the machine's load (docs/performance.md has the figures).
set -u
llava=$1
tmp=$(mktemp -d /tmp/llava_demo.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
if ! "$llava" demo --out "$tmp/demo" > "$tmp/log" 2>&1; then
  echo "FAIL: llava demo failed"; cat "$tmp/log"; exit 1
fi
grep -A4 "colour" "$tmp/log"
s=$tmp/demo/summary.json
val() { grep -o "\"$1\":[^,}]*" "$s" | cut -d: -f2 | tr -d ' '; }
failures=0
check() { if awk "BEGIN {exit !($2)}"; then echo "ok: $1"; else echo "FAIL: $1 ($2)"; failures=$((failures + 1)); fi; }
check "stage 1 loss falls" "$(val stage1_loss_last) < $(val stage1_loss_first) - 0.2"
check "stage 2 loss falls" "$(val stage2_loss_last) < $(val stage2_loss_first) / 2"
check "held-out accuracy far above chance" "$(val accuracy) >= 0.8"
check "colour questions answered" "$(val accuracy_color) >= 0.9"
check "blank-picture control near chance" "$(val blank_accuracy) <= 0.45"
# The demo's shard folders train directly (data = a shard folder) ...
d=$tmp/demo
if "$llava" train --set model="$d/init" --set data="$d/stage2/data" --set max_steps=3 --set micro_batch=4 \
     --set output_dir="$tmp/shards_run" --set log_every=1 > "$tmp/shards.log" 2>&1 && [ -d "$tmp/shards_run/final" ]; then
  echo "ok: llava train on a shard folder"
else
  echo "FAIL: llava train on a shard folder"; cat "$tmp/shards.log"; failures=$((failures + 1))
fi
# ... and shards prepared for another model are refused by name.
src=$(cd "$(dirname "$0")/.." && pwd)
out=$("$llava" train --set model="$src/tests/fixtures/tiny_llava15" --set data="$d/stage2/data" --set max_steps=1 \
      --set output_dir="$tmp/mismatch" 2>&1); rc=$?
if [ $rc -eq 2 ] && echo "$out" | grep -q "prepared for images of 32 px, 16 tokens per image, image token 585"; then
  echo "ok: shards of another model refused"
else
  echo "FAIL: shards of another model: rc $rc: $out"; failures=$((failures + 1))
fi
echo "$failures failures"
[ $failures -eq 0 ]
