#!/usr/bin/env bash
# `llava train` end to end on the tiny fixture with synthetic data:
#  - stage 1 changes only the projector, stage 2 never the vision tower;
#  - exact resume after SIGKILL (bitwise weights and losses), and a kill
#    during a checkpoint write leaves the previous checkpoint usable;
#  - micro-batch 2 x 4 accumulation == micro-batch 8 (fp32 rounding);
#  - mpirun -np 2 with micro-batch b == one process with micro-batch 2b.
# usage: test_train.sh LLAVA SOURCE_DIR BUILD_DIR
set -u
llava=$1
src=$2
build=$3
st_diff=$build/tests/st_diff
tmp=$(mktemp -d /tmp/llava_train.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
model=$src/tests/fixtures/tiny_llava15
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@" > "$tmp/check.txt" 2>&1; then echo "ok: $what"; else fail "$what"; cat "$tmp/check.txt"; fi; }

common=(--set "model=$model" --set data=synthetic:48 --set max_length=96 --set lr=2e-3 --set warmup_ratio=0.1
        --set log_every=100 --set seed=3)
train() { "$llava" train "${common[@]}" "$@"; }
# In the background with $! = the llava process itself (not a subshell), so signals reach it.
train_bg() { local log=$1; shift; LLAVA_TEST_STEP_DELAY_MS=150 "$llava" train "${common[@]}" "$@" > "$log" 2>&1 & }
losses() { grep -o '"loss": [0-9.eE+-]*' "$1/metrics.jsonl" | cut -d' ' -f2; }

# --- stage 1 / stage 2: what changes -------------------------------------------------
train --set stage=1 --set output_dir="$tmp/s1" --set micro_batch=4 --set max_steps=4 > "$tmp/s1.log" 2>&1 || { fail "stage 1 run"; cat "$tmp/s1.log"; }
check "stage 1: every non-projector tensor bitwise identical to the input" \
  "$st_diff" "$tmp/s1/final/model.safetensors" "$model/model.safetensors" --skip multi_modal_projector.
check "stage 1: the projector changed" \
  "$st_diff" "$tmp/s1/final/model.safetensors" "$model/model.safetensors" --only multi_modal_projector. --expect-diff multi_modal_projector.
check "stage 1: projector.safetensors holds the final projector" \
  "$st_diff" "$tmp/s1/final/projector.safetensors" "$tmp/s1/final/model.safetensors"
check "stage 1: mm_projector.bin written" test -s "$tmp/s1/final/mm_projector.bin"
train --set stage=2 --set output_dir="$tmp/s2" --set micro_batch=4 --set max_steps=4 > "$tmp/s2.log" 2>&1 || { fail "stage 2 run"; cat "$tmp/s2.log"; }
check "stage 2: vision tower bitwise identical" \
  "$st_diff" "$tmp/s2/final/model.safetensors" "$model/model.safetensors" --only vision_tower.
check "stage 2: projector and LLM changed" \
  "$st_diff" "$tmp/s2/final/model.safetensors" "$model/model.safetensors" --skip vision_tower. \
  --expect-diff multi_modal_projector. --expect-diff language_model.

# --- a run shorter than its warmup: LR 0 at step 1 as in transformers, and a warning ----
train --set stage=2 --set output_dir="$tmp/w1" --set micro_batch=4 --set max_steps=1 > "$tmp/w1.log" 2>&1 || fail "warmup run"
check "one step, all warmup: the warning says it runs at LR 0" grep -q "warning: the warmup (1 steps) covers the whole run (1 steps): its only step runs at LR 0" "$tmp/w1.log"
check "and metrics.jsonl records lr 0 (transformers: lr_lambda(0) = 0)" grep -q '"lr": 0.000000e+00' "$tmp/w1/metrics.jsonl"
train --set stage=2 --set output_dir="$tmp/w0" --set micro_batch=4 --set max_steps=1 --set warmup_ratio=0 > "$tmp/w0.log" 2>&1 || fail "no-warmup run"
check "warmup_ratio=0: no warning, step 1 at the peak lr" \
  bash -c "! grep -q 'covers the whole run' '$tmp/w0.log' && grep -q '\"lr\": 2.000000e-03' '$tmp/w0/metrics.jsonl'"
train --set stage=2 --set output_dir="$tmp/w4" --set micro_batch=4 --set max_steps=4 > "$tmp/w4.log" 2>&1 || fail "warmup run of 4"
check "a run longer than its warmup: no warning" bash -c "! grep -q 'covers the whole run' '$tmp/w4.log'"

# --- exact resume ------------------------------------------------------------------------
resume=(--set stage=2 --set micro_batch=4 --set epochs=2 --set save_every=3 --set keep_last=3)
train "${resume[@]}" --set output_dir="$tmp/ref" > "$tmp/ref.log" 2>&1 || { fail "reference run"; cat "$tmp/ref.log"; }
check "keep_last 3: only the newest three checkpoints remain" \
  bash -c "[ \"\$(ls -d '$tmp'/ref/checkpoint-* | xargs -n1 basename | tr '\n' ' ')\" = 'checkpoint-00000018 checkpoint-00000021 checkpoint-00000024 ' ]"
# (a) killed while writing the step-6 checkpoint: step 3 must survive and resume.
LLAVA_TEST_CRASH_DURING_SAVE=6 train "${resume[@]}" --set output_dir="$tmp/crash" > "$tmp/crash1.log" 2>&1
check "a kill during the checkpoint write leaves a .tmp folder, not a checkpoint" \
  test -d "$tmp/crash/checkpoint-00000006.tmp" -a ! -d "$tmp/crash/checkpoint-00000006" -a -d "$tmp/crash/checkpoint-00000003"
train "${resume[@]}" --set output_dir="$tmp/crash" > "$tmp/crash2.log" 2>&1 || { fail "resume after crash"; cat "$tmp/crash2.log"; }
check "resumed from the previous checkpoint" grep -q "resumed from .*checkpoint-00000003 at step 3" "$tmp/crash2.log"
check "resume after a crash in save: final weights bitwise equal" \
  "$st_diff" "$tmp/crash/final/model.safetensors" "$tmp/ref/final/model.safetensors"
# (b) SIGKILL from outside after the step-3 checkpoint.
train_bg "$tmp/kill1.log" "${resume[@]}" --set output_dir="$tmp/kill"
pid=$!
for _ in $(seq 1 400); do [ -d "$tmp/kill/checkpoint-00000003" ] && break; sleep 0.02; done
kill -9 $pid 2> /dev/null; wait $pid 2> /dev/null
check "the killed run stopped before its end" bash -c "! grep -q '^done' '$tmp/kill1.log' && test ! -d '$tmp/kill/final'"
train "${resume[@]}" --set output_dir="$tmp/kill" > "$tmp/kill2.log" 2>&1 || { fail "resume after SIGKILL"; cat "$tmp/kill2.log"; }
check "resumed after SIGKILL" grep -q "resumed from .*checkpoint-0000000[3-9] at step [3-9]" "$tmp/kill2.log"
check "resume after SIGKILL: final weights bitwise equal" \
  "$st_diff" "$tmp/kill/final/model.safetensors" "$tmp/ref/final/model.safetensors"
# step -> loss, the last record of each step (a killed run repeats the steps after its checkpoint)
step_losses() { grep -o '"step": [0-9]*, .*"loss": [0-9.eE+-]*' "$1" | awk -F'[:,]' '{l[$2+0] = $NF} END {for (s in l) print s, l[s]}' | sort -n; }
check "resume: every step's loss identical to the uninterrupted run" \
  diff <(step_losses "$tmp/kill/metrics.jsonl") <(step_losses "$tmp/ref/metrics.jsonl")
check "resume after a crash in save: every step's loss identical" \
  diff <(step_losses "$tmp/crash/metrics.jsonl") <(step_losses "$tmp/ref/metrics.jsonl")

# (c) SIGTERM: a checkpoint at the current step, exit 0, and the rerun continues exactly.
train_bg "$tmp/term1.log" "${resume[@]}" --set output_dir="$tmp/term"
pid=$!
for _ in $(seq 1 400); do grep -q '"step": 4' "$tmp/term/metrics.jsonl" 2> /dev/null && break; sleep 0.02; done
kill -TERM $pid; wait $pid; rc=$?
check "SIGTERM: exit code 0 and a checkpoint" bash -c "[ $rc -eq 0 ] && grep -q 'interrupted by signal 15' '$tmp/term1.log'"
train "${resume[@]}" --set output_dir="$tmp/term" > "$tmp/term2.log" 2>&1 || fail "resume after SIGTERM"
check "resume after SIGTERM: final weights bitwise equal" \
  "$st_diff" "$tmp/term/final/model.safetensors" "$tmp/ref/final/model.safetensors"

# (d) Resuming an older checkpoint of a folder that holds newer ones (from the run that went on):
# keep_last must never delete the checkpoint just written because newer, stale ones exist.
cp -r "$tmp/ref" "$tmp/old"
LLAVA_TEST_CRASH_DURING_SAVE=24 train "${resume[@]}" --set output_dir="$tmp/old" --set keep_last=1 \
  --set resume="$tmp/old/checkpoint-00000018" > "$tmp/old.log" 2>&1
check "resumed from the named older checkpoint" grep -q "resumed from .*checkpoint-00000018 at step 18" "$tmp/old.log"
check "keep_last 1 kept the step-21 checkpoint this run wrote" \
  test -f "$tmp/old/checkpoint-00000021/trainer_state.json"
check "the earlier run's later checkpoint is kept aside, not resumable" \
  test -d "$tmp/old/checkpoint-00000024.superseded" -a ! -d "$tmp/old/checkpoint-00000024"
train "${resume[@]}" --set output_dir="$tmp/old" --set keep_last=1 > "$tmp/old2.log" 2>&1 || fail "resume=auto after the crash"
check "resume=auto then continues this run (step 21), not the superseded one" \
  grep -q "resumed from .*checkpoint-00000021 at step 21" "$tmp/old2.log"

# --- non-finite steps are skipped, and too many in a row stop the run with a checkpoint --
train --set stage=2 --set output_dir="$tmp/nan" --set micro_batch=4 --set max_steps=10 --set lr=1e30 \
  --set max_grad_norm=0 --set warmup_ratio=0 --set max_bad_steps=2 > "$tmp/nan.log" 2>&1; rc=$?
check "non-finite: stopped with exit 1 after 2 bad steps, with a checkpoint" \
  bash -c "[ $rc -eq 1 ] && grep -q '2 non-finite steps in a row' '$tmp/nan.log' && ls -d '$tmp'/nan/checkpoint-* > /dev/null"
check "non-finite: the bad steps are marked in the log" grep -q "SKIPPED (non-finite)" "$tmp/nan.log"
check "non-finite: metrics.jsonl stays valid JSON (null, never nan/inf)" \
  bash -c "grep -q '\"loss\": null' '$tmp/nan/metrics.jsonl' && ! grep -qiE 'nan|inf[^o]' '$tmp/nan/metrics.jsonl'"

# --- accumulation equals a bigger micro-batch --------------------------------------------
train --set stage=2 --set output_dir="$tmp/acc" --set micro_batch=2 --set grad_accum=4 --set max_steps=5 > "$tmp/acc.log" 2>&1 || fail "accumulation run"
train --set stage=2 --set output_dir="$tmp/big" --set micro_batch=8 --set grad_accum=1 --set max_steps=5 > "$tmp/big.log" 2>&1 || fail "big micro-batch run"
check "micro 2 x accum 4 == micro 8 (5 steps, fp32 rounding)" \
  "$st_diff" "$tmp/acc/final/model.safetensors" "$tmp/big/final/model.safetensors" --tol 1e-5
check "accumulation: same losses" bash -c "diff <(awk '{printf \"%.4f\n\", \$1}' <(grep -o '\"loss\": [0-9.eE+-]*' '$tmp/acc/metrics.jsonl' | cut -d' ' -f2)) \
  <(awk '{printf \"%.4f\n\", \$1}' <(grep -o '\"loss\": [0-9.eE+-]*' '$tmp/big/metrics.jsonl' | cut -d' ' -f2))"

check "long accumulation (global_batch 100 = micro-batch 1 x 100)" \
  train --set stage=2 --set output_dir="$tmp/longacc" --set micro_batch=1 --set global_batch=100 --set max_steps=1

# --- more than 64 micro-batches per step from a LLaVA JSON (the shard loader as the source) ----
text_model=$src/tests/fixtures/tiny_llava_text
{ printf '['; for i in $(seq 0 129); do [ $i -gt 0 ] && printf ','
  printf '{"id": "s%d", "conversations": [{"from": "human", "value": "Question %d?"}, {"from": "gpt", "value": "Answer %d"}]}' $i $i $i
  done; printf ']\n'; } > "$tmp/d130.json"
ga=(--set model="$text_model" --set data="$tmp/d130.json" --set data_cache="$tmp/d130" --set stage=2 --set max_steps=1
    --set max_length=96 --set lr=2e-3 --set warmup_ratio=0 --set seed=3 --set workers=1)
"$llava" train "${ga[@]}" --set output_dir="$tmp/ga130" --set micro_batch=1 --set grad_accum=130 > "$tmp/ga130.log" 2>&1 \
  || { fail "grad_accum 130 run"; tail -3 "$tmp/ga130.log"; }
"$llava" train "${ga[@]}" --set output_dir="$tmp/mb130" --set micro_batch=130 --set grad_accum=1 > "$tmp/mb130.log" 2>&1 \
  || { fail "micro_batch 130 run"; tail -3 "$tmp/mb130.log"; }
check "micro 1 x accum 130 == micro 130 (fp32 rounding)" \
  "$st_diff" "$tmp/ga130/final/model.safetensors" "$tmp/mb130/final/model.safetensors" --tol 1e-5

# --- data parallel over MPI ---------------------------------------------------------------
if command -v mpirun > /dev/null 2>&1; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
  OMP_NUM_THREADS=1 mpirun -np 2 "$llava" train "${common[@]}" --set stage=2 --set output_dir="$tmp/dp" \
    --set micro_batch=2 --set max_steps=5 --set threads=1 > "$tmp/dp.log" 2>&1 || { fail "mpirun -np 2"; cat "$tmp/dp.log"; }
  train --set stage=2 --set output_dir="$tmp/single" --set micro_batch=4 --set max_steps=5 > "$tmp/single.log" 2>&1 || fail "single-process run"
  check "mpirun -np 2 (micro 2) == 1 process (micro 4), 5 steps" \
    "$st_diff" "$tmp/dp/final/model.safetensors" "$tmp/single/final/model.safetensors" --tol 1e-5
  check "data parallel ran on 2 processes" grep -q "on cpu x2" "$tmp/dp.log"
  # ZeRO-1: the same two processes with the optimizer state sharded.
  OMP_NUM_THREADS=1 mpirun -np 2 "$llava" train "${common[@]}" --set stage=2 --set output_dir="$tmp/zero" \
    --set micro_batch=2 --set max_steps=5 --set threads=1 --set zero_stage=1 > "$tmp/zero.log" 2>&1 || { fail "ZeRO-1 run"; cat "$tmp/zero.log"; }
  check "ZeRO-1 on 2 processes == replicated state on 2 processes (bitwise)" \
    "$st_diff" "$tmp/zero/final/model.safetensors" "$tmp/dp/final/model.safetensors"
  check "ZeRO-1 checkpoint holds one optimizer slice per process" \
    test -f "$tmp/zero/checkpoint-00000005/optimizer-00000-of-00002.safetensors" -a -f "$tmp/zero/checkpoint-00000005/optimizer-00001-of-00002.safetensors"
  # A stray slice of another run in the folder (here a replicated run's whole state) is refused, not mixed in.
  cp -r "$tmp/zero/checkpoint-00000005" "$tmp/mixed"
  cp "$tmp/dp/checkpoint-00000005/optimizer-00000-of-00001.safetensors" "$tmp/mixed/"
  out=$(train --set stage=2 --set output_dir="$tmp/mixedrun" --set micro_batch=4 --set max_steps=6 --set resume="$tmp/mixed" 2>&1); rc=$?
  check "optimizer slices that overlap are refused (exit 2)" bash -c "[ $rc -eq 2 ] && echo \"\$0\" | grep -q 'slices overlap'" "$out"
  # A ZeRO-1 run of 2 processes killed in its step-6 checkpoint, resumed by 1 process (re-slicing the state).
  LLAVA_TEST_CRASH_DURING_SAVE=6 OMP_NUM_THREADS=1 mpirun -np 2 "$llava" train "${common[@]}" --set stage=2 \
    --set output_dir="$tmp/zr" --set micro_batch=2 --set max_steps=8 --set save_every=3 --set threads=1 \
    --set zero_stage=1 > "$tmp/zr1.log" 2>&1
  train --set stage=2 --set output_dir="$tmp/zr" --set micro_batch=4 --set max_steps=8 --set save_every=3 > "$tmp/zr2.log" 2>&1 \
    || { fail "resume of a ZeRO-1 checkpoint by one process"; cat "$tmp/zr2.log"; }
  check "ZeRO-1 checkpoint resumed by one process" grep -q "resumed from .*checkpoint-00000003 at step 3" "$tmp/zr2.log"
  train --set stage=2 --set output_dir="$tmp/zref" --set micro_batch=4 --set max_steps=8 > "$tmp/zref.log" 2>&1 || fail "8-step reference"
  check "... and ends where one process alone ends (fp32 rounding)" \
    "$st_diff" "$tmp/zr/final/model.safetensors" "$tmp/zref/final/model.safetensors" --tol 1e-5
else
  echo "skip: mpirun not found (scripts/install_deps.sh installs openmpi-bin)"
fi

echo "$failures failures"
[ $failures -eq 0 ]
