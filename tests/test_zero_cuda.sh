#!/usr/bin/env bash
# Several GPU processes on the CPU emulator: `mpirun llava_emu train --set
# device=cuda` through kernels/nccl.c, with libnccl_emu.so (tests/gpu/emu/
# emu_nccl.c: NCCL's calls over MPI, as host functions on the emulated
# streams) standing in for libnccl.so.2. The collectives run on the backend's
# communication stream, which the emulator defers until something waits for
# it (tests/gpu/emu/emu_streams.cpp), so a missing event wait gives wrong
# numbers here.
#  - zero_stage 0 (all-reduce) and 1 (sharded AdamW, weights broadcast) on
#    2 processes: bitwise the run without NCCL (gradients through host memory
#    over MPI: the same sums in the same order), bitwise the same on rerun,
#    zero_stage 1 bitwise zero_stage 0, and the CPU run of 2 processes to bf16
#    rounding (weights 1e-2 norm-wise, losses 1e-2);
#  - the negative control: LLAVA_TEST_DROP_COMM_WAIT=1 drops the compute
#    stream's wait for the collectives (kernels/nccl.c), and the weights are
#    then NOT those of the run with the wait.
# Skipped when the build has no emulator, no MPI or no NCCL header.
# usage: test_zero_cuda.sh LLAVA SOURCE_DIR BUILD_DIR
set -u
src=$2
build=$3
emu=$build/llava_emu
nccl=$build/libnccl_emu.so
st_diff=$build/tests/st_diff
if [ ! -x "$emu" ] || [ ! -f "$nccl" ]; then
  echo "skip: this build has no CUDA emulator with the emulated NCCL (needs the CUDA toolkit's headers, nccl.h, MPI)"
  exit 0
fi
if ! command -v mpirun > /dev/null 2>&1; then
  echo "skip: mpirun not found (scripts/install_deps.sh installs openmpi-bin)"
  exit 0
fi
tmp=$(mktemp -d /tmp/llava_zero_cuda.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@" > "$tmp/check.txt" 2>&1; then echo "ok: $what"; else fail "$what"; cat "$tmp/check.txt"; fi; }
losses() { grep -o '"loss": [0-9.eE+-]*' "$tmp/$1/metrics.jsonl" | cut -d' ' -f2; }

common=(--set "model=$src/tests/fixtures/tiny_llava15" --set data=synthetic:32 --set max_length=64 --set lr=2e-3
        --set warmup_ratio=0.1 --set log_every=100 --set seed=3 --set threads=1 --set stage=2 --set micro_batch=2
        --set max_steps=4)
# run NP NAME DEVICE [--set ...]: mpirun -np NP llava_emu train into $tmp/NAME, with the emulated NCCL
run() { local np=$1 name=$2 dev=$3; shift 3
  LLAVA_NCCL_LIBRARY=${LLAVA_NCCL_LIBRARY-$nccl} mpirun -np "$np" "$emu" train "${common[@]}" --set device="$dev" \
    --set output_dir="$tmp/$name" "$@" > "$tmp/$name.log" 2>&1 || { fail "run $name"; tail -5 "$tmp/$name.log"; }; }
same() { "$st_diff" "$tmp/$1/final/model.safetensors" "$tmp/$2/final/model.safetensors" && diff <(losses "$1") <(losses "$2"); }
near() { # near A B: bf16 rounding of the weights and the losses
  "$st_diff" "$tmp/$1/final/model.safetensors" "$tmp/$2/final/model.safetensors" --tol 1e-2 || return 1
  paste <(losses "$1") <(losses "$2") | awk '{ d = ($1 - $2) / $2; if (d < 0) d = -d; if (d > 1e-2 || NF != 2) bad = 1 }
    END { exit bad || NR == 0 }'
}

# --- NCCL on the emulator: all-reduce (zero_stage 0) and ZeRO-1 ----------------------------
for z in 0 1; do
  run 2 z${z} cuda --set zero_stage=$z
  check "zero_stage $z, 2 cuda processes: NCCL's path ran (no fallback to host memory)" \
    bash -c "! grep -q 'no NCCL' '$tmp/z$z.log' && grep -q 'on cuda x2' '$tmp/z$z.log'"
  run 2 z${z}again cuda --set zero_stage=$z
  check "zero_stage $z: the 2-process cuda run is bitwise the same on rerun" same z$z z${z}again
  LLAVA_NCCL_LIBRARY=/nonexistent/libnccl.so.2 run 2 z${z}host cuda --set zero_stage=$z
  check "zero_stage $z: without NCCL (through host memory) the same bits" \
    bash -c "grep -q 'no NCCL' '$tmp/z${z}host.log' && '$st_diff' '$tmp/z$z/final/model.safetensors' '$tmp/z${z}host/final/model.safetensors'"
  run 2 z${z}cpu cpu --set zero_stage=$z
  check "zero_stage $z: cuda == cpu (2 processes each) to bf16 rounding" near z$z z${z}cpu
done
check "cuda: zero_stage 1 == zero_stage 0 (bitwise)" same z1 z0

# --- the negative control: a dropped wait must show --------------------------------------------
LLAVA_TEST_DROP_COMM_WAIT=1 run 2 drop cuda --set zero_stage=0
check "negative control: without the compute stream's wait for the all-reduce the weights differ" \
  bash -c "! '$st_diff' '$tmp/drop/final/model.safetensors' '$tmp/z0/final/model.safetensors'"

echo "$failures failures"
[ $failures -eq 0 ]
