#!/usr/bin/env bash
# Every fuzz target (tests/fuzz/fuzz_*.c) over its seed corpus from the
# fixtures and over its regression inputs (tests/fuzz/regressions/<target>,
# what scripts/fuzz.sh once found): none may crash, leak or trip the
# sanitizers (the replay binaries are built against the ASan core when the
# build has it). Fuzzing itself is scripts/fuzz.sh (clang, libFuzzer).
# usage: test_fuzz_replay.sh LLAVA SOURCE_DIR BUILD_DIR
set -u
src=$2
build=$3
. "$src/scripts/fuzz_seeds.sh"
failures=0
for t in $FUZZ_TARGETS; do
  bin=$build/tests/fuzz_${t}_replay
  # shellcheck disable=SC2046
  if out=$("$bin" $(fuzz_seeds "$t") 2>&1); then
    echo "ok: fuzz_$t: $out"
  else
    echo "FAIL: fuzz_$t:"; echo "$out" | tail -40; failures=$((failures + 1))
  fi
done
echo "$failures failures"
[ $failures -eq 0 ]
