#!/usr/bin/env bash
# `llava train` under faults (issue 9 items 6 and 8):
#  - a metrics.jsonl that cannot be written (a full disk: /dev/full) stops
#    the run with exit 1 and a message naming the file, instead of going on;
#  - resuming after a torn record (and after records past the checkpoint)
#    cuts metrics.jsonl back to the checkpoint's step: the file stays valid
#    JSONL with every step once; the cut lines go to metrics.jsonl.superseded;
#  - after a divergence (lr 1e30 blows the weights up in a step whose loss
#    is finite, then non-finite steps) the run names the last checkpoint
#    saved before that update, sets the later ones aside as *.diverged, and
#    rerunning with a lower learning rate resumes from it and finishes.
# usage: test_train_faults.sh LLAVA SOURCE_DIR BUILD_DIR
set -u
llava=$1
src=$2
tmp=$(mktemp -d /tmp/llava_train_faults.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }
common=(--set "model=$src/tests/fixtures/tiny_llava15" --set data=synthetic:48 --set max_length=96 --set log_every=100
        --set seed=3 --set stage=2 --set micro_batch=4 --set warmup_ratio=0 --set max_grad_norm=0)
train() { "$llava" train "${common[@]}" "$@"; }
# Every line of $1 is a JSON object with a "step"; prints the steps.
steps_of() {
  local line n=0
  while IFS= read -r line; do
    case $line in '{"step": '*'}') ;; *) echo "bad line: $line"; return 1 ;; esac
    echo "$line" | sed 's/^{"step": \([0-9]*\),.*/\1/'
  done < "$1"
}

# ---- metrics.jsonl on a full disk -----------------------------------------------------
if [ -w /dev/full ]; then
  mkdir -p "$tmp/full"; ln -s /dev/full "$tmp/full/metrics.jsonl"
  train --set output_dir="$tmp/full" --set lr=2e-3 --set max_steps=3 > "$tmp/full.log" 2>&1; rc=$?
  if [ $rc -eq 1 ] && grep -q "metrics.jsonl: write failed: No space left on device" "$tmp/full.log"; then
    ok "a metrics write on a full disk stops the run (exit 1, named)"
  else
    fail "full disk: exit $rc"; cat "$tmp/full.log"
  fi
else
  echo "skip: no writable /dev/full"
fi

# ---- resume after a torn record ------------------------------------------------------------
run=$tmp/torn
train --set output_dir="$run" --set lr=2e-3 --set max_steps=4 --set save_every=2 > "$tmp/torn1.log" 2>&1 ||
  { fail "first run"; cat "$tmp/torn1.log"; }
# As if the run went on to step 5 and the disk filled up in the middle of step 6's record.
sed -n 4p "$run/metrics.jsonl" | sed 's/"step": 4/"step": 5/' >> "$run/metrics.jsonl"
printf '{"step": 6, "total_steps": 6, "epoch": 0.5, "lo' >> "$run/metrics.jsonl"
rm -rf "$run/checkpoint-00000004"  # the newest checkpoint is step 2
train --set output_dir="$run" --set lr=2e-3 --set max_steps=6 --set save_every=2 > "$tmp/torn2.log" 2>&1 ||
  { fail "resumed run"; cat "$tmp/torn2.log"; }
got=$(steps_of "$run/metrics.jsonl" | tr '\n' ' ')
[ "$got" = "1 2 3 4 5 6 " ] && ok "after resuming at step 2: metrics.jsonl is valid, steps $got" ||
  { fail "metrics.jsonl after resume: '$got'"; cat "$run/metrics.jsonl"; }
[ "$(wc -l < "$run/metrics.jsonl.superseded")" -eq 4 ] && grep -q '"lo$' "$run/metrics.jsonl.superseded" &&
  ok "the 3 cut records and the torn one are in metrics.jsonl.superseded" ||
  { fail "metrics.jsonl.superseded"; cat "$run/metrics.jsonl.superseded"; }
grep -q "moved to metrics.jsonl.superseded" "$tmp/torn2.log" && ok "the cut is announced" || fail "no message about the cut"

# ---- divergence ----------------------------------------------------------------------------------
run=$tmp/div
train --set output_dir="$run" --set lr=2e-3 --set max_steps=4 --set save_every=2 --set keep_last=5 > "$tmp/div1.log" 2>&1 ||
  { fail "healthy run"; cat "$tmp/div1.log"; }
train --set output_dir="$run" --set lr=1e30 --set max_steps=10 --set save_every=2 --set keep_last=5 \
  --set max_bad_steps=2 > "$tmp/div2.log" 2>&1; rc=$?
cat "$tmp/div2.log" | tail -4
[ $rc -eq 1 ] && grep -q "Resume from $run/checkpoint-00000004 (step 4" "$tmp/div2.log" &&
  ok "divergence: exit 1, names checkpoint-4 (saved before the update that blew up at step 5)" ||
  { fail "divergence message (exit $rc)"; cat "$tmp/div2.log"; }
[ -d "$run/checkpoint-00000007.diverged" ] && [ -d "$run/checkpoint-00000006.diverged" ] &&
  [ ! -e "$run/checkpoint-00000006" ] && [ -d "$run/checkpoint-00000004" ] &&
  ok "the diverged state and the checkpoint saved during the streak are set aside, checkpoint-4 kept" ||
  { fail "checkpoint folders"; ls "$run"; }
grep -qE '"weights_finite":\s*true' "$run/checkpoint-00000004/trainer_state.json" &&
  ok "checkpoint-4 records finite weights" || fail "checkpoint-4 weights_finite"
train --set output_dir="$run" --set lr=2e-3 --set max_steps=6 --set save_every=2 --set keep_last=5 > "$tmp/div3.log" 2>&1; rc=$?
[ $rc -eq 0 ] && grep -q "resumed from $run/checkpoint-00000004 at step 4" "$tmp/div3.log" &&
  ok "rerun with a lower learning rate resumes from checkpoint-4 and finishes" ||
  { fail "rerun after divergence (exit $rc)"; cat "$tmp/div3.log"; }
"$llava" forward --model "$run/final" --batch "$src/tests/fixtures/tiny_llava15/batch.safetensors" \
  --out "$tmp/fwd.safetensors" > "$tmp/fwd.log" 2>&1 && grep -qE "loss [0-9]" "$tmp/fwd.log" &&
  ok "the final model gives a finite loss" || { fail "final model"; cat "$tmp/fwd.log"; }

echo "$failures failures"
[ $failures -eq 0 ]
