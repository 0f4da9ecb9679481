#!/usr/bin/env python3
"""Golden references for LoRA: PEFT adapters on the tiny model fixtures and
the logits, loss and gradients transformers + peft compute through them.

    python3 scripts/make_lora_reference.py      # tests/fixtures/lora/{tiny_llava15,tiny_llava_v1}

For each base fixture (tests/fixtures/tiny_llava15: MHA, mlp2x_gelu;
tiny_llava_v1: GQA, linear projector, tied head) it wraps the model with
peft.get_peft_model(LoraConfig(...)) with the projector in modules_to_save,
gives lora_B non-zero values (PEFT starts it at zero, which would leave the
lora_A gradients zero and the test blind), and writes
  adapter/            what PeftModel.save_pretrained writes
  golden.safetensors  logits, loss, grad.<name> for every lora_A/lora_B (PEFT's
                      saved names) and projector tensor (the base file's names),
                      on the base fixture's batch.safetensors, dropout 0
  merged.safetensors  the language-model weights of merge_and_unload(), by the
                      base file's names (what `llava merge` must produce)
"""
import argparse
import os
import shutil
import sys

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(__file__))
from make_reference import VARIANTS, build_model  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")

# (base fixture variant, LoRA settings): all seven targets on the MHA model;
# a subset, another rank and rsLoRA on the GQA one (k, v narrower than q).
CASES = [
    ("a", dict(r=4, lora_alpha=8, targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                           "down_proj"], use_rslora=False)),
    ("b", dict(r=3, lora_alpha=5, targets=["k_proj", "v_proj", "o_proj", "up_proj"], use_rslora=True)),
]


def load_base(v):
    """The fixture's weights in a model built in memory (the v1 fixture's
    linear projector is not a transformers class, so from_pretrained cannot
    build it). Returns the model and in-memory name -> file name."""
    model, _ = build_model(v)
    folder = os.path.join(FIXTURES, v["name"])
    saved = load_file(os.path.join(folder, "model.safetensors"))
    names = {}
    with torch.no_grad():
        for mem, p in model.named_parameters():
            hits = [k for k, t in saved.items() if t.shape == p.shape and torch.equal(t.float(), p.detach())]
            if mem == "lm_head.weight" and v["text"]["tie_word_embeddings"]:
                continue
            assert len(hits) == 1, (mem, hits)  # build_model reproduces the fixture exactly
            names[mem] = hits[0]
    return model, names


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(FIXTURES, "lora"))
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    for key, lc in CASES:
        v = VARIANTS[key]
        model, names = load_base(v)
        regex = r".*language_model.*\.(" + "|".join(lc["targets"]) + ")"
        cfg = LoraConfig(r=lc["r"], lora_alpha=lc["lora_alpha"], lora_dropout=0.0, target_modules=regex,
                         use_rslora=lc["use_rslora"], modules_to_save=["multi_modal_projector"])
        pm = get_peft_model(model, cfg)
        g = torch.Generator().manual_seed(50 + ord(key))
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if "lora_B" in n:
                    p.copy_(0.3 * torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
        folder = os.path.join(args.out, v["name"])
        if os.path.exists(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)
        pm.save_pretrained(os.path.join(folder, "adapter"))
        batch = load_file(os.path.join(FIXTURES, v["name"], "batch.safetensors"))
        pm.train()
        out = pm(**batch)
        out.loss.backward()
        golden = {"logits": out.logits.detach().float().contiguous(), "loss": out.loss.detach().float().reshape(())}
        n_grads = 0
        for n, p in pm.named_parameters():
            if not p.requires_grad:
                continue
            assert p.grad is not None, n
            if "lora_" in n:
                name = n.replace(".default.weight", ".weight")
            else:  # base_model.model.model.multi_modal_projector.modules_to_save.default.linear_1.weight
                mem = n[len("base_model.model."):].replace("modules_to_save.default.", "")
                name = names[mem]
            golden["grad." + name] = p.grad.detach().float().contiguous()
            n_grads += 1
        save_file(golden, os.path.join(folder, "golden.safetensors"))
        merged = pm.merge_and_unload()
        save_file({names[n]: p.detach().contiguous() for n, p in merged.named_parameters()
                   if n in names and "language_model.layers" in n and p.dim() == 2},
                  os.path.join(folder, "merged.safetensors"))
        print(f"{folder}: loss {out.loss.item():.6f}, {n_grads} gradients, scale "
              f"{lc['lora_alpha'] / (lc['r'] ** 0.5 if lc['use_rslora'] else lc['r']):.4f}")


if __name__ == "__main__":
    main()
