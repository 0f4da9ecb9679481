#!/usr/bin/env bash
# Fuzzes every parser with libFuzzer: safetensors, images, tokenizer.json,
# LLaVA JSON/JSONL, conversations, model configs, run configs
# (tests/fuzz/fuzz_*.c). Builds them with clang -fsanitize=fuzzer,address,
# undefined in build-fuzz/, seeds each from the fixtures
# (scripts/fuzz_seeds.sh) and runs each for SECONDS (default 60) with
# JOBS processes (default 1). A finding is left in build-fuzz/findings/
# <target>/ (crash-*, leak-*, timeout-*): reproduce it with
#   build-fuzz/tests/fuzz_<target> FILE
# fix it, and commit the input to tests/fuzz/regressions/<target>/ so that
# ctest replays it (tests/test_fuzz_replay.sh) from then on.
#   bash scripts/fuzz.sh [SECONDS] [target ...]
# Needs clang and libclang-rt (Debian: clang, libclang-rt-dev or the
# clang-14 package's runtime) and libomp-dev for OpenMP under clang.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
shift || true
. "$src/scripts/fuzz_seeds.sh"
targets=${*:-$FUZZ_TARGETS}
build=$src/build-fuzz
command -v clang > /dev/null || { echo "fuzz.sh: clang not found (apt-get install clang libomp-dev)"; exit 2; }
mkdir -p "$build"
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" -DLLAVA_WITH_CUDA=OFF -DLLAVA_WITH_MPI=OFF \
  -DLLAVA_ASAN_TESTS=OFF -DLLAVA_FUZZ=ON > "$build/cmake.log" 2>&1 || { cat "$build/cmake.log"; exit 1; }
for t in $targets; do
  cmake --build "$build" -j"$(nproc)" --target "fuzz_$t" > "$build/build.log" 2>&1 || { cat "$build/build.log"; exit 1; }
done
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
status=0
for t in $targets; do
  corpus=$build/corpus/$t findings=$build/findings/$t
  mkdir -p "$corpus" "$findings"
  # shellcheck disable=SC2046
  for s in $(fuzz_seeds "$t"); do
    # Named by content: seeds of the same name from different folders all stay.
    for f in $( [ -d "$s" ] && ls -d "$s"/* || echo "$s"); do
      [ -f "$f" ] && cp "$f" "$corpus/seed-$(sha1sum < "$f" | cut -c1-16)"
    done
  done
  echo "== fuzz_$t: $(ls "$corpus" | wc -l) seeds, ${seconds}s"
  if ! "$build/tests/fuzz_$t" "$corpus" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
       -max_len=1048576 -artifact_prefix="$findings/" -print_final_stats=1 > "$findings.log" 2>&1; then
    echo "   FINDING: see $findings.log and $findings/"; status=1
  fi
  grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$findings.log" | tail -2 | sed 's/^/   /' || true
done
exit $status
