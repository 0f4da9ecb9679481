#!/usr/bin/env bash
# Hostile input to the commands (issue 9): each case once crashed, aborted,
# deleted data or lost something silently; now it exits 0 doing the right
# thing or exits 2 with a message naming the input. Also runs under the
# AddressSanitizer build (llava_asan) as test_hostile_commands_asan.
#  1 pad of extreme aspect ratios (60000x2, 33x22575): preprocess, prep
#    (pixels and encoded), train on the encoded shards, generate
#  2 --ids with a non-integer (was a double free)
#  3 a folder where a file is expected (was "out of memory allocating 2^63")
#  4 demo --out on a folder that is not a demo's (was deleted)
#  5 \u0000 in a conversation (was a silently cut turn)
#  7 non-finite and out-of-range settings, flags, model configs, safetensors
# 10 an empty GIF frame outside the screen (was a black 65535x27 image)
# usage: test_hostile_commands.sh LLAVA_BINARY SOURCE_DIR BUILD_DIR
set -u
llava=$1
src=$2
tmp=$(mktemp -d /tmp/llava_hostile_cmd.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
M=$src/tests/fixtures/tiny_llava_text
IMG=$src/tests/fixtures/images
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

# expect_bad DESCRIPTION PATTERN -- command...: exit code 2, stderr matches PATTERN
expect_bad() {
  local what=$1 pattern=$2; shift 3
  "$@" > "$tmp/out.txt" 2> "$tmp/err.txt"
  local rc=$?
  if [ $rc -ne 2 ] || ! grep -qE -e "$pattern" "$tmp/err.txt"; then
    fail "$what: exit $rc (want 2), stderr:"; head -c 2000 "$tmp/err.txt"
  else
    ok "$what: $(head -c 200 "$tmp/err.txt")"
  fi
}
# expect_ok DESCRIPTION -- command...: exit code 0
expect_ok() {
  local what=$1; shift 2
  if "$@" > "$tmp/out.txt" 2> "$tmp/err.txt"; then ok "$what"; else fail "$what: exit $?:"; tail -c 2000 "$tmp/err.txt"; fi
}

# ---- 1: extreme aspect ratios in pad mode ---------------------------------------
mkdir -p "$tmp/images"
cp "$IMG/huge/wide_60000x2.png" "$IMG/huge/tall_33x22575.jpg" "$M/example.png" "$tmp/images/"
expect_ok "preprocess --aspect pad of 60000x2" -- \
  "$llava" preprocess --image "$tmp/images/wide_60000x2.png" --size 336 --aspect pad --out "$tmp/wide.safetensors"
expect_ok "preprocess --aspect pad of 33x22575" -- \
  "$llava" preprocess --image "$tmp/images/tall_33x22575.jpg" --model "$M" --aspect pad --out "$tmp/tall.safetensors"
expect_ok "generate --image 60000x2 (pad is its default)" -- \
  "$llava" generate --model "$M" --image "$tmp/images/wide_60000x2.png" --prompt "What is it?" --max-new-tokens 4
python_free_data() {  # 3 samples: the two extreme images and an ordinary one, twice each
  local i=0 f
  printf '['
  for rep in 1 2; do
    for f in wide_60000x2.png tall_33x22575.jpg example.png; do
      [ $i -gt 0 ] && printf ','
      printf '{"id": "s%d", "image": "%s", "conversations": [{"from": "human", "value": "<image>\\nWhat is it?"}, {"from": "gpt", "value": "A picture."}]}\n' $i "$f"
      i=$((i + 1))
    done
  done
  printf ']\n'
}
python_free_data > "$tmp/extreme.json"
for store in pixels encoded; do
  expect_ok "prep --aspect pad --store $store with extreme images" -- \
    "$llava" prep --data "$tmp/extreme.json" --images "$tmp/images" --model "$M" --out "$tmp/shards_$store" \
    --aspect pad --store "$store" --template vicuna_v1 --quiet
  grep -qE '"written":\s*6' "$tmp/shards_$store/report.json" && ok "prep $store wrote all 6 samples" \
    || { fail "prep $store did not write all 6 samples"; cat "$tmp/shards_$store/report.json"; }
done
expect_ok "train on encoded shards holding the extreme images (loader decodes and pads)" -- \
  "$llava" train --set model="$M" --set data="$tmp/shards_encoded" --set aspect=pad --set output_dir="$tmp/run_enc" \
  --set micro_batch=3 --set max_steps=2 --set workers=1 --set log_every=1

# ---- 2: --ids with a non-integer ----------------------------------------------------
expect_bad "generate --ids with a string item" "--ids item 2 is not a token id" -- \
  "$llava" generate --model "$src/tests/fixtures/tiny_llava15" --ids '[1, 2, "a"]'
expect_bad "generate --ids with a negative id" "--ids item 0" -- \
  "$llava" generate --model "$src/tests/fixtures/tiny_llava15" --ids '[-5]'

# ---- 3: a folder where a file is expected --------------------------------------------
mkdir -p "$tmp/adir" "$tmp/model_dir_cfg/config.json"
cp "$M/model.safetensors" "$tmp/model_dir_cfg/"
expect_bad "train --config DIR" "is a directory" -- "$llava" train --config "$tmp/adir"
expect_bad "init --config DIR" "is a directory" -- "$llava" init --config "$tmp/adir" --out "$tmp/init_out"
expect_bad "a model folder whose config.json is a folder" "is a directory" -- \
  "$llava" generate --model "$tmp/model_dir_cfg" --ids '[1, 2]'
expect_bad "eval scienceqa --data DIR" "is a directory" -- \
  "$llava" eval scienceqa --model "$M" --data "$tmp/adir" --images "$tmp/images" \
  --problems "$src/tests/fixtures/scienceqa/problems.json" --out "$tmp/sqa_out"
expect_bad "preprocess --image DIR" "is a directory" -- \
  "$llava" preprocess --image "$tmp/adir" --size 32 --out "$tmp/x.safetensors"
expect_bad "forward --batch DIR" "is a directory" -- \
  "$llava" forward --model "$src/tests/fixtures/tiny_llava15" --batch "$tmp/adir" --out "$tmp/o.safetensors"

# ---- 4: demo --out on someone's folder -------------------------------------------------
mkdir -p "$tmp/precious"; echo "thesis" > "$tmp/precious/thesis.txt"
expect_bad "demo --out on a non-empty folder that is no demo output" "not a previous demo's output" -- \
  "$llava" demo --out "$tmp/precious" --quick
[ -s "$tmp/precious/thesis.txt" ] && ok "... and the folder is untouched" || fail "demo deleted the folder's files"
echo "x" > "$tmp/afile"
expect_bad "demo --out on a file" "not a folder" -- "$llava" demo --out "$tmp/afile" --quick
[ -s "$tmp/afile" ] && ok "... and the file is untouched" || fail "demo deleted the file"

# ---- 5: \u0000 inside a conversation --------------------------------------------------
cat > "$tmp/nul.jsonl" <<'EOF'
{"id": "nul_turn", "conversations": [{"from": "human", "value": "Say\u0000 it"}, {"from": "gpt", "value": "No."}]}
{"id": "nul_before_image", "image": "example.png", "conversations": [{"from": "human", "value": "A\u0000<image>"}, {"from": "gpt", "value": "B"}]}
{"id": "escaped_backslash", "conversations": [{"from": "human", "value": "a \\u0000 b"}, {"from": "gpt", "value": "ok"}]}
EOF
expect_ok "prep of samples with \\u0000" -- \
  "$llava" prep --data "$tmp/nul.jsonl" --images "$tmp/images" --model "$M" --out "$tmp/shards_nul" --template vicuna_v1 --quiet
rep=$tmp/shards_nul/report.json
if grep -qE '"written":\s*1' "$rep" && [ "$(grep -c 'NUL character' "$rep")" -eq 2 ] && grep -q nul_turn "$rep" &&
   grep -q nul_before_image "$rep"; then
  ok "the two samples with a NUL are refused with the reason, the escaped backslash is written"
else
  fail "report.json does not name the NUL samples"; cat "$rep"
fi

# ---- 7: non-finite and out-of-range numbers ---------------------------------------------
tr() { "$llava" train --set model="$M" --set data=synthetic:8 --set output_dir="$tmp/run7" "$@"; }
expect_bad "lr = 1e2222 (inf)" '"lr" = inf is outside \[0, ' -- tr --set lr=1e2222
expect_bad "lr = -1" '"lr" = -1 is outside' -- tr --set lr=-1
expect_bad "micro_batch = 2e9" '"micro_batch" = 2000000000 is outside \[1, 65536\]' -- tr --set micro_batch=2000000000
expect_bad "micro_batch x grad_accum too large" "micro_batch x grad_accum" -- \
  tr --set micro_batch=65536 --set grad_accum=65536
expect_bad "workers = 100000" '"workers" = 100000 is outside \[0, 256\]' -- tr --set workers=100000
expect_bad "max_grad_norm = nan" "cannot parse value|outside" -- tr --set max_grad_norm=nan
printf '{"lr": 1e400}\n' > "$tmp/inf.json"
expect_bad "a run config with lr 1e400" '"lr" = inf is outside' -- "$llava" train --config "$tmp/inf.json"
expect_bad "preprocess --size 1000000" "--size = 1000000 is outside \[1, 4096\]" -- \
  "$llava" preprocess --image "$M/example.png" --size 1000000 --out "$tmp/x.safetensors"
expect_bad "generate --temperature inf" "--temperature expects a finite number" -- \
  "$llava" generate --model "$M" --prompt hi --temperature inf
expect_bad "prep --workers 100000" "--workers = 100000 is outside" -- \
  "$llava" prep --data "$tmp/nul.jsonl" --images "$tmp/images" --model "$M" --out "$tmp/s7" --template vicuna_v1 --workers 100000
model_cfg() {  # a copy of tiny_llava15 whose config.json goes through sed "$1"
  rm -rf "$tmp/m7"; mkdir -p "$tmp/m7"; cp "$src/tests/fixtures/tiny_llava15/model.safetensors" "$tmp/m7/"
  sed "$1" "$src/tests/fixtures/tiny_llava15/config.json" > "$tmp/m7/config.json"
}
fwd7() { "$llava" forward --model "$tmp/m7" --batch "$src/tests/fixtures/tiny_llava15/batch.safetensors" --out "$tmp/o.safetensors"; }
model_cfg 's/"num_hidden_layers": 2,/"num_hidden_layers": 2147483647,/'
expect_bad "num_hidden_layers 2^31-1" "num_hidden_layers = 2147483647 is outside \[1, 1024\]" -- fwd7
model_cfg 's/"image_size": 28/"image_size": 65536/; s/"patch_size": 7/"patch_size": 1/'
expect_bad "image_size 65536, patch 1" "image_size = 65536 is outside" -- fwd7
model_cfg 's/"rms_norm_eps": [0-9e.-]*/"rms_norm_eps": 1e999/'
expect_bad "rms_norm_eps 1e999 (inf)" "rms_norm_eps.*finite" -- fwd7
le64() { local n=$1 i; for i in 0 1 2 3 4 5 6 7; do printf "\\$(printf '%03o' $(((n >> (8 * i)) & 255)))"; done; }
write_st() { { le64 "${#2}"; printf '%s' "$2"; head -c "$3" /dev/zero; } > "$1"; }
write_st "$tmp/b1e300.safetensors" '{"input_ids":{"dtype":"I64","shape":[1e300,1],"data_offsets":[0,8]}}' 8
expect_bad "safetensors shape 1e300" "shape\[0\] is not an integer in \[0, 9e15\]" -- \
  "$llava" forward --model "$src/tests/fixtures/tiny_llava15" --batch "$tmp/b1e300.safetensors" --out "$tmp/o.safetensors"
write_st "$tmp/b1e400.safetensors" '{"input_ids":{"dtype":"I64","shape":[1,1],"data_offsets":[0,1e400]}}' 8
expect_bad "safetensors offsets 1e400" "data_offsets are not integers" -- \
  "$llava" forward --model "$src/tests/fixtures/tiny_llava15" --batch "$tmp/b1e400.safetensors" --out "$tmp/o.safetensors"
write_st "$tmp/bnul.safetensors" '{"input\u0000_ids":{"dtype":"I64","shape":[1,1],"data_offsets":[0,8]}}' 8
expect_bad "safetensors tensor name with \\u0000" "NUL" -- \
  "$llava" forward --model "$src/tests/fixtures/tiny_llava15" --batch "$tmp/bnul.safetensors" --out "$tmp/o.safetensors"

# ---- 10: an empty GIF frame far outside the logical screen -------------------------------
expect_bad "GIF with a 0x0 frame at x=65535" "GIF: the first frame is empty" -- \
  "$llava" preprocess --image "$IMG/bad/empty_frame.gif" --size 32 --out "$tmp/x.safetensors"

echo "$failures failures"
[ $failures -eq 0 ]
