#!/usr/bin/env bash
# Every shipped config validates, every run-config key is documented in
# docs/configs.md, and bad configs are refused by name.
set -u
llava=$1
src=$(cd "$2" && pwd)
failures=0
for f in "$src"/configs/*.json; do
  if ! (cd "$src" && "$llava" train --config "$f" --print-config > /dev/null); then
    echo "FAIL: $f does not validate"; failures=$((failures + 1))
  fi
done
for key in $("$llava" train --help | sed -n '/^keys:/,$p' | tail -n +2 | awk '{print $1}'); do
  if ! grep -q "| \`$key\` |" "$src/docs/configs.md"; then
    echo "FAIL: key $key is not documented in docs/configs.md"; failures=$((failures + 1))
  fi
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf '{"model": "m", "data": "d", "learning_rate": 1}' > "$tmp/bad.json"
out=$("$llava" train --config "$tmp/bad.json" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q 'unknown key "learning_rate"' || { echo "FAIL: unknown key: rc $rc: $out"; failures=$((failures + 1)); }
printf '{"model": "m", "data": "d", "lr": "fast"}' > "$tmp/bad2.json"
out=$("$llava" train --config "$tmp/bad2.json" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q '"lr" must be a number' || { echo "FAIL: wrong type: rc $rc: $out"; failures=$((failures + 1)); }
printf '{"model": "m",\n "data": "d",,}' > "$tmp/bad3.json"
out=$("$llava" train --config "$tmp/bad3.json" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q 'bad3.json:2:' || { echo "FAIL: malformed JSON: rc $rc: $out"; failures=$((failures + 1)); }
out=$("$llava" train --set data=d 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q 'no model' || { echo "FAIL: missing model: rc $rc: $out"; failures=$((failures + 1)); }
echo "$failures failures"
[ $failures -eq 0 ]
