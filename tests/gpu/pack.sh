#!/usr/bin/env bash
# Builds the GPU test binaries here (CUDA 13, sm_80 + sm_90) into build-gpu/
# with the shared libraries they need that a bare GPU machine may lack, so a
# device call can run them without compiling or installing anything:
#   bash tests/gpu/pack.sh      then carry build-gpu/ and run tests/gpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/usr/local/cuda/bin:$PATH"
work=build-gpu-pack
cmake -S . -B $work -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="80;90" -DLLAVA_WITH_MPI=OFF >/dev/null
cmake --build $work -j "$(nproc)" --target llava test_gpu_ops compare_golden
rm -rf build-gpu
mkdir -p build-gpu/lib
cp $work/llava $work/test_gpu_ops $work/compare_golden build-gpu/
# Non-system libraries (the GPU machine has its own libc and CUDA).
for bin in build-gpu/llava build-gpu/test_gpu_ops build-gpu/compare_golden; do
  ldd "$bin" | awk '/=>/ {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libstdc++*|libgcc_s*|libcuda*|libcublas*|libcudart*|libnccl*|libcudnn*) ;;
    *) cp -L "$lib" build-gpu/lib/ ;;
  esac
done
echo "built $(date -u '+%Y-%m-%d %H:%M UTC') from $(git rev-parse --short HEAD) for sm_80/sm_90" >build-gpu/.prebuilt
du -sh build-gpu
ls build-gpu build-gpu/lib
