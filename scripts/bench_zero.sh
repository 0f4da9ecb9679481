#!/usr/bin/env bash
# CPU step time of zero_stage 0..3 with 2 MPI processes on one machine (the
# cost of ZeRO-2/3's extra communication: per-layer reduce-scatter, the
# all-gathers of each layer before forward and backward). Model: the test
# fixture's vision tower with a LLaMA of 256 x 8 layers (vocabulary 512),
# random weights; synthetic data, micro-batch 2 x 96 tokens, 12 steps, the
# median of steps 3..12. Prints one line per stage.
# usage: scripts/bench_zero.sh LLAVA SOURCE_DIR BUILD_DIR [PROCESSES]
set -eu
llava=$1 src=$2 np=${4:-2}
tmp=$(mktemp -d /tmp/llava_bench_zero.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
model=$src/tests/fixtures/tiny_llava15
sed -e 's/"hidden_size": 64/"hidden_size": 256/' -e 's/"intermediate_size": 128/"intermediate_size": 1024/' \
    -e 's/"num_hidden_layers": 2/"num_hidden_layers": 8/' -e 's/"head_dim": 16/"head_dim": 64/' \
    -e 's/"vocab_size": 160/"vocab_size": 512/' "$model/config.json" > "$tmp/big.json"
"$llava" init --config "$tmp/big.json" --tokenizer "$model" --out "$tmp/big" > /dev/null
for z in 0 1 2 3; do
  mpirun -np "$np" "$llava" train --set model="$tmp/big" --set data=synthetic:96 --set max_length=96 --set max_steps=12 \
    --set threads=1 --set stage=2 --set micro_batch=2 --set log_every=100 --set zero_stage=$z \
    --set output_dir="$tmp/z$z" > "$tmp/z$z.log" 2>&1
  grep -o '"step_s": [0-9.]*' "$tmp/z$z/metrics.jsonl" | cut -d' ' -f2 | tail -n +3 | sort -g \
    | awk -v z=$z -v np="$np" '{ a[NR] = $1 } END { m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2;
        printf "zero_stage %d, %d processes: median step %.4f s over %d steps\n", z, np, m, NR }'
done
