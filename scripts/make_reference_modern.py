#!/usr/bin/env python3
"""Golden references for the modern backbones (issue 10): tiny random
LlavaForConditionalGeneration models with a SigLIP tower + Qwen2 LLM and a
CLIP tower + Llama-3 LLM (rope_type llama3, attention_bias, mlp_bias), saved
by transformers' own save_pretrained, with the same kind of batch and the
logits, loss and gradients transformers computes (see make_reference.py).

    python scripts/make_reference_modern.py     # tests/fixtures/{tiny_siglip_qwen2,tiny_clip_llama3}

  tiny_siglip_qwen2  SigLIP (gelu_pytorch_tanh, patch bias, no CLS, eps 1e-6,
                     post_layernorm and pooling head present in the file),
                     strategy full, feature layer -2, mlp2x_gelu; Qwen2 with
                     q/k/v biases, GQA 4/2, tied embeddings, rope_theta 1e6.
  tiny_clip_llama3   CLIP (quick_gelu), strategy default, feature layer -1;
                     Llama with rope llama3 (factor 8, low 1, high 4,
                     original_max_position_embeddings 32 so that all three
                     frequency bands occur), attention_bias and mlp_bias,
                     GQA 4/1, untied head.
  tiny_siglip_default (not a fixture: --variant d) SigLIP with strategy
                     default, which transformers implements by dropping the
                     first patch.
"""
import argparse
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, Qwen2Config,
                          SiglipVisionConfig)

sys.path.insert(0, os.path.dirname(__file__))
from make_reference import golden_outputs, make_batch, randomize  # noqa: E402  (as the other fixtures)

VARIANTS = {
    "q": dict(
        name="tiny_siglip_qwen2", vision_cls=SiglipVisionConfig, text_cls=Qwen2Config,
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                    image_size=28, patch_size=7),
        text=dict(vocab_size=160, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, rope_theta=1000000.0,
                  max_position_embeddings=256, tie_word_embeddings=True),
        image_token=150, feature_layer=-2, strategy="full", cls=False, seed=11),
    "l": dict(
        name="tiny_clip_llama3", vision_cls=CLIPVisionConfig, text_cls=LlamaConfig,
        vision=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=3,
                    image_size=32, patch_size=8),
        text=dict(vocab_size=200, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=1, head_dim=16, rms_norm_eps=1e-5,
                  rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                                       high_freq_factor=4.0, original_max_position_embeddings=32),
                  attention_bias=True, mlp_bias=True, max_position_embeddings=256, tie_word_embeddings=False),
        image_token=199, feature_layer=-1, strategy="default", cls=True, seed=12),
    "d": dict(
        name="tiny_siglip_default", vision_cls=SiglipVisionConfig, text_cls=Qwen2Config,
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    image_size=28, patch_size=7),
        text=dict(vocab_size=160, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                  tie_word_embeddings=False),
        image_token=150, feature_layer=-1, strategy="default", cls=False, seed=13),
}


def build_model(v):
    torch.manual_seed(v["seed"])
    grid = v["vision"]["image_size"] // v["vision"]["patch_size"]
    tokens = grid * grid + (1 if v["cls"] else 0) - (1 if v["strategy"] == "default" else 0)
    text = dict(v["text"])
    if v["text_cls"] is Qwen2Config and "rope_theta" in text:
        text["rope_parameters"] = dict(rope_type="default", rope_theta=text.pop("rope_theta"))
    cfg = LlavaConfig(vision_config=v["vision_cls"](**v["vision"]), text_config=v["text_cls"](**text),
                      image_token_index=v["image_token"], image_seq_length=tokens,
                      vision_feature_layer=v["feature_layer"], vision_feature_select_strategy=v["strategy"],
                      tie_word_embeddings=v["text"]["tie_word_embeddings"])
    model = LlavaForConditionalGeneration(cfg)
    randomize(model, v["seed"] + 100)
    model.tie_weights()
    return model, tokens


def run(v, out_dir):
    model, tokens = build_model(v)
    folder = os.path.join(out_dir, v["name"])
    if os.path.exists(folder):
        shutil.rmtree(folder)
    model.save_pretrained(folder)
    from safetensors.torch import load_file
    saved = load_file(os.path.join(folder, "model.safetensors"))
    names = {}
    for mem, p in model.named_parameters():
        hits = [k for k, t in saved.items() if t.shape == p.shape and torch.equal(t, p.detach())]
        names[mem] = hits[0] if len(hits) == 1 else None
    batch = make_batch(v, tokens, v["seed"] + 7)
    save_file({k: t.contiguous() for k, t in batch.items()}, os.path.join(folder, "batch.safetensors"))
    golden, out = golden_outputs(model, batch, names, v["text"]["tie_word_embeddings"])
    rot = model.model.language_model.rotary_emb
    golden["rope_inv_freq"] = rot.inv_freq.detach().float().contiguous()
    save_file(golden, os.path.join(folder, "golden.safetensors"))
    print(f"{folder}: loss {out.loss.item():.6f}, logits {tuple(out.logits.shape)}, {len(golden) - 4} gradients")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=sorted(VARIANTS), action="append",
                    help="which model(s) to build (default: the fixtures q and l)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    for key in args.variant or ["q", "l"]:
        run(VARIANTS[key], args.out)


if __name__ == "__main__":
    main()
