#!/usr/bin/env bash
# ZeRO-2 and ZeRO-3 on the CPU over MPI (train/zero.c) and the memory planner
# (train/plan.c, `llava plan`):
#  - zero_stage 2 and 3 with 2 and 3 processes: weights after 5 steps bitwise
#    those of zero_stage 0 with the same processes, losses equal; stage 1
#    (the frozen LLM and vision tower sharded too) and stage 2 (with and
#    without the vision tower sharded); recompute off; LoRA adapters; SigLIP + Qwen2;
#  - with gradient accumulation equal to fp32 rounding: ZeRO-2 reduces every
#    micro-batch's gradients as backward makes them (that is its memory
#    saving), zero_stage 0 sums the micro-batches locally first, so the sum
#    runs in another order;
#  - a zero_stage 3 run of 3 processes stopped and resumed by 2 processes with
#    zero_stage 1 and with zero_stage 3 ends where the uninterrupted run ends;
#  - the peak resident memory of each process falls with the stage and the
#    process count as `llava plan` predicts (saving vs zero_stage 0 within 15%);
#  - a run that cannot fit is refused with the setting to change.
# usage: test_zero.sh LLAVA SOURCE_DIR BUILD_DIR
set -u
llava=$1
src=$2
build=$3
st_diff=$build/tests/st_diff
if ! command -v mpirun > /dev/null 2>&1; then
  echo "skip: mpirun not found (scripts/install_deps.sh installs openmpi-bin)"
  exit 0
