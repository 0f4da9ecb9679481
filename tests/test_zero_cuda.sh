#!/usr/bin/env bash
# Several GPU processes on the CPU emulator: `mpirun llava_emu train --set
# device=cuda` through kernels/nccl.c, with libnccl_emu.so (tests/gpu/emu/
# emu_nccl.c: NCCL's calls over MPI, as host functions on the emulated
# streams) standing in for libnccl.so.2. The collectives run on the backend's
# communication stream, which the emulator defers until something waits for
# it (tests/gpu/emu/emu_streams.cpp), and ZeRO-2/3's gradients and ZeRO-3's
# LLM weights live in emulated device virtual memory where an unmapped chunk
# is PROT_NONE (emu_vmm.cpp; 64 KiB chunks here, LLAVA_CUDA_VMM_CHUNK_KB, so
# the tiny models' layers are really unmapped), so a missing event wait gives
# wrong numbers and a touch of memory given back crashes the run.
#  - zero_stage 0 (all-reduce) on 2 processes: bitwise the run without NCCL
#    (gradients through host memory over MPI: the same sums in the same
#    order), bitwise the same on rerun, and the CPU run of 2 processes to bf16
#    rounding (weights 1e-2 norm-wise, losses 1e-2);
#  - zero_stage 1, 2 (per-layer reduce-scatter on the comm stream during
#    backward) and 3 (that, and layers all-gathered on the comm stream one
#    ahead; also with zero3_shard_frozen, in stage 2 and in stage 1 where
#    the frozen LLM is sharded) bitwise zero_stage 0 on 2 processes, and
#    zero_stage 3 on 3 (a
#    two-rank sum is order-free; with 3, MPI's reduce and all-reduce add in
#    the same order, as tests/test_zero.sh shows on the CPU); zero_stage 3
#    with grad_accum 2 and recompute off equal to fp32 rounding (ZeRO-2/3
#    reduce each micro-batch, zero_stage 0 the local sum: another order);
#  - a zero_stage 3 run of 3 processes killed after its step-2 checkpoint and
#    resumed by 2 processes (zero_stage 3, and 1) ends where the uninterrupted
#    3-process run ends, to
#    bf16 rounding (micro-batches of 3, not 2: the sums run in another order
#    and the bf16 weights round them);
#  - the negative controls: LLAVA_TEST_DROP_COMM_WAIT=1 drops the compute
#    stream's waits for the collectives (kernels/nccl.c), and the zero_stage 2
#    weights are then NOT those of the run with the waits;
#    LLAVA_TEST_EARLY_UNMAP=1 unmaps a layer bucket without waiting for its
#    reduce-scatter (train/zero_device.c), and the run crashes;
#  - device memory: a 16-layer model on 3 processes maps at most what
#    `llava plan --device cuda` plans for its ZeRO-2/3 gradients (slice +
#    non-layer tensors + 2 layer buckets), give or take the chunk rounding,
#    and less than whole ones; with ZeRO-3 the LLM weights of ranks 1 and 2
#    (rank 0 maps them all to save) peak at their slice + non-layer tensors +
#    3 layers, below whole ones.
# Skipped when the build has no emulator, no MPI or no NCCL header.
# usage: test_zero_cuda.sh LLAVA SOURCE_DIR BUILD_DIR
set -u
src=$2
build=$3
. "$src/tests/emu_mpi_lib.sh"
st_diff=$build/tests/st_diff
tmp=$(mktemp -d /tmp/llava_zero_cuda.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@" > "$tmp/check.txt" 2>&1; then echo "ok: $what"; else fail "$what"; cat "$tmp/check.txt"; fi; }
losses() { grep -o '"loss": [0-9.eE+-]*' "$tmp/$1/metrics.jsonl" | cut -d' ' -f2; }

common=(--set "model=$src/tests/fixtures/tiny_llava15" --set data=synthetic:32 --set max_length=64 --set lr=2e-3
        --set warmup_ratio=0.1 --set log_every=100 --set seed=3 --set threads=1 --set stage=2 --set micro_batch=2
        --set max_steps=3)
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

# --- NCCL on the emulator: all-reduce (zero_stage 0) ---------------------------------------
run 2 z0 cuda --set zero_stage=0
check "2 cuda processes: NCCL's path ran (no fallback to host memory)" \
  bash -c "! grep -q 'no NCCL' '$tmp/z0.log' && grep -q 'on cuda x2' '$tmp/z0.log'"
run 2 z0again cuda --set zero_stage=0
check "zero_stage 0: the 2-process cuda run is bitwise the same on rerun" same z0 z0again
LLAVA_NCCL_LIBRARY=/nonexistent/libnccl.so.2 run 2 z0host cuda --set zero_stage=0
check "zero_stage 0: without NCCL (through host memory) the same bits" \
  bash -c "grep -q 'no NCCL' '$tmp/z0host.log' && '$st_diff' '$tmp/z0/final/model.safetensors' '$tmp/z0host/final/model.safetensors'"
# rank 1 cannot open NCCL: every rank falls back together (before, rank 0 joined the communicator and waited forever)
timeout 600 mpirun -np 2 bash -c 'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then export LLAVA_NCCL_LIBRARY=/nonexistent/libnccl.so.2;
  else export LLAVA_NCCL_LIBRARY="$1"; fi; shift; exec "$@"' _ "$nccl" "$emu" train "${common[@]}" --set device=cuda \
  --set zero_stage=0 --set output_dir="$tmp/z0half" > "$tmp/z0half.log" 2>&1 || fail "run z0half (a hang?)"
check "one rank without NCCL: all fall back to host memory, the same bits" \
  bash -c "grep -q 'no NCCL (another rank failed)' '$tmp/z0half.log' && '$st_diff' '$tmp/z0/final/model.safetensors' '$tmp/z0half/final/model.safetensors'"
run 2 z0cpu cpu --set zero_stage=0
check "zero_stage 0: cuda == cpu (2 processes each) to bf16 rounding" near z0 z0cpu

run 2 bf16n cuda --set zero_stage=0 --set grad_dtype=bf16
LLAVA_NCCL_LIBRARY=/nonexistent/libnccl.so.2 run 2 bf16h cuda --set zero_stage=0 --set grad_dtype=bf16
check "grad_dtype bf16, 2 processes: NCCL's bf16 all-reduce == the host-memory fallback (one rounding of a 2-term sum: bitwise)" \
  bash -c "grep -q 'no NCCL' '$tmp/bf16h.log' && ! grep -q 'no NCCL' '$tmp/bf16n.log' && '$st_diff' '$tmp/bf16n/final/model.safetensors' '$tmp/bf16h/final/model.safetensors'"

# --- ZeRO-1 and ZeRO-2 on the emulated GPUs -------------------------------------------------
run 2 z1 cuda --set zero_stage=1
check "2 cuda processes: zero_stage 1 == zero_stage 0 (bitwise)" same z1 z0
run 2 z2 cuda --set zero_stage=2
check "2 cuda processes: zero_stage 2 == zero_stage 0 (bitwise)" same z2 z0
run 2 z3 cuda --set zero_stage=3
check "2 cuda processes: zero_stage 3 == zero_stage 0 (bitwise)" same z3 z0
run 2 z3f cuda --set zero_stage=3 --set zero3_shard_frozen=true
check "2 cuda processes: zero_stage 3 with the vision tower sharded too == zero_stage 0 (bitwise)" same z3f z0
run 2 s1z0 cuda --set stage=1 --set zero_stage=0
run 2 s1z3f cuda --set stage=1 --set zero_stage=3 --set zero3_shard_frozen=true
check "stage 1: zero_stage 3 with the frozen LLM and vision tower sharded == zero_stage 0 (bitwise)" same s1z3f s1z0
run 3 z0_3 cuda --set zero_stage=0
run 3 z3_3 cuda --set zero_stage=3  # its gradients go through ZeRO-2's path
check "3 cuda processes: zero_stage 3 == zero_stage 0 (bitwise)" same z3_3 z0_3
ga=(--set micro_batch=1 --set grad_accum=2 --set recompute=false)
run 2 gaz0 cuda "${ga[@]}" --set zero_stage=0
run 2 gaz3 cuda "${ga[@]}" --set zero_stage=3
check "grad_accum 2, recompute off: zero_stage 3 == zero_stage 0 to fp32 rounding" \
  "$st_diff" "$tmp/gaz3/final/model.safetensors" "$tmp/gaz0/final/model.safetensors" --tol 1e-6

# --- resume a zero_stage 3 run across process counts -------------------------------------------
rs=(--set max_steps=4 --set save_every=2)
LLAVA_TEST_CRASH_DURING_SAVE=4 LLAVA_NCCL_LIBRARY=$nccl mpirun -np 3 "$emu" train "${common[@]}" --set device=cuda \
  "${rs[@]}" --set zero_stage=3 --set output_dir="$tmp/r3" > "$tmp/r3.log" 2>&1
check "the zero_stage 3 run left a step-2 checkpoint with 3 optimizer slices" \
  test -f "$tmp/r3/checkpoint-00000002/optimizer-00002-of-00003.safetensors"
cp -r "$tmp/r3" "$tmp/r3b"
run 2 r3 cuda "${rs[@]}" --set micro_batch=3 --set zero_stage=3
run 2 r3b cuda "${rs[@]}" --set micro_batch=3 --set zero_stage=1
run 3 rref cuda --set max_steps=4 --set zero_stage=0
check "3 processes zero_stage 3 -> 2 processes zero_stage 3: resumed at step 2" \
  grep -q "resumed from .*checkpoint-00000002 at step 2" "$tmp/r3.log"
check "... ends where the uninterrupted run ends (bf16 rounding)" \
  "$st_diff" "$tmp/r3/final/model.safetensors" "$tmp/rref/final/model.safetensors" --tol 1e-2
check "3 processes zero_stage 3 -> 2 processes zero_stage 1: the same" \
  "$st_diff" "$tmp/r3b/final/model.safetensors" "$tmp/rref/final/model.safetensors" --tol 1e-2

# --- the negative control: dropped waits must show ---------------------------------------------
LLAVA_TEST_DROP_COMM_WAIT=1 run 2 drop cuda --set zero_stage=2
check "negative control: without the compute stream's waits for the collectives the weights differ" \
  bash -c "! '$st_diff' '$tmp/drop/final/model.safetensors' '$tmp/z2/final/model.safetensors'"
LLAVA_TEST_EARLY_UNMAP=1 LLAVA_NCCL_LIBRARY=$nccl mpirun -np 2 "$emu" train "${common[@]}" --set device=cuda \
  --set zero_stage=2 --set max_steps=1 --set output_dir="$tmp/early" > "$tmp/early.log" 2>&1; rc=$?
check "negative control: gradient chunks unmapped before their reduce-scatter ran crash the emulated run" \
  bash -c "[ $rc -ne 0 ] && grep -qi 'segmentation fault\|signal 11' '$tmp/early.log'"

# --- every rank issues the same collectives (emu_nccl.c stops a run where they differ) -------------
# 32 samples, global batch 6: the 6th step has 2 samples, ranks 1 and 2 none; micro-batches of one
# sample: some are text-only (no vision forward) on one rank only.
short=(--set data=synthetic:32 --set max_steps=0)
run 3 short2 cuda "${short[@]}" --set zero_stage=2
run 3 short0 cuda "${short[@]}" --set zero_stage=0
check "3 processes, a short last step leaving 2 ranks without a sample: zero_stage 2 == zero_stage 0 (bitwise)" \
  same short2 short0
text=(--set data=synthetic:12 --set micro_batch=1 --set max_steps=6)
run 2 text3 cuda "${text[@]}" --set zero_stage=3 --set zero3_shard_frozen=true
run 2 text0 cuda "${text[@]}" --set zero_stage=0
check "micro-batches without images on one rank only: ZeRO-3 with the vision tower sharded == zero_stage 0 (bitwise)" \
  bash -c "grep -q '\"images\": 1,' '$tmp/text3/metrics.jsonl' && '$st_diff' '$tmp/text3/final/model.safetensors' '$tmp/text0/final/model.safetensors'"

# --- device memory as planned ------------------------------------------------------------------
sed -e 's/"num_hidden_layers": 2/"num_hidden_layers": 16/' "$src/tests/fixtures/tiny_llava15/config.json" > "$tmp/deep.json"
"$build/llava_emu" init --config "$tmp/deep.json" --tokenizer "$src/tests/fixtures/tiny_llava15" --out "$tmp/deep" \
  > "$tmp/init.log" 2>&1 || { fail "init"; cat "$tmp/init.log"; }
deep=(--set "model=$tmp/deep" --set data=synthetic:12 --set max_length=32 --set micro_batch=1 --set stage=2)
"$build/llava_emu" plan "${deep[@]}" --device cuda --world 3 --json > "$tmp/plan.json" || fail "llava plan --device cuda"
planned=$(grep -o '"zero_stage": 3, "weights": [0-9]*, "gradients": [0-9]*' "$tmp/plan.json" | grep -o '[0-9]*$')
LLAVA_NCCL_LIBRARY=$nccl mpirun -np 3 "$emu" train "${deep[@]}" --set device=cuda --set zero_stage=3 --set max_steps=1 \
  --set threads=1 --set log_every=100 --set output_dir="$tmp/deep_run" > "$tmp/deep.log" 2>&1 || { fail "deep run"; tail -5 "$tmp/deep.log"; }
# "zero: rank R device gradients: peak P MiB mapped; whole W, kept K, one layer L, chunk C MiB" (train/zero.c)
mem_as_planned() {
  grep '^zero: rank .* device gradients' "$tmp/deep.log" | awk -v p="$planned" '{
    peak = $7 * 1048576; whole = $11 * 1048576; chunk = $(NF - 1) * 1048576; n++
    printf "rank %s: peak %.0f B, planned %.0f B, whole %.0f B\n", $3, peak, p, whole
    if (peak < p - 2 * chunk || peak > p + 8 * chunk || peak >= whole) bad = 1 }
    END { exit (bad || n != 3) }'
}
check "3 processes: each rank's peak of mapped device gradients is the plan's ($planned B, +- chunk rounding), below whole ones" \
  mem_as_planned
cat "$tmp/check.txt"
# "zero: rank R device LLM weights: peak P MiB mapped; whole W, kept K MiB"; a layer is half its fp32 gradient
weights_bounded() {
  layer=$(grep -o 'one layer [0-9.]*' "$tmp/deep.log" | head -1 | awk '{ print $3 / 2 }')
  grep '^zero: rank [12] device sharded weights' "$tmp/deep.log" | awk -v l="$layer" '{
    peak = $8; whole = $12; kept = $17; n++; printf "rank %s: weights peak %.3f MiB, kept %.3f, whole %.3f\n", $3, peak, kept, whole
    if (peak >= whole || peak > kept + 3 * l + 8 * 0.0625) bad = 1 }  # 64 KiB chunks
    END { exit (bad || n != 2) }'
}
check "3 processes, zero_stage 3: the LLM weights of ranks 1 and 2 peak at slice + non-layer + 3 layers, below whole" \
  weights_bounded
cat "$tmp/check.txt"

echo "$failures failures"
[ $failures -eq 0 ]
