#!/usr/bin/env python3
"""Golden references for the model: tiny random LlavaForConditionalGeneration
models built with transformers, a batch with images, padding and ignored
labels, and the logits, loss and gradients transformers computes for it.

    python scripts/make_reference.py                       # tests/fixtures/{tiny_llava15,tiny_llava_v1,tiny_parts}
    python scripts/make_reference.py --variant c --out DIR  # a model not in the fixtures (see tests/README.md)

Each model folder gets config.json + weights exactly as a user would have them,
and beside it batch.safetensors (the input of `llava forward`) and
golden.safetensors (logits [B,T,V], loss, grad.<file tensor name> for the
projector and the LLM: stage 1 checks the projector subset, stage 2 all).

Variants (they differ on purpose in every way the loader must handle):
  a  tiny_llava15: LLaVA-1.5-like. mlp2x_gelu, MHA, untied head, feature layer
     -2, strategy default. Saved by transformers' own save_pretrained (5.x
     layout and config spelling).
  b  tiny_llava_v1: LLaVA-v1-like. linear projector (mm_projector_type), GQA
     with 2 kv heads, tied embeddings, strategy full, feature layer -1,
     rope_theta 500000, default rms eps. Written in the transformers 4.52-4.57
     tensor layout (model.language_model.*, no lm_head) with a sparse 4.x-style
     config (rope_theta at top level, class defaults left out).
  c  (not a fixture) other sizes, image 30 / patch 6, feature layer -3, MQA,
     bf16 weights in two shards with model.safetensors.index.json, legacy Hub
     names (vision_tower.vision_model.*, language_model.model.*).
"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import (CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, LlavaConfig,
                          LlavaForConditionalGeneration)

VARIANTS = {
    "a": dict(
        name="tiny_llava15",
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                    image_size=28, patch_size=7),
        text=dict(vocab_size=160, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=4, rms_norm_eps=1e-5, rope_theta=10000.0,
                  max_position_embeddings=256, tie_word_embeddings=False),
        image_token=150, feature_layer=-2, strategy="default", projector="mlp2x_gelu", seed=1),
    "b": dict(
        name="tiny_llava_v1",
        vision=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=3,
                    image_size=32, patch_size=8),
        text=dict(vocab_size=200, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, rope_theta=500000.0,
                  max_position_embeddings=256, tie_word_embeddings=True),
        image_token=199, feature_layer=-1, strategy="full", projector="linear", seed=2),
    "c": dict(
        name="tiny_llava_other",
        vision=dict(hidden_size=40, intermediate_size=80, num_hidden_layers=4, num_attention_heads=5,
                    image_size=30, patch_size=6),
        text=dict(vocab_size=300, hidden_size=80, intermediate_size=200, num_hidden_layers=3,
                  num_attention_heads=5, num_key_value_heads=1, rms_norm_eps=1e-5, rope_theta=20000.0,
                  max_position_embeddings=256, tie_word_embeddings=False),
        image_token=290, feature_layer=-3, strategy="default", projector="mlp2x_gelu", seed=3),
}


class LinearProjector(torch.nn.Module):
    """LLaVA v1's projector: a single Linear (transformers has no such class)."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.linear_1 = torch.nn.Linear(d_in, d_out)

    def forward(self, x):
        return self.linear_1(x)


