#!/usr/bin/env bash
# `llava forward` on hostile inputs: every malformed model folder or batch
# file must end with a clear message and exit code 2, never a crash (this
# script also runs with the AddressSanitizer build, llava_asan).
# usage: test_cli_hostile.sh LLAVA_BINARY SOURCE_DIR BUILD_DIR
set -u
llava=$1
src=$2
tmp=$(mktemp -d /tmp/llava_hostile.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fixture=$src/tests/fixtures/tiny_llava15
failures=0

# Writes a safetensors file: header JSON ($2), then $3 zero bytes of data.
# $4 (optional) overrides the declared header length.
le64() {
  local n=$1 i
  for i in 0 1 2 3 4 5 6 7; do printf "\\$(printf '%03o' $(((n >> (8 * i)) & 255)))"; done
}
write_st() {
  local path=$1 header=$2 datalen=$3 declared=${4:-${#2}}
  { le64 "$declared"; printf '%s' "$header"; head -c "$datalen" /dev/zero; } > "$path"
}
# A batch with int64 input_ids [1, n] from the arguments.
write_ids_batch() {
  local path=$1; shift
  local n=$# header
  header="{\"input_ids\":{\"dtype\":\"I64\",\"shape\":[1,$n],\"data_offsets\":[0,$((8 * n))]}}"
  { le64 "${#header}"; printf '%s' "$header"; for v in "$@"; do le64 "$v"; done; } > "$path"
}

# expect_bad DESCRIPTION PATTERN -- command...: exit code 2, stderr matches PATTERN
expect_bad() {
  local what=$1 pattern=$2; shift 3
  "$@" > "$tmp/out.txt" 2> "$tmp/err.txt"
  local rc=$?
  if [ $rc -ne 2 ] || ! grep -qE "$pattern" "$tmp/err.txt"; then
    echo "FAIL: $what: exit $rc (want 2), stderr:"; cat "$tmp/err.txt"
    failures=$((failures + 1))
  else
    echo "ok: $what: $(head -c 200 "$tmp/err.txt")"
  fi
}

model_copy() {  # a copy of the fixture folder whose weights file is replaced
  rm -rf "$tmp/m"; mkdir -p "$tmp/m"; cp "$fixture/config.json" "$tmp/m/"
}
run_forward() { "$llava" forward --model "$tmp/m" --batch "$fixture/batch.safetensors" --out "$tmp/o.safetensors"; }

model_copy; head -c 5000 "$fixture/model.safetensors" > "$tmp/m/model.safetensors"
expect_bad "truncated weights" "out of range|file size|truncated" -- run_forward
model_copy; head -c 4 "$fixture/model.safetensors" > "$tmp/m/model.safetensors"
expect_bad "4-byte weights file" "truncated" -- run_forward
model_copy; { le64 99999999; tail -c +9 "$fixture/model.safetensors"; } > "$tmp/m/model.safetensors"
expect_bad "header size larger than the file" "larger than the file" -- run_forward
model_copy; write_st "$tmp/m/model.safetensors" '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}' 24
expect_bad "overlapping offsets" "overlaps" -- run_forward
model_copy; write_st "$tmp/m/model.safetensors" '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}' 8
expect_bad "out-of-range offsets" "out of range" -- run_forward
model_copy; write_st "$tmp/m/model.safetensors" '{"a":{"dtype":"Q4_K","shape":[4],"data_offsets":[0,16]}}' 16
expect_bad "unknown dtype" "unknown dtype" -- run_forward
model_copy; write_st "$tmp/m/model.safetensors" '{"a":{"dtype":"F32",' 0
expect_bad "header not JSON" "not valid JSON" -- run_forward
model_copy; cp "$fixture/model.safetensors" "$tmp/m/"; sed -i 's/"intermediate_size": 128/"intermediate_size": 120/' "$tmp/m/config.json"
expect_bad "config sizes disagree with the weights" "expected shape \[[0-9, ]+\] \(from the config\), found \[[0-9, ]+\]" -- run_forward
model_copy; cp "$fixture/model.safetensors" "$tmp/m/"; printf '{"model_type": "llava", "text_config": ' > "$tmp/m/config.json"
expect_bad "malformed config.json" "config.json:1:[0-9]+: malformed JSON" -- run_forward
model_copy; cp "$fixture/model.safetensors" "$tmp/m/"; printf '[{"model_type": "llava"}]' > "$tmp/m/config.json"
expect_bad "config.json whose top level is a list" "config.json: expected a JSON object" -- run_forward
model_copy; cp "$fixture/model.safetensors" "$tmp/m/"; sed -i 's/"rope_type": "default"/"rope_type": "yarn"/' "$tmp/m/config.json"
expect_bad "unsupported rope scaling" "rope_type \"yarn\" is not supported" -- run_forward
expect_bad "missing model folder" "not a directory|cannot open" -- "$llava" forward --model "$tmp/none" --batch "$fixture/batch.safetensors" --out "$tmp/o.safetensors"

# Malformed batches against the good model.
fwd() { "$llava" forward --model "$fixture" --batch "$1" --out "$tmp/o.safetensors"; }
write_st "$tmp/b1.safetensors" '{"labels":{"dtype":"I64","shape":[1,2],"data_offsets":[0,16]}}' 16
expect_bad "batch without input_ids" "input_ids" -- fwd "$tmp/b1.safetensors"
write_ids_batch "$tmp/b2.safetensors" 1 5 999 7
expect_bad "token id outside the vocabulary" "input_ids\[0\]\[2\] = 999 is outside the vocabulary" -- fwd "$tmp/b2.safetensors"
write_ids_batch "$tmp/b3.safetensors" 1 150 150 7
expect_bad "image tokens without images" "2 image tokens.*0 images" -- fwd "$tmp/b3.safetensors"
write_st "$tmp/b4.safetensors" '{"input_ids":{"dtype":"I64","shape":[1,1],"data_offsets":[0,8]},"pixel_values":{"dtype":"F32","shape":[1,3,2,2],"data_offsets":[8,56]}}' 56
expect_bad "pixel_values of the wrong size" "pixel_values.*expected \[N, 3, 28, 28\]" -- fwd "$tmp/b4.safetensors"
write_st "$tmp/b5.safetensors" '{"input_ids":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}' 8
expect_bad "float input_ids" "expected I64 or I32" -- fwd "$tmp/b5.safetensors"
printf 'not a safetensors file at all' > "$tmp/b6.safetensors"
expect_bad "text file as batch" "header length|larger than the file|exceeds" -- fwd "$tmp/b6.safetensors"
expect_bad "unknown option" "unknown option" -- "$llava" forward --model "$fixture" --bogus 1
expect_bad "missing required option" "missing required option --out" -- "$llava" forward --model "$fixture" --batch "$tmp/b2.safetensors"

# And the good path still works.
if ! "$llava" forward --model "$fixture" --batch "$fixture/batch.safetensors" --out "$tmp/ok.safetensors" --stage 1 > "$tmp/out.txt" 2>&1; then
  echo "FAIL: good forward failed:"; cat "$tmp/out.txt"; failures=$((failures + 1))
fi

echo "$failures failures"
[ $failures -eq 0 ]
