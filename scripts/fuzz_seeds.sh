# Seed inputs of each fuzz target (tests/fuzz/fuzz_<target>.c), from the
# fixtures, plus the target's regression inputs (tests/fuzz/regressions/
# <target>: what fuzzing once found). Sourced by scripts/fuzz.sh and
# tests/test_fuzz_replay.sh; needs $src (the source folder).
FUZZ_TARGETS="safetensors image tokenizer dataset conversation model_config run_config"
fuzz_seeds() {  # fuzz_seeds TARGET: prints the seed files and folders
  local f=$src/tests/fixtures
  case $1 in
    safetensors) echo "$f/tiny_llava15/batch.safetensors $f/tiny_llava_v1/batch.safetensors" \
                      "$f/tiny_parts/mm_projector.safetensors $f/tiny_parts/clip/model.safetensors" \
                      "$f/tiny_llava15/model.safetensors $f/generation/image.safetensors" ;;
    image) echo "$f/images/src $f/images/bad $f/images/huge $f/tiny_llava_text/example.png" ;;
    tokenizer) echo "$f/tokenizer/legacy/tokenizer.json $f/tokenizer/metaspace/tokenizer.json" \
                    "$f/tiny_llava_text/tokenizer.json $src/assets/demo/tokenizer/tokenizer.json" ;;
    dataset) echo "$src/tests/fuzz/seeds/dataset $f/scienceqa/answers.jsonl" ;;
    conversation) echo "$src/tests/fuzz/seeds/conversation" ;;
    model_config) echo "$f/tiny_llava15/config.json $f/tiny_llava_v1/config.json $f/tiny_llava_text/config.json" \
                       "$f/tiny_parts/clip/config.json $f/tiny_parts/llama/config.json" \
                       "$f/tiny_llava_text/preprocessor_config.json $src/assets/demo/config.json" \
                       "$(ls -d "$f"/images/configs/*/preprocessor_config.json | tr '\n' ' ')" ;;
    run_config) echo "$(ls "$src"/configs/*.json | tr '\n' ' ')" ;;
  esac
  [ -d "$src/tests/fuzz/regressions/$1" ] && echo "$src/tests/fuzz/regressions/$1"
  return 0
}
