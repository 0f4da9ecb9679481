#!/usr/bin/env bash
# attention_backend / --attention from the command line, without a GPU: an
# unknown name and cudnn on the CPU are refused with exit 2 and a message that
# names the key; on the CUDA emulator (llava_emu, when this build has it)
# asking for cuDNN is refused cleanly (exit 2): with LLAVA_CUDNN_LIBRARY
# naming a missing file the message names that file, else (libcudnn found or
# not) it says why cuDNN cannot run here. A run that does not ask never loads
# libcudnn (the dynamic loader's log, LD_DEBUG=files, of an emulated bench).
set -uo pipefail
llava=$1 src=$2 build=$3
model="$src/tests/fixtures/tiny_llava15"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; cat "$tmp/err" 2>/dev/null; exit 1; }

expect_refusal() {  # expect_refusal WHAT PATTERN command...
  local what=$1 pattern=$2
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  [ $rc -eq 2 ] || fail "$what: exit $rc, expected 2"
  grep -q -- "$pattern" "$tmp/err" || fail "$what: the message lacks '$pattern'"
  echo "ok: $what: $(head -c 300 "$tmp/err")"
}

expect_refusal "bench --attention sdpa" "flash or cudnn" "$llava" bench --model "$model" --attention sdpa
expect_refusal "bench --attention cudnn on the cpu" "needs device cuda" \
  "$llava" bench --model "$model" --attention cudnn
expect_refusal "forward --attention cudnn on the cpu" "needs device cuda" \
  "$llava" forward --model "$model" --batch /nonexistent.safetensors --out "$tmp/o.safetensors" --attention cudnn
expect_refusal "train attention_backend=cudnn on the cpu" "attention_backend" \
  "$llava" train --set "model=$model" --set data=synthetic:8 --set attention_backend=cudnn \
  --set output_dir="$tmp/run"
expect_refusal "train attention_backend=xformers" "flash or cudnn" \
  "$llava" train --set "model=$model" --set data=synthetic:8 --set attention_backend=xformers \
  --set output_dir="$tmp/run"
"$llava" train --help 2>&1 | grep -q "attention_backend" || fail "llava train --help does not list attention_backend"
"$llava" bench --help 2>&1 | grep -q -- "--attention" || fail "llava bench --help does not list --attention"

emu="$build/llava_emu"
if [ ! -x "$emu" ]; then
  echo "test_cudnn_cli: passed (emulator part skipped: this build has no CUDA backend)"
  exit 0
fi
bench=(bench --model "$model" --device cuda --batch 1 --text 8 --steps 1 --warmup 0)
LLAVA_CUDNN_LIBRARY=/nonexistent/llava-test/libcudnn.so.9 expect_refusal "emulator, missing LLAVA_CUDNN_LIBRARY" \
  "/nonexistent/llava-test/libcudnn.so.9" "$emu" "${bench[@]}" --attention cudnn
expect_refusal "emulator, attention cudnn" "attention_backend \"cudnn\"" "$emu" "${bench[@]}" --attention cudnn
# flash (the default) on the emulator runs and never loads libcudnn (the
# dynamic loader's own log of every file it opens, dlopen included); asking
# for cudnn does load it where the machine has one (the log is not blind).
LD_DEBUG=files "$emu" "${bench[@]}" >"$tmp/out" 2>"$tmp/ld.log" || { cat "$tmp/ld.log" | tail; fail "the emulated flash bench failed"; }
grep -q 'file=' "$tmp/ld.log" || fail "LD_DEBUG=files logged nothing: cannot tell what was loaded"
if grep -q 'file=libcudnn' "$tmp/ld.log"; then fail "a run that did not ask for cuDNN loaded libcudnn"; fi
LD_DEBUG=files "$emu" "${bench[@]}" --attention cudnn >"$tmp/out" 2>"$tmp/ld.log"
if grep -q 'cannot run on the CPU emulator' "$tmp/ld.log"; then
  grep -q 'libcudnn' "$tmp/ld.log" || fail "cuDNN was found, yet the loader log does not show it"
fi
echo "ok: libcudnn is loaded only when asked for"
echo "test_cudnn_cli: passed"
