#!/usr/bin/env bash
# Makes the bundle a device call carries (docs/gpu-status.md): the GPU test
# binaries, the CUDA plugin and the few libraries a bare GPU machine may lack,
# in one compressed file that tests/gpu/run.sh unpacks there:
#   build-gpu/llava-gpu.tar.xz   (carry ["build-gpu"])
#
#   bash tests/gpu/pack.sh
#       builds build-gpu-pack/ (CUDA 13, sm_80 + sm_90, HDF5 / OpenBLAS /
#       image codecs / libarchive linked statically: LLAVA_STATIC_DEPS; no
#       libcurl or libmicrohttpd, whose TLS chains a GPU run never uses:
#       LLAVA_GPU_BUNDLE, so datagen, judge and serve say this build lacks
#       them) and packs it
#   bash tests/gpu/pack.sh --from BUILD_DIR [--out DIR] [--gzip]
#       packs an existing CUDA build as it is (the ctest dry run does this with
#       its own build and --gzip, which is fast; the libraries then travel as
#       shared objects and the bundle is larger)
#
# What stays behind, because the GPU machine has its own and a copy would
# clash with it: glibc (libc, libm, libdl, libpthread, librt, libresolv,
# ld-linux: the floor is printed below), libgcc_s, the driver (libcuda) and
# CUDA's libraries (cuBLASLt; NCCL is opened only by runs of 2+ GPUs).
set -euo pipefail
cd "$(dirname "$0")/../.."
src=$PWD
from="" out="$src/build-gpu" compress=xz static_build=0
while [ $# -gt 0 ]; do
  case "$1" in
    --from) from=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --gzip) compress=gzip; shift ;;
    *) echo "usage: $0 [--from BUILD_DIR] [--out DIR] [--gzip]" >&2; exit 2 ;;
  esac
done
export PATH="/usr/local/cuda/bin:$PATH"
if [ -z "$from" ]; then
  from=$src/build-gpu-pack
  static_build=1
  cmake -S . -B "$from" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="80;90" -DLLAVA_STATIC_DEPS=ON -DLLAVA_GPU_BUNDLE=ON \
    -DLLAVA_WITH_MPI=OFF -DLLAVA_ASAN_TESTS=OFF >/dev/null
  cmake --build "$from" -j "$(nproc)" --target llava llava_cuda test_gpu_ops compare_golden
fi
bins="llava test_gpu_ops compare_golden libllava_cuda.so"
for b in $bins; do
  [ -f "$from/$b" ] || { echo "pack.sh: $from/$b is missing (a build with CUDA?)" >&2; exit 1; }
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
dir=$stage/llava-gpu
mkdir -p "$dir/lib"
for b in $bins; do cp "$from/$b" "$dir/"; done
# The libraries the binaries resolve here, minus those the GPU machine brings.
missing=0
for b in $bins; do
  if ldd "$dir/$b" | grep -q "not found"; then
    echo "pack.sh: $b: $(ldd "$dir/$b" | grep "not found" | tr -s ' \t' ' ')" >&2
    missing=1
  fi
  ldd "$dir/$b" | awk '/=>/ && $3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libresolv.so*|libutil.so*|libmvec.so*|libnsl.so*|ld-linux*|\
    libgcc_s.so*|libstdc++.so*|libcuda.so*|libcublas*|libcudart*|libnccl*|libcudnn*|libnvidia*) ;;
    *) cp -L "$lib" "$dir/lib/" ;;
  esac
done
[ $missing -eq 0 ] || exit 1

# glibc floor: the newest GLIBC_x.y symbol version anything in the bundle
# imports; GLIBC_PRIVATE would tie it to this machine's exact glibc.
floor=unknown
if command -v objdump >/dev/null; then
  syms=$(for f in "$dir"/llava "$dir"/test_gpu_ops "$dir"/compare_golden "$dir"/*.so "$dir"/lib/*; do
    [ -f "$f" ] && objdump -T "$f" 2>/dev/null; done | grep -o 'GLIBC_[0-9.]*\|GLIBC_PRIVATE' | sort -u)
  if echo "$syms" | grep -q GLIBC_PRIVATE; then
    echo "pack.sh: a bundled library imports GLIBC_PRIVATE symbols (glibc's own; leave it out)" >&2
    exit 1
  fi
  floor=$(echo "$syms" | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -k3,3n | tail -1)
  # The static bundle promises glibc 2.34 (Ubuntu 22.04, Debian 12, RHEL 9):
  # a newer import (e.g. arc4random, 2.36, from parts of the static libstdc++
  # that std:: containers pull in) would fail at load on those machines.
  max=${LLAVA_GLIBC_MAX:-2.34}
  newest=$(printf '%s\n%s\n' "$floor" "$max" | sort -t. -k1,1n -k2,2n -k3,3n | tail -1)
  if [ $static_build = 1 ] && [ "$newest" != "$max" ]; then
    echo "pack.sh: the bundle needs glibc $floor, newer than the promised $max; these imports:" >&2
    for f in "$dir"/llava "$dir"/test_gpu_ops "$dir"/compare_golden "$dir"/*.so "$dir"/lib/*; do
      [ -f "$f" ] && objdump -T "$f" 2>/dev/null | awk -v f="$(basename "$f")" -v m="$max" \
        'match($0, /GLIBC_[0-9.]+/) { v = substr($0, RSTART + 6, RLENGTH - 6); split(v, a, "."); split(m, b, ".");
           if (a[1] > b[1] || (a[1] == b[1] && a[2] > b[2])) print "  " f ": " $NF " (GLIBC_" v ")" }'
    done >&2
    exit 1
  fi
fi
{
  echo "built $(date -u '+%Y-%m-%d %H:%M UTC') from $(git rev-parse --short HEAD 2>/dev/null || echo '?') for sm_80/sm_90"
  echo "needs: glibc >= $floor, libgcc_s, the NVIDIA driver, libcublasLt.so.13 (CUDA 13; /usr/local/cuda or the nvidia-cublas wheel)"
  echo "libraries: $(cd "$dir/lib" && ls | tr '\n' ' ')"
} >"$dir/BUNDLE.txt"

mkdir -p "$out"
rm -f "$out"/llava-gpu.tar.*
if [ $compress = xz ]; then
  bundle=$out/llava-gpu.tar.xz
  tar -C "$stage" -cf - llava-gpu | xz -T"$(nproc)" -6 >"$bundle"
else
  bundle=$out/llava-gpu.tar.gz
  tar -C "$stage" -cf - llava-gpu | gzip -1 >"$bundle"
fi
# What the device tool counts against its 64 MiB: the tracked files and the carry.
tracked=$(git ls-files -z 2>/dev/null | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
size=$(stat -c %s "$bundle")
unpacked=$(du -sb "$dir" | cut -f1)
mib() { awk "BEGIN {printf \"%.1f MiB\", $1 / 1048576}"; }
cat "$dir/BUNDLE.txt"
echo "bundle: $bundle: $(mib "$size") ($(mib "$unpacked") unpacked: $(cd "$dir" && find . -type f -printf '%s %P\n' | sort -rn | head -4 | awk '{printf "%s %.1f MiB, ", $2, $1 / 1048576}')...)"
echo "with the tracked files ($(mib "${tracked:-0}")): $(mib $((size + ${tracked:-0}))) of the device tool's 64 MiB"
