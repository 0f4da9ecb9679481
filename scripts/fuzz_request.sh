#!/usr/bin/env bash
# libFuzzer on the request JSON of `llava serve` (tests/fuzz/fuzz_request.c):
# builds the target with clang (-fsanitize=fuzzer,address,undefined) and runs
# it for SECONDS (default 60) from the seed corpus; new inputs it finds go to
# a scratch corpus, crashes to crash-* files in the current folder.
# usage: bash scripts/fuzz_request.sh [SECONDS]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
out=$(mktemp -d /tmp/llava_fuzz_request.XXXXXX)
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -D_POSIX_C_SOURCE=200809L \
  -D_DEFAULT_SOURCE -I"$src" "$src/tests/fuzz/fuzz_request.c" "$src/serve/request.c" "$src/common/util.c" \
  -lcjson -lm -o "$out/fuzz_request"
mkdir -p "$out/corpus"
cp "$src"/tests/fuzz/corpus_request/* "$out/corpus/"
"$out/fuzz_request" -max_total_time="$secs" -max_len=4096 "$out/corpus"
echo "fuzz_request: ran ${secs} s; corpus grew to $(ls "$out/corpus" | wc -l) inputs in $out/corpus"