fi
tmp=$(mktemp -d /tmp/llava_zero.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
model=$src/tests/fixtures/tiny_llava15
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@" > "$tmp/check.txt" 2>&1; then echo "ok: $what"; else fail "$what"; cat "$tmp/check.txt"; fi; }
losses() { grep -o '"loss": [0-9.eE+-]*' "$1/metrics.jsonl" | cut -d' ' -f2; }

common=(--set "model=$model" --set data=synthetic:48 --set max_length=96 --set lr=2e-3 --set warmup_ratio=0.1
        --set log_every=100 --set seed=3 --set threads=1)
# run NP NAME [--set ...]: mpirun -np NP llava train into $tmp/NAME
run() { local np=$1 name=$2; shift 2
  mpirun -np "$np" "$llava" train "${common[@]}" --set output_dir="$tmp/$name" "$@" > "$tmp/$name.log" 2>&1 \
    || { fail "run $name"; tail -5 "$tmp/$name.log"; }; }
same() { # same A B [--tol X]: final weights and losses
  local a=$1 b=$2; shift 2
  "$st_diff" "$tmp/$a/final/model.safetensors" "$tmp/$b/final/model.safetensors" "$@" || return 1
  [ $# -gt 0 ] || diff <(losses "$tmp/$a") <(losses "$tmp/$b")
}

# --- equal to zero_stage 0 --------------------------------------------------------------
for np in 2 3; do
  run $np s2z0_$np --set stage=2 --set micro_batch=2 --set max_steps=5 --set zero_stage=0
  run $np s2z2_$np --set stage=2 --set micro_batch=2 --set max_steps=5 --set zero_stage=2
  run $np s2z3_$np --set stage=2 --set micro_batch=2 --set max_steps=5 --set zero_stage=3 --set recompute=false
  check "stage 2, $np processes: zero_stage 2 == zero_stage 0 (bitwise weights, equal losses)" same s2z2_$np s2z0_$np
  check "stage 2, $np processes: zero_stage 3 (recompute off) == zero_stage 0 (bitwise)" same s2z3_$np s2z0_$np
  run $np s2z3f_$np --set stage=2 --set micro_batch=2 --set max_steps=5 --set zero_stage=3 --set zero3_shard_frozen=true
  check "stage 2, $np processes: zero_stage 3 with the vision tower sharded too == zero_stage 0 (bitwise)" same s2z3f_$np s2z0_$np
done
check "the runs clipped the gradient (the norm from slices decided the update)" \
  bash -c "grep -o '\"grad_norm\": [0-9.]*' '$tmp/s2z2_2/metrics.jsonl' | awk '{ if (\$2 > 1.0) n++ } END { exit n > 0 ? 0 : 1 }'"
run 2 s1z0 --set stage=1 --set micro_batch=2 --set max_steps=5 --set zero_stage=0
run 2 s1z2 --set stage=1 --set micro_batch=2 --set max_steps=5 --set zero_stage=2
run 2 s1z3 --set stage=1 --set micro_batch=2 --set max_steps=5 --set zero_stage=3 --set zero3_shard_frozen=true
check "stage 1: zero_stage 2 == zero_stage 0 (bitwise)" same s1z2 s1z0
check "stage 1: zero_stage 3 with the frozen LLM and vision tower sharded == zero_stage 0 (bitwise)" same s1z3 s1z0
# A SigLIP tower (no CLS) + Qwen2 (attention biases inside the layers), everything sharded.
q=(--set "model=$src/tests/fixtures/tiny_siglip_qwen2" --set stage=2 --set micro_batch=2 --set max_steps=4 --set max_length=128)
run 3 qz0 "${q[@]}" --set zero_stage=0
run 3 qz3 "${q[@]}" --set zero_stage=3 --set zero3_shard_frozen=true
check "SigLIP + Qwen2, 3 processes: zero_stage 3 (vision tower sharded too) == zero_stage 0 (bitwise)" same qz3 qz0
run 2 lz0 --set stage=2 --set micro_batch=2 --set max_steps=5 --set lora_r=4 --set zero_stage=0
run 2 lz3 --set stage=2 --set micro_batch=2 --set max_steps=5 --set lora_r=4 --set zero_stage=3
check "LoRA (r 4): zero_stage 3 == zero_stage 0 (the adapter file byte for byte, losses equal)" \
  bash -c "cmp '$tmp/lz3/final/adapter_model.safetensors' '$tmp/lz0/final/adapter_model.safetensors' && diff <(grep -o '\"loss\": [0-9.]*' '$tmp/lz3/metrics.jsonl') <(grep -o '\"loss\": [0-9.]*' '$tmp/lz0/metrics.jsonl')"
run 2 gaz0 --set stage=2 --set micro_batch=1 --set grad_accum=2 --set max_steps=5 --set zero_stage=0
run 2 gaz3 --set stage=2 --set micro_batch=1 --set grad_accum=2 --set max_steps=5 --set zero_stage=3
check "grad_accum 2: zero_stage 3 == zero_stage 0 to fp32 rounding (per-micro-batch reduction)" same gaz3 gaz0 --tol 1e-6

# --- resume across process counts and stages ------------------------------------------------
rs=(--set stage=2 --set max_steps=8 --set save_every=3)
LLAVA_TEST_CRASH_DURING_SAVE=6 mpirun -np 3 "$llava" train "${common[@]}" "${rs[@]}" --set micro_batch=2 \
  --set zero_stage=3 --set output_dir="$tmp/r3" > "$tmp/r3.log" 2>&1
check "the zero_stage 3 run left a step-3 checkpoint with 3 optimizer slices" \
  test -f "$tmp/r3/checkpoint-00000003/optimizer-00002-of-00003.safetensors"
cp -r "$tmp/r3" "$tmp/r3b"
run 2 r3 "${rs[@]}" --set micro_batch=3 --set zero_stage=1
run 2 r3b "${rs[@]}" --set micro_batch=3 --set zero_stage=3
run 3 rref --set stage=2 --set max_steps=8 --set micro_batch=2 --set zero_stage=0
check "3 processes zero_stage 3 -> 2 processes zero_stage 1: resumed at step 3" grep -q "resumed from .*checkpoint-00000003 at step 3" "$tmp/r3.log"
check "... ends where the uninterrupted run ends (fp32 rounding: micro-batches of 3, not 2)" same r3 rref --tol 1e-5
check "3 processes zero_stage 3 -> 2 processes zero_stage 3: same" same r3b rref --tol 1e-5

# --- peak memory as planned ------------------------------------------------------------------
# A model whose weights outweigh the process's own memory: LLM 256 wide, 8 layers, vocabulary 512.
sed -e 's/"hidden_size": 64/"hidden_size": 256/' -e 's/"intermediate_size": 128/"intermediate_size": 1024/' \
    -e 's/"num_hidden_layers": 2/"num_hidden_layers": 8/' -e 's/"head_dim": 16/"head_dim": 64/' \
    -e 's/"vocab_size": 160/"vocab_size": 512/' "$model/config.json" > "$tmp/big.json"
"$llava" init --config "$tmp/big.json" --tokenizer "$model" --out "$tmp/big" > "$tmp/init.log" 2>&1 || { fail "init"; cat "$tmp/init.log"; }
mem=(--set "model=$tmp/big" --set data=synthetic:24 --set max_length=64 --set max_steps=2 --set threads=1 --set stage=2
     --set micro_batch=1 --set log_every=100)
for np in 2 3; do
  "$llava" plan "${mem[@]}" --world $np --json > "$tmp/plan$np.json" || fail "llava plan --json"
  planned=($(grep -o '"total": [0-9]*' "$tmp/plan$np.json" | cut -d' ' -f2))
  for z in 0 1 2 3; do
    mpirun -np $np "$llava" train "${mem[@]}" --set zero_stage=$z --set output_dir="$tmp/mem$np$z" > "$tmp/mem$np$z.log" 2>&1 \
      || { fail "memory run np $np zero $z"; tail -3 "$tmp/mem$np$z.log"; }
    # the largest process's loop peak, bytes
    measured[$z]=$(grep -o 'MiB per process:.*' "$tmp/mem$np$z.log" | cut -d: -f2 | tr ' ' '\n' | sort -g | tail -1 \
                   | awk '{ printf "%.0f", $1 * 1048576 }')
    echo "np $np zero_stage $z: planned $((planned[z] / 1048576)) MiB (+ the process itself), measured peak $((measured[z] / 1048576)) MiB"
  done
  for z in 1 2 3; do
    check "np $np: zero_stage $z saves what the plan says vs zero_stage 0 (within 15%)" \
      awk -v m=$((measured[0] - measured[z])) -v p=$((planned[0] - planned[z])) \
      'BEGIN { printf "measured saving %.1f MiB, planned %.1f MiB\n", m / 1048576, p / 1048576; d = m - p; if (d < 0) d = -d; exit (p > 0 && m > 0 && d <= 0.15 * p) ? 0 : 1 }'
  done
  peak3[$np]=${measured[3]}
done
check "zero_stage 3: 3 processes peak below 2 processes" test "${peak3[3]}" -lt "${peak3[2]}"

# --- the planner's refusal ---------------------------------------------------------------------
out=$(mpirun -np 3 "$llava" train "${mem[@]}" --set zero_stage=0 --set memory_limit_gb=0.1 --set output_dir="$tmp/refuse" 2>&1); rc=$?
check "a run that cannot fit is refused (exit 2) naming the setting that makes it fit" \
  bash -c "[ $rc -eq 2 ] && grep -q 'refused: zero_stage 0 needs .* per process but a process has 102.4 MiB.*--set zero_stage=2' <<< \"\$0\"" "$out"
check "... after printing the table" bash -c "grep -q '^\* 0 .* NO' <<< \"\$0\"" "$out"
out=$("$llava" train "${mem[@]}" --set memory_limit_gb=0.001 --set output_dir="$tmp/refuse1" 2>&1); rc=$?
check "nothing fits: refused, saying so" bash -c "[ $rc -eq 2 ] && grep -q 'nothing in the table fits' <<< \"\$0\"" "$out"
out=$("$llava" plan "${mem[@]}" --world 3 --gpu-memory 0.1GB 2>&1); rc=$?
check "llava plan: exit 3 and the same advice when the config's stage does not fit" \
  bash -c "[ $rc -eq 3 ] && grep -q 'does not fit: .*--set zero_stage=2' <<< \"\$0\"" "$out"

out=$("$llava" plan --world 0 2>&1); rc=$?
check "llava plan --world 0: exit 2 with the reason" bash -c "[ $rc -eq 2 ] && grep -q 'positive process count' <<< \"\$0\"" "$out"
out=$("$llava" plan --set model="$tmp/nowhere" 2>&1); rc=$?
check "llava plan without a model config: exit 2 naming the way out" bash -c "[ $rc -eq 2 ] && grep -q 'model-config' <<< \"\$0\"" "$out"
check "llava plan --help" "$llava" plan --help

# --- every rank issues the same collectives (a mismatch hangs) ------------------------------------
# 32 samples, global batch 6: the 6th step has 2 samples, ranks 1 and 2 none (they idle through the
# step's collectives); micro-batches of one sample: some are text-only (no vision forward).
short=(--set data=synthetic:32 --set max_length=64 --set stage=2 --set micro_batch=2)
timeout 600 mpirun -np 3 "$llava" train "${common[@]}" "${short[@]}" --set zero_stage=2 --set output_dir="$tmp/short2" \
  > "$tmp/short2.log" 2>&1 || fail "run short2 (a hang or a crash)"
run 3 short0 "${short[@]}" --set zero_stage=0
check "3 processes, a short last step leaving 2 ranks without a sample: zero_stage 2 ends == zero_stage 0 (bitwise)" \
  same short2 short0
text=(--set data=synthetic:12 --set max_length=64 --set stage=2 --set micro_batch=1 --set max_steps=6)
timeout 600 mpirun -np 2 "$llava" train "${common[@]}" "${text[@]}" --set zero_stage=3 --set zero3_shard_frozen=true \
  --set output_dir="$tmp/text3" > "$tmp/text3.log" 2>&1 || fail "run text3 (a hang or a crash)"
run 2 text0 "${text[@]}" --set zero_stage=0
check "micro-batches without images on one rank only: ZeRO-3 with the vision tower sharded == zero_stage 0 (bitwise)" \
  bash -c "grep -q '\"images\": 1,' '$tmp/text3/metrics.jsonl' && '$st_diff' '$tmp/text3/final/model.safetensors' '$tmp/text0/final/model.safetensors'"

echo "$failures failures"
[ $failures -eq 0 ]
