#!/usr/bin/env bash
# A stuck or failed NCCL peer ends the whole job instead of hanging the
# survivors (kernels/nccl.c's polled waits: the event, ncclCommGetAsyncError,
# LLAVA_NCCL_TIMEOUT_S). On the CPU emulator with the emulated NCCL
# (tests/gpu/emu/emu_nccl.c): LLAVA_EMU_NCCL_STALL_RANK=r makes rank r's first
# collective never complete, after telling its peers (as a dead peer's broken
# connection tells NCCL: ncclRemoteError). Each run is wrapped in `timeout`,
# so a regression fails instead of hanging; no timing is asserted beyond
# "ended before the outer 600 s" (a hang guard; NCCL has no time limit here).
#  - zero_stage 0 (all-reduce), rank 1 stalled: rank 0 names itself, the
#    step's collectives and the error, and the job ends non-zero;
#  - zero_stage 2 (the per-layer reduces, grouped), rank 0 stalled: rank 1
#    names the ZeRO-2 layer bucket it waited for;
#  - zero_stage 3 (grouped per-layer broadcasts too), rank 1 stalled: rank 0
#    names the per-layer wait it was in;
#  - LLAVA_NCCL_TIMEOUT_S=abc: the job refuses it (no silent fallback to host
#    memory) with a message naming the setting.
# What this cannot show: the timeout path itself (the emulator runs a
# collective inside the host's wait, so a silent hang blocks there): a GPU
# must (docs/gpu-status.md).
# Skipped when the build has no emulator, no MPI or no NCCL header.
# usage: test_nccl_faults.sh LLAVA SOURCE_DIR BUILD_DIR
set -u
src=$2
build=$3
. "$src/tests/emu_mpi_lib.sh"
tmp=$(mktemp -d /tmp/llava_nccl_faults.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export LLAVA_NCCL_LIBRARY=$nccl
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
common=(--set "model=$src/tests/fixtures/tiny_llava15" --set data=synthetic:32 --set max_length=64 --set log_every=100
        --set seed=3 --set threads=1 --set stage=2 --set micro_batch=2 --set max_steps=3 --set device=cuda)

# stalled NAME STALL_RANK SURVIVOR WHAT [--set ...]: the job ends non-zero before the outer timeout, the
# survivor's message names it, what it waited for and the peer's failure
# LLAVA_NCCL_TIMEOUT_S=0 (no time limit): the peer's failure alone must end the job, however slow a loaded
# machine is; the outer 600 s only turns a regression (a hang) into a failure instead of a stuck CI.
stalled() { local name=$1 stall=$2 survivor=$3 what=$4; shift 4
  LLAVA_EMU_NCCL_STALL_RANK=$stall LLAVA_NCCL_TIMEOUT_S=0 timeout -k 10 600 mpirun -np 2 "$emu" train "${common[@]}" \
    --set output_dir="$tmp/$name" "$@" > "$tmp/$name.log" 2>&1
  local rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then fail "$name: the job hung (killed by the outer timeout)"; tail -5 "$tmp/$name.log"; return; fi
  if [ $rc -eq 0 ]; then fail "$name: the job ended with status 0"; return; fi
  if grep -q "rank $stall stalls in its collective" "$tmp/$name.log" &&
     grep -q "llava train: rank $survivor: NCCL failed while waiting for $what.*: remote process exited" "$tmp/$name.log" &&
     [ ! -f "$tmp/$name/final/model.safetensors" ]; then
    echo "ok: $name: rank $stall stalled, rank $survivor ended the job (status $rc) naming $what"
  else
    fail "$name: no survivor's message"; tail -8 "$tmp/$name.log"
  fi
}
stalled z0 1 0 "this step's gradient collectives" --set zero_stage=0
stalled z2 0 1 "a ZeRO-2 layer bucket's reduce-scatter" --set zero_stage=2
# ZeRO-3: whichever per-layer wait comes first (a bucket's reduce, a gathered layer's use)
stalled z3 1 0 "\(a ZeRO-2 layer bucket's reduce-scatter\|the ops on a ZeRO-3 layer gathered earlier\)" --set zero_stage=3

LLAVA_NCCL_TIMEOUT_S=abc timeout -k 10 600 mpirun -np 2 "$emu" train "${common[@]}" --set zero_stage=0 --set max_steps=1 \
  --set output_dir="$tmp/bad" > "$tmp/bad.log" 2>&1
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "LLAVA_NCCL_TIMEOUT_S=abc: not a number of seconds" "$tmp/bad.log" &&
   [ ! -f "$tmp/bad/final/model.safetensors" ]; then
  echo "ok: LLAVA_NCCL_TIMEOUT_S=abc is refused naming the setting (status $rc, no fallback to host memory)"
else
  fail "LLAVA_NCCL_TIMEOUT_S=abc: no message"; tail -5 "$tmp/bad.log"
fi

echo "$failures failures"
[ $failures -eq 0 ]
