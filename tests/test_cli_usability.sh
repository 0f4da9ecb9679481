#!/usr/bin/env bash
# What a new user meets first (issue 9, item 18): --version, help texts that
# offer only what the command takes, float options shown as X, an unknown
# benchmark named as such, and --device cuda explaining why there is no GPU.
# usage: test_cli_usability.sh LLAVA SOURCE_DIR BUILD_DIR
set -u
LLAVA=$1 SRC=$2
tmp=$(mktemp -d /tmp/llava_usability.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }

"$LLAVA" --version >"$tmp/v.out" 2>&1
check "--version: exit 0, version, commit and backends" \
  '[ $? -eq 0 ] && grep -q "^llava.c [0-9][0-9.]* (commit " "$tmp/v.out" && grep -q "^backends: cpu" "$tmp/v.out"' \
  || cat "$tmp/v.out"

"$LLAVA" init --help >"$tmp/init.help" 2>&1
check "init --help offers --vision/--llm/--config, not --model (init refuses it)" \
  'grep -q -- "--vision VALUE" "$tmp/init.help" && grep -q -- "--config VALUE" "$tmp/init.help" && ! grep -q -- "--model " "$tmp/init.help"'
"$LLAVA" init --model "$SRC/tests/fixtures/tiny_llava15" --out "$tmp/x" >/dev/null 2>"$tmp/init.err"
check "init --model: unknown option, exit 2" '[ $? -eq 2 ] && grep -q "unknown option" "$tmp/init.err"'

"$LLAVA" generate --help >"$tmp/gen.help" 2>&1
check "float options show X, integers N" \
  'grep -q -- "--temperature X" "$tmp/gen.help" && grep -q -- "--top-p X" "$tmp/gen.help" && grep -q -- "--max-new-tokens N" "$tmp/gen.help"'

"$LLAVA" eval foo >/dev/null 2>"$tmp/eval.err"
check "eval foo: 'unknown benchmark', exit 2, lists scienceqa" \
  '[ $? -eq 2 ] && grep -q "unknown benchmark .foo." "$tmp/eval.err" && grep -q scienceqa "$tmp/eval.err"'

# OpenMP threads wait passively unless the user chose otherwise (item 16):
# libgomp's spin count is 0 in the process that runs (the re-executed one).
spin() { env -u OMP_WAIT_POLICY "$@" OMP_DISPLAY_ENV=verbose "$LLAVA" --version 2>&1 | grep GOMP_SPINCOUNT | tail -1; }
check "OMP_WAIT_POLICY unset: llava runs with passive waiting (GOMP_SPINCOUNT 0)" '[ "$(spin)" = "  GOMP_SPINCOUNT = '"'0'"'" ]' \
  || spin
check "OMP_WAIT_POLICY=active set by the user is kept" \
  '[ "$(spin OMP_WAIT_POLICY=active)" = "  GOMP_SPINCOUNT = '"'30000000000'"'" ]' || spin OMP_WAIT_POLICY=active

# --device cuda: with no CUDA backend built, or no NVIDIA driver, the message
# says so (not "CUDA driver version is insufficient"); exit 2.
"$LLAVA" forward --model "$SRC/tests/fixtures/tiny_llava15" --batch "$SRC/tests/fixtures/tiny_llava15/batch.safetensors" \
  --out "$tmp/f.safetensors" --device cuda >"$tmp/dev.out" 2>&1
rc=$?
if ! grep -q "^backends: cpu cuda" "$tmp/v.out"; then
  check "--device cuda in a CPU-only build: says the build has no CUDA backend, exit 2" \
    '[ $rc -eq 2 ] && grep -q "this build has no CUDA backend" "$tmp/dev.out"' || cat "$tmp/dev.out"
elif [ ! -e /proc/driver/nvidia/version ]; then
  check "--device cuda without an NVIDIA driver: 'no GPU found', exit 2" \
    '[ $rc -eq 2 ] && grep -q "no GPU found" "$tmp/dev.out" && ! grep -q "insufficient" "$tmp/dev.out"' || cat "$tmp/dev.out"
else
  echo "skip --device cuda message: this machine has an NVIDIA driver (rc $rc)"
fi
exit $fail
