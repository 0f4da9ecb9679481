#!/usr/bin/env bash
# The GPU checks of the CUDA backend in one call, most valuable first
# (docs/gpu-status.md lists each and what it prints):
#   0. setup: unpack the bundle (tests/gpu/pack.sh), resolve every library of
#      every binary, load the CUDA plugin and open the GPU
#   1. op checks: test_gpu_ops, every op against the CPU op
#   2. model parity: tests/gpu/test_model.sh against the golden files
#   3. training: the same 20 steps on cuda and on cpu
#   4. speed: the per-kernel timing table and the flash-attention benchmark
#   5. speed: `llava bench` training steps, a small model and a 1B LLaVA-1.5
# The whole script keeps to LLAVA_GPU_BUDGET seconds (default 400, for a
# device call of timeout_s 460): each step runs under `timeout`, capped by
# what is left, and a step that cannot start in time is reported as not run.
# LLAVA_GPU_STEPS=4,5 runs only those steps after the setup (a second,
# shorter call). Everything is printed as it comes and written to $OUT/gpu.log, with one
# line per step in $OUT/summary.txt, so a call cut short still returns them.
# Without a GPU it stops after step 0 (the dry run: tests/test_gpu_dry_run.sh)
# and exits 0; a library that cannot be resolved fails step 0.
#   device call: command "bash tests/gpu/run.sh", carry ["build-gpu"], timeout_s 460
set -uo pipefail
cd "$(dirname "$0")/../.."
src=$PWD
out=${OUT:-$src/build-gpu/out}
mkdir -p "$out"
: >"$out/summary.txt"
exec > >(tee "$out/gpu.log") 2>&1
tee_pid=$!
# On every exit, let tee write its last lines before the call collects $OUT.
trap 'exec 1>&- 2>&-; wait "$tee_pid" 2>/dev/null' EXIT
budget=${LLAVA_GPU_BUDGET:-400}
start=$(date +%s)
status=0
left() { echo $((budget - ($(date +%s) - start))); }
summary() { echo "$*" | tee -a "$out/summary.txt"; }
# step NAME CAP_SECONDS COMMAND...: runs under min(CAP, what is left - 5 s).
step() {
  local name=$1 cap=$2
  shift 2
  case ",${LLAVA_GPU_STEPS:-1,2,3,4,5}," in
    *",${name%%/*},"*) ;;
    *) summary "$name: skipped (LLAVA_GPU_STEPS=${LLAVA_GPU_STEPS})"; return ;;
  esac
  local t=$(($(left) - 5))
  [ "$t" -gt "$cap" ] && t=$cap
  echo
  echo "== $name (up to ${t} s; $(left) s of the budget left)"
  if [ "$t" -lt 10 ]; then
    summary "$name: NOT RUN (budget spent)"
    status=1
    return
  fi
  local t0 rc
  t0=$(date +%s)
  if declare -F "$1" >/dev/null; then  # a function of this script: run it in a child bash
    timeout -k 5 "$t" bash -c "$(declare -f "$1"); $1"
  else
    timeout -k 5 "$t" "$@"
  fi
  rc=$?
  local took=$(($(date +%s) - t0))
  if [ $rc -eq 0 ]; then summary "$name: ok (${took} s)"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then summary "$name: TIMEOUT after ${took} s"; status=1
  else summary "$name: FAILED (exit $rc, ${took} s)"; status=1
  fi
}

echo "== $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname), budget ${budget} s, results in $out"
export PATH="/usr/local/cuda/bin:$PATH"
export OMP_WAIT_POLICY=passive

# ---- 0. setup -------------------------------------------------------------------------
bundle=${LLAVA_GPU_BUNDLE:-$(ls "$src"/build-gpu/llava-gpu.tar.* 2>/dev/null | head -1)}
if [ -n "$bundle" ]; then
  bin=${LLAVA_GPU_UNPACK:-/tmp/llava-gpu-bundle}
  rm -rf "$bin"
  mkdir -p "$bin"
  if [ "${bundle%.xz}" != "$bundle" ] && ! command -v xz >/dev/null; then
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$bundle" "$bin"
  else
    tar -C "$bin" -xf "$bundle"
  fi || { summary "setup: FAILED (cannot unpack $bundle)"; exit 1; }
  bin=$bin/llava-gpu
  echo "== bundle $bundle ($(stat -c %s "$bundle") bytes): $(head -1 "$bin/BUNDLE.txt")"
  sed -n '2,$p' "$bin/BUNDLE.txt"
  export LD_LIBRARY_PATH="$bin/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
  # No bundle: build here (needs HDF5, cJSON, OpenBLAS, the image codecs).
  bin=${LLAVA_GPU_BUILD:-$src/build-gpu-local}
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')
  echo "== no bundle in build-gpu/: building for sm_${cap:-80;90} in $bin"
  mkdir -p "$bin"
  if ! cmake -S "$src" -B "$bin" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${cap:-80;90}" \
      -DLLAVA_WITH_MPI=OFF -DLLAVA_ASAN_TESTS=OFF >"$bin/configure.log" 2>&1 ||
     ! cmake --build "$bin" -j "$(nproc)" --target llava llava_cuda test_gpu_ops compare_golden \
      >"$bin/build.log" 2>&1; then
    tail -30 "$bin/configure.log" "$bin/build.log" 2>/dev/null
    summary "setup: FAILED (no bundle, and building here failed: make one with bash tests/gpu/pack.sh)"
    exit 1
  fi
fi