def randomize(model, seed):
    """transformers' init (std 0.02) gives near-zero logits; use O(1)
    activations so that every gradient carries signal."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:  # norm weights, class embedding
                base = 0.0 if "class_embedding" in name else 1.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name or "position_embedding" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)


def golden_outputs(model, batch, names, tied):
    """Stage-2 forward + backward in train mode (projector and LLM trainable):
    logits, loss, num_tokens and grad.<file name> of every trainable tensor
    (a tied lm_head's gradient is already in embed_tokens')."""
    for n, p in model.named_parameters():
        p.requires_grad_(not n.startswith("model.vision_tower."))
    model.train()
    out = model(**batch)
    out.loss.backward()
    golden = {"logits": out.logits.detach().float().contiguous(), "loss": out.loss.detach().float().reshape(())}
    golden["num_tokens"] = torch.tensor((batch["labels"][:, 1:] != -100).sum().item(), dtype=torch.int64)
    for n, p in model.named_parameters():
        if p.grad is None or n not in names or (tied and n == "lm_head.weight"):
            continue
        assert names[n], n
        golden["grad." + names[n]] = p.grad.detach().float().contiguous()
    return golden, out


def build_model(v):
    torch.manual_seed(v["seed"])
    grid = v["vision"]["image_size"] // v["vision"]["patch_size"]
    tokens = grid * grid + (1 if v["strategy"] == "full" else 0)
    cfg = LlavaConfig(vision_config=CLIPVisionConfig(**v["vision"]), text_config=LlamaConfig(**v["text"]),
                      image_token_index=v["image_token"], image_seq_length=tokens,
                      vision_feature_layer=v["feature_layer"], vision_feature_select_strategy=v["strategy"],
                      tie_word_embeddings=v["text"]["tie_word_embeddings"])
    model = LlavaForConditionalGeneration(cfg)
    if v["projector"] == "linear":
        model.model.multi_modal_projector = LinearProjector(v["vision"]["hidden_size"], v["text"]["hidden_size"])
    randomize(model, v["seed"] + 100)
    if v["name"] == "tiny_llava_other":  # stored in bf16: compute with the rounded weights
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.bfloat16().float())
    model.tie_weights()
    return model, tokens


def make_batch(v, tokens, seed):
    """Two rows: row 0 full length with one image, row 1 with two images and
    right padding. Labels only on 'answer' tokens; padding masked."""
    g = torch.Generator().manual_seed(seed)
    V, img = v["text"]["vocab_size"], v["image_token"]
    text = lambda n: torch.randint(3, img - 5, (n,), generator=g).tolist()
    row0 = [1] + text(5) + [img] * tokens + text(20)
    row1 = [1] + text(3) + [img] * tokens + text(4) + [img] * tokens + text(4)
    T = max(len(row0), len(row1)) + 4
    row0 += text(T - len(row0))
    pad = T - len(row1)
    lab0 = [-100] * (6 + tokens) + row0[6 + tokens:]
    lab1 = [-100] * (len(row1) - 4) + row1[-4:] + [-100] * pad
    mask1 = [1] * len(row1) + [0] * pad
    row1 += [0] * pad
    ids = torch.tensor([row0, row1], dtype=torch.int64)
    labels = torch.tensor([lab0, lab1], dtype=torch.int64)
    mask = torch.tensor([[1] * T, mask1], dtype=torch.int64)
    S = v["vision"]["image_size"]
    pixels = torch.randn((3, 3, S, S), generator=g)
    return dict(input_ids=ids, labels=labels, attention_mask=mask, pixel_values=pixels)


def file_name_of(mem_name, layout):
    """In-memory parameter name (transformers 5) -> tensor name in our file."""
    if layout == "current":  # transformers 4.52-4.57 save layout
        if mem_name.startswith("model.vision_tower."):
            return "model.vision_tower.vision_model." + mem_name[len("model.vision_tower."):]
        return mem_name
    if layout == "legacy":  # the Hub's llava-hf layout
        for a, b in [("model.vision_tower.", "vision_tower.vision_model."),
                     ("model.multi_modal_projector.", "multi_modal_projector."),
                     ("model.language_model.", "language_model.model."),
                     ("lm_head.", "language_model.lm_head.")]:
            if mem_name.startswith(a):
                return b + mem_name[len(a):]
    raise ValueError(mem_name)


def sparse_4x_config(v, model):
    """A transformers-4.x style config.json with class defaults left out."""
    t = dict(v["text"])
    t.pop("tie_word_embeddings")
    t.pop("num_key_value_heads") if t["num_key_value_heads"] == t["num_attention_heads"] else None
    t["model_type"] = "llama"
    vis = dict(v["vision"], model_type="clip_vision_model")
    return {"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava",
            "image_token_index": v["image_token"], "image_seq_length": model.config.image_seq_length,
            "vision_feature_layer": v["feature_layer"], "vision_feature_select_strategy": v["strategy"],
            "mm_projector_type": v["projector"], "tie_word_embeddings": v["text"]["tie_word_embeddings"],
            "text_config": t, "vision_config": vis, "transformers_version": "4.55.0"}


def save_model(v, model, folder):
    os.makedirs(folder, exist_ok=True)
    if v["name"] == "tiny_llava15":
        model.save_pretrained(folder)
        # map in-memory names to what save_pretrained wrote, by content
        from safetensors.torch import load_file
        saved = load_file(os.path.join(folder, "model.safetensors"))
        names = {}
        for mem, p in model.named_parameters():
            hits = [k for k, t in saved.items() if t.shape == p.shape and torch.equal(t, p.detach())]
            assert len(hits) == 1, (mem, hits)
            names[mem] = hits[0]
        return names
    state = {n: p.detach().contiguous() for n, p in model.named_parameters()}
    if v["name"] == "tiny_llava_v1":
        names = {n: file_name_of(n, "current") for n in state}
        tensors = {names[n]: t for n, t in state.items() if n != "lm_head.weight"}  # tied: omitted
        save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
        cfg = sparse_4x_config(v, model)
    else:
        names = {n: file_name_of(n, "legacy") for n in state}
        tensors = {names[n]: t.bfloat16() for n, t in state.items()}
        keys = sorted(tensors)
        shards = [keys[: len(keys) // 2], keys[len(keys) // 2:]]
        weight_map = {}
        for i, part in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-00002.safetensors"
            save_file({k: tensors[k] for k in part}, os.path.join(folder, fname), metadata={"format": "pt"})
            weight_map.update({k: fname for k in part})
        total = sum(t.numel() * 2 for t in tensors.values())
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        cfg = json.loads(model.config.to_json_string())
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return names


def save_parts(v, model, folder):
    """The same weights as separate CLIP / LLaMA folders and a projector file:
    what stage 1 composes. Composed with --image-token, they must give the
    LLaVA model's golden outputs exactly."""
    os.makedirs(folder, exist_ok=True)
    clip = CLIPVisionModel(CLIPVisionConfig(**v["vision"]))
    clip.load_state_dict({k[len("model.vision_tower."):]: p for k, p in model.state_dict().items()
                          if k.startswith("model.vision_tower.")}, strict=False)
    clip.save_pretrained(os.path.join(folder, "clip"))
    llama = LlamaForCausalLM(LlamaConfig(**v["text"]))
    sd = {"model." + k[len("model.language_model."):]: p for k, p in model.state_dict().items()
          if k.startswith("model.language_model.")}
    sd["lm_head.weight"] = model.state_dict()["lm_head.weight"]
    llama.load_state_dict(sd)
    llama.save_pretrained(os.path.join(folder, "llama"))
    proj = {"model.mm_projector." + k.split("linear_")[1].replace("1.", "0.", 1).replace("2.", "2.", 1): p.contiguous()
            for k, p in model.state_dict().items() if k.startswith("model.multi_modal_projector.")}
    save_file(proj, os.path.join(folder, "mm_projector.safetensors"), metadata={"format": "pt"})


def run(v, out_dir, with_parts):
    model, tokens = build_model(v)
    folder = os.path.join(out_dir, v["name"])
    if os.path.exists(folder):
        shutil.rmtree(folder)
    names = save_model(v, model, folder)
    batch = make_batch(v, tokens, v["seed"] + 7)
    save_file({k: t.contiguous() for k, t in batch.items()}, os.path.join(folder, "batch.safetensors"))

    golden, out = golden_outputs(model, batch, names, v["text"]["tie_word_embeddings"])
    save_file(golden, os.path.join(folder, "golden.safetensors"))
    print(f"{folder}: loss {out.loss.item():.6f}, logits {tuple(out.logits.shape)}, {len(golden) - 3} gradients")
    if with_parts:
        save_parts(v, model, os.path.join(out_dir, "tiny_parts"))
        print(f"{os.path.join(out_dir, 'tiny_parts')}: clip/, llama/, mm_projector.safetensors")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=sorted(VARIANTS), action="append",
                    help="which model(s) to build (default: the fixtures a and b)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    for key in args.variant or ["a", "b"]:
        run(VARIANTS[key], args.out, with_parts=(key == "a"))


if __name__ == "__main__":
    main()
