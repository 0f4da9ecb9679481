#!/usr/bin/env bash
# The first device call, rehearsed without a GPU (docs/gpu-status.md): packs
# this build's GPU binaries as tests/gpu/pack.sh does, then runs the device
# command itself, `bash tests/gpu/run.sh`, on the bundle. Here it must
# unpack it, resolve every library of every binary, load the CUDA plugin and
# stop cleanly at "no GPU"; and the bundle must be self-contained: nothing
# may resolve outside it except glibc, libgcc_s, libstdc++ (which pack.sh
# leaves behind: this build's libicuuc, under libarchive's libxml2, needs it;
# the static bundle does not) and CUDA's own libraries.
# Skipped when the build has no CUDA backend.
set -euo pipefail
src=$2 build=$3
if [ ! -f "$build/libllava_cuda.so" ] || [ ! -x "$build/test_gpu_ops" ]; then
  echo "test_gpu_dry_run: skipped: this build has no CUDA backend"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# gzip: this build's libraries travel as shared objects; fast to pack.
bash "$src/tests/gpu/pack.sh" --from "$build" --out "$tmp/build-gpu" --gzip >"$tmp/pack.log" 2>&1 ||
  { cat "$tmp/pack.log"; echo "FAIL: tests/gpu/pack.sh"; exit 1; }
cat "$tmp/pack.log"
rc=0
env -u LD_LIBRARY_PATH OUT="$tmp/out" LLAVA_GPU_BUNDLE="$(ls "$tmp"/build-gpu/llava-gpu.tar.*)" \
  LLAVA_GPU_UNPACK="$tmp/unpack" bash "$src/tests/gpu/run.sh" >"$tmp/run.log" 2>&1 || rc=$?
cat "$tmp/run.log"
[ $rc -eq 0 ] || { echo "FAIL: tests/gpu/run.sh exited $rc"; exit 1; }
if nvidia-smi -L >/dev/null 2>&1; then
  echo "test_gpu_dry_run: this machine has a GPU: run.sh ran the checks above"
  exit 0
fi
grep -q "^setup: ok, no GPU" "$tmp/out/summary.txt" || { echo "FAIL: run.sh did not stop cleanly at 'no GPU'"; exit 1; }
grep -q "no GPU found\|no usable CUDA device" "$tmp/out/gpu.log" ||
  { echo "FAIL: the CUDA plugin was not loaded to the point of asking for a device"; exit 1; }
bundle=$tmp/unpack/llava-gpu
outside=$(for f in "$bundle"/llava "$bundle"/test_gpu_ops "$bundle"/compare_golden "$bundle"/libllava_cuda.so; do
  LD_LIBRARY_PATH="$bundle/lib" ldd "$f" | awk '/=>/ {print $3}'
done | sort -u | grep -v "^$bundle/" |
  grep -Ev '/(libc|libm|libdl|libpthread|librt|libresolv|libgcc_s|libstdc\+\+|libcublasLt|libcublas)\.so' || true)
if [ -n "$outside" ]; then
  echo "FAIL: the bundle needs libraries it does not carry: $outside"
  exit 1
fi
echo "test_gpu_dry_run: passed"