# Every library of every binary must resolve. CUDA's own may sit in pip
# wheels (nvidia-cublas: nvidia/cu13/lib; nvidia-nccl-cu13: nvidia/nccl/lib),
# which the dynamic linker does not search: add the folders that hold them.
wheel_lib_dirs() {
  local sp
  for sp in $(python3 -c 'import site; print(*site.getsitepackages())' 2>/dev/null) \
            ${VIRTUAL_ENV:+$VIRTUAL_ENV/lib/python3*/site-packages} /opt/*/.venv/lib/python3*/site-packages \
            /usr/local/lib/python3*/dist-packages /usr/lib/python3/dist-packages; do
    ls -d "$sp"/nvidia/*/lib 2>/dev/null
  done
  ls -d /usr/local/cuda/lib64 /usr/local/cuda/targets/*/lib 2>/dev/null
}
missing_libs() { for f in "$@"; do ldd "$f" 2>/dev/null | awk '/not found/ {print $1}'; done | sort -u; }
binaries="$bin/llava $bin/test_gpu_ops $bin/compare_golden $bin/libllava_cuda.so"
for lib in $(missing_libs $binaries); do
  for d in $(wheel_lib_dirs); do
    if [ -e "$d/$lib" ]; then
      export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
      echo "   $lib: found in $d"
      break
    fi
  done
done
still=$(missing_libs $binaries)
if [ -n "$still" ]; then
  for f in $binaries; do ldd "$f" | grep "not found" | sed "s|^|   $(basename "$f"): |"; done
  summary "setup: FAILED (libraries not found: $(echo $still))"
  exit 1
fi
echo "   every library resolves: $(for f in $binaries; do ldd "$f" | awk '/=>/ {print $1}'; done | sort -u | tr '\n' ' ')"
nccl=""
for d in $(echo "$LD_LIBRARY_PATH" | tr ':' ' ') $(wheel_lib_dirs); do
  [ -e "$d/libnccl.so.2" ] && { nccl=$d/libnccl.so.2; break; }
done
[ -z "$nccl" ] && nccl=$(ldconfig -p 2>/dev/null | awk '/libnccl.so.2/ {print $NF; exit}')
echo "   NCCL (opened only by runs of 2+ GPU processes): ${nccl:-not found}"
# Every binary starts (its libraries load), and the plugin loads and opens the GPU.
for b in llava compare_golden; do
  "$bin/$b" --help >/dev/null 2>&1 || [ $? -le 2 ] || { summary "setup: FAILED ($b does not start)"; exit 1; }
done
gpus=$(nvidia-smi -L 2>/dev/null)
[ -n "$gpus" ] && nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm --format=csv
"$bin/test_gpu_ops" --probe
probe=$?
if [ $probe -eq 77 ]; then
  summary "setup: ok, no GPU: the bundle unpacks, every library loads, the CUDA plugin loads; stopping here"
  exit 0
elif [ $probe -ne 0 ]; then
  summary "setup: FAILED (the CUDA backend did not start${gpus:+ on $gpus})"
  exit 1
fi
summary "setup: ok ($(($(date +%s) - start)) s): ${gpus}"
export bin src out

# ---- 1-5 ------------------------------------------------------------------------------
step "1/5 op checks" 120 "$bin/test_gpu_ops" --checks-only
step "2/5 model against the golden files" 60 bash "$src/tests/gpu/test_model.sh" "$bin/llava" "$src" "$bin"

train_both() {
  local tmp dev rc=0
  tmp=$(mktemp -d /tmp/llava_gpu_train.XXXXXX)
  for dev in cpu cuda; do
    "$bin/llava" train --set model="$src/tests/fixtures/tiny_llava15" --set data=synthetic:80 \
      --set device=$dev --set max_steps=20 --set micro_batch=4 --set lr=1e-3 --set max_length=96 \
      --set output_dir="$tmp/$dev" --set log_every=5 || rc=1
  done
  last_loss() { tail -1 "$1/metrics.jsonl" | grep -o '"loss": [0-9.eE+-]*' | cut -d' ' -f2; }
  local lc lg
  lc=$(last_loss "$tmp/cpu") lg=$(last_loss "$tmp/cuda")
  if [ -n "$lc" ] && [ -n "$lg" ] && awk "BEGIN {d = $lg - $lc; if (d < 0) d = -d; exit !(d < 0.05 * $lc)}"; then
    echo "   step-20 loss: cuda $lg, cpu $lc: ok (within 5%)"
  else
    echo "   FAIL: step-20 loss: cuda ${lg:-?}, cpu ${lc:-?} (more than 5% apart)"
    rc=1
  fi
  cp "$tmp/cuda/metrics.jsonl" "$out/train_cuda.jsonl" 2>/dev/null
  rm -rf "$tmp"
  return $rc
}
step "3/5 training: 20 steps on cuda and on cpu" 60 train_both
step "4/5 kernel timings and flash attention" 75 "$bin/test_gpu_ops" --bench-only

bench_all() {
  local rc=0
  "$bin/llava" bench --device cuda --config "$src/assets/bench/small_llava.json" --batch 16 --text 448 \
    --stage 2 --steps 10 | tee -a "$out/bench.jsonl" || rc=1
  # One random init of the 1.25B model for both stages.
  "$bin/llava" bench --device cuda --config "$src/assets/bench/llava_1b.json" --batch 8 --text 448 \
    --stage 1,2 --recompute 1 --steps 5 | tee -a "$out/bench.jsonl" || rc=1
  return $rc
}
step "5/5 llava bench (training steps, bf16)" 100 bench_all

echo
summary "total $(($(date +%s) - start)) s of ${budget}: $([ $status -eq 0 ] && echo PASSED || echo FAILED)"
exit $status
