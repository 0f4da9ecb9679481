#!/usr/bin/env bash
# A SigLIP + Qwen2 model and a CLIP + Llama-3 model (rope llama3, attention
# and MLP biases; its LLM folder is written here with transformers) composed
# by `llava init`, trained a few steps in both stages, load in transformers
# (LlavaForConditionalGeneration.from_pretrained, no missing / unexpected
# weights) and give the logits `llava forward` gives.
#   bash scripts/check_modern_hf.sh [PYTHON] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-python3}
build=${2:-build}
tmp=$(mktemp -d /tmp/llava_modern_hf.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
parts=tests/fixtures/tiny_parts_modern
common=(--set data=synthetic:32 --set max_length=64 --set micro_batch=4 --set max_steps=3 --set lr=1e-3
        --set log_every=100)
run_pair() {  # VISION_DIR LLM_DIR NAME
  local d="$tmp/$3"
  "$build/llava" init --vision "$1" --llm "$2" --out "$d/m" > /dev/null
  "$build/llava" train --set model="$d/m" --set stage=1 --set output_dir="$d/o1" "${common[@]}" > /dev/null
  "$build/llava" train --set model="$d/o1/final" --set stage=2 --set output_dir="$d/o2" "${common[@]}" > /dev/null
  "$py" - "$d/o2/final" "$d/batch.safetensors" <<'PY'
import json, sys, torch
from safetensors.torch import save_file
folder, out = sys.argv[1:3]
cfg = json.load(open(folder + "/config.json"))
img, v = cfg["image_token_index"], cfg["vision_config"]
n_img = (v["image_size"] // v["patch_size"]) ** 2 + (0 if "siglip" in v["model_type"] else 1)
n_img -= 0 if cfg["vision_feature_select_strategy"] == "full" else 1
g = torch.Generator().manual_seed(0)
row0 = [5, 9, 33] + [img] * n_img + torch.randint(3, 2000, (20,), generator=g).tolist()
row1 = [7] + [img] * n_img + torch.randint(3, 2000, (10,), generator=g).tolist()
T, pad = len(row0), len(row0) - len(row1)
ids = torch.tensor([row0, row1 + [0] * pad])
mask = torch.tensor([[1] * T, [1] * len(row1) + [0] * pad])
labels = ids.clone()
labels[:, :3 + n_img] = -100
labels[1, len(row1):] = -100
S = v["image_size"]
save_file({"input_ids": ids, "attention_mask": mask, "labels": labels,
           "pixel_values": torch.randn(2, 3, S, S, generator=g)}, out)
PY
  "$build/llava" forward --model "$d/o2/final" --batch "$d/batch.safetensors" --out "$d/out.safetensors" --stage 0
  echo "== $3"
  "$py" scripts/check_hf_load.py "$d/o2/final" "$d/batch.safetensors" "$d/out.safetensors"
}
# A tiny Llama-3 folder: rope llama3, attention_bias, mlp_bias, the Llama-3 style fixture tokenizer.
"$py" - "$tmp/llama3" <<'PY'
import json, shutil, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
sys.path.insert(0, "scripts")
from make_reference import randomize
out, tok = sys.argv[1], "tests/fixtures/tokenizer_bytelevel/llama3"
t = json.load(open(tok + "/tokenizer.json"))
vocab = max(max(t["model"]["vocab"].values()), max(a["id"] for a in t["added_tokens"])) + 1
m = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=512,
                                 attention_bias=True, mlp_bias=True,
                                 rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                                                      low_freq_factor=1.0, high_freq_factor=4.0,
                                                      original_max_position_embeddings=32)))
randomize(m, 5)
m.save_pretrained(out)
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(tok + "/" + f, out)
PY
run_pair $parts/siglip $parts/qwen2 siglip-qwen2
run_pair tests/fixtures/tiny_parts/clip "$tmp/llama3" clip-llama3
