#!/usr/bin/env python3
"""Separate SigLIP and Qwen2 folders, as a user downloads them, for the
end-to-end test of `llava init --vision SIGLIP --llm QWEN2` (tests/test_modern_e2e.sh).

    python3 scripts/make_modern_parts.py   # -> tests/fixtures/tiny_parts_modern/{siglip,qwen2}

  siglip/  SiglipVisionModel (28 px, patch 7, 2 layers, with its pooling head)
           saved by save_pretrained, and a SiglipImageProcessor config.
  qwen2/   Qwen2ForCausalLM (2 layers, GQA 4/2, tied embeddings, q/k/v biases)
           with the byte-level Qwen2-style fixture tokenizer
           (tests/fixtures/tokenizer_bytelevel/qwen2), vocab = its size.
"""
import json
import os
import shutil
import sys

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import randomize  # noqa: E402  (O(1) activations, as the golden fixtures)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "tiny_parts_modern")
TOK = os.path.join(HERE, "..", "tests", "fixtures", "tokenizer_bytelevel", "qwen2")


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    torch.manual_seed(0)
    vis = SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                               num_attention_heads=4, image_size=28, patch_size=7))
    randomize(vis, 1)
    vis.save_pretrained(os.path.join(OUT, "siglip"))
    with open(os.path.join(OUT, "siglip", "preprocessor_config.json"), "w") as f:
        json.dump({"image_processor_type": "SiglipImageProcessor", "do_resize": True,
                   "size": {"height": 28, "width": 28}, "resample": 3, "do_rescale": True,
                   "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5] * 3,
                   "image_std": [0.5] * 3}, f, indent=2)
    with open(os.path.join(TOK, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    vocab = max(max(tok["model"]["vocab"].values()), max(a["id"] for a in tok["added_tokens"])) + 1
    eos = next(a["id"] for a in tok["added_tokens"] if a["content"] == "<|im_end|>")
    llm = Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                       tie_word_embeddings=True, eos_token_id=eos))
    randomize(llm, 2)
    llm.tie_weights()
    llm.save_pretrained(os.path.join(OUT, "qwen2"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOK, name), os.path.join(OUT, "qwen2", name))
    print(f"{OUT}: siglip/, qwen2/ (vocab {vocab})")


if __name__ == "__main__":
    main()
