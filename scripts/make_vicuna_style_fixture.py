#!/usr/bin/env python3
"""A tiny LLaMA folder shaped like lmsys/vicuna-7b-v1.5 where it matters for
`llava init` (issue 9, items 11 and 12): config.json says pad_token_id 0 (the
id of <unk>), tokenizer_config.json says pad_token null, and the tokenizer has
no added tokens beyond <unk>, <s>, </s>. Writes tests/fixtures/vicuna_style/:

  llm/                  config.json, model.safetensors (bf16, random), tokenizer.json,
                        tokenizer_config.json, generation_config.json
  strings/N.txt, N.ids  the encodings below as `llava tokenize` prints them
  expected.json         what the llava-hf conversion (transformers'
                        convert_llava_weights_to_hf.py: add <image> as a special
                        token, then add_special_tokens({"pad_token": "<pad>"}))
                        gives with this tokenizer: ids of <image> and <pad>,
                        pad_token_id, vocabulary size, and encodings of strings

The tokenizer is tests/fixtures/tokenizer/legacy/tokenizer.json (HF tokenizers,
scripts/make_tokenizer_fixtures.py) with its added tokens past </s> removed.

    python scripts/make_vicuna_style_fixture.py
    python scripts/make_vicuna_style_fixture.py --check-init DIR   # a folder `llava init` wrote

--check-init loads DIR with transformers (AutoTokenizer, AutoProcessor,
AutoConfig) and compares with expected.json: exit 1 on a difference.
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "vicuna_style")
STRINGS = ["<image>\nWhat is this?", "USER: <image>\nDescribe. ASSISTANT: A cat.</s>", "a<pad>b <image>", "plain text"]


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def make():
    import torch
    from transformers import AddedToken, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    llm = os.path.join(OUT, "llm")
    os.makedirs(llm, exist_ok=True)
    with open(os.path.join(ROOT, "tests", "fixtures", "tokenizer", "legacy", "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["id"] < 3]
    vocab = len(tok["model"]["vocab"])
    with open(os.path.join(llm, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    special = lambda s: {"__type": "AddedToken", "content": s, "lstrip": False, "normalized": False,
                         "rstrip": False, "single_word": False}
    # Vicuna-7b-v1.5's tokenizer_config.json, in the fields that matter here.
    write_json(os.path.join(llm, "tokenizer_config.json"), {
        "add_bos_token": True, "add_eos_token": False, "bos_token": special("<s>"),
        "clean_up_tokenization_spaces": False, "eos_token": special("</s>"), "legacy": True,
        "model_max_length": 4096, "pad_token": None, "padding_side": "right", "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer", "unk_token": special("<unk>"),
    })
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      rms_norm_eps=1e-5, pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(llm, safe_serialization=True)
    with open(os.path.join(llm, "config.json"), encoding="utf-8") as f:
        saved = json.load(f)
    assert saved.get("pad_token_id") == 0, saved.get("pad_token_id")

    # The llava-hf conversion of this LLM's tokenizer.
    t = AutoTokenizer.from_pretrained(llm)
    assert t.pad_token is None, t.pad_token
    t.add_tokens(AddedToken("<image>", special=True, normalized=False), special_tokens=True)
    t.add_special_tokens({"pad_token": "<pad>"})
    expected = {
        "base_vocab": vocab,
        "image_token_id": t.convert_tokens_to_ids("<image>"),
        "pad_token": t.pad_token,
        "pad_token_id": t.pad_token_id,
        "unk_token_id": t.unk_token_id,
        "len_tokenizer": len(t),
        "encodings": {s: t(s).input_ids for s in STRINGS},
        "transformers": __import__("transformers").__version__,
    }
    write_json(os.path.join(OUT, "expected.json"), expected)
    # The same encodings as `llava tokenize` prints them, for the shell test.
    strings = os.path.join(OUT, "strings")
    os.makedirs(strings, exist_ok=True)
    for i, s in enumerate(STRINGS):
        with open(os.path.join(strings, f"{i}.txt"), "w", encoding="utf-8") as f:
            f.write(s)
        with open(os.path.join(strings, f"{i}.ids"), "w", encoding="utf-8") as f:
            f.write("[" + ", ".join(str(x) for x in expected["encodings"][s]) + "]\n")
    print(f"wrote {OUT}: vocab {vocab}, <image> {expected['image_token_id']}, <pad> {expected['pad_token_id']}")


def check_init(folder):
    from transformers import AutoConfig, AutoProcessor, AutoTokenizer

    with open(os.path.join(OUT, "expected.json"), encoding="utf-8") as f:
        want = json.load(f)
    bad = []
    t = AutoTokenizer.from_pretrained(folder)
    got = {
        "image_token_id": t.convert_tokens_to_ids("<image>"),
        "pad_token": t.pad_token,
        "pad_token_id": t.pad_token_id,
        "len_tokenizer": len(t),
        "encodings": {s: t(s).input_ids for s in STRINGS},
    }
    for k, v in got.items():
        if want[k] != v:
            bad.append(f"tokenizer {k}: {v} (llava-hf conversion: {want[k]})")
    cfg = AutoConfig.from_pretrained(folder)
    for k, v in (("image_token_index", cfg.image_token_index), ("pad_token_id", getattr(cfg, "pad_token_id", None)),
                 ("text_config.pad_token_id", cfg.text_config.pad_token_id)):
        w = want["image_token_id"] if k == "image_token_index" else want["pad_token_id"]
        if v != w:
            bad.append(f"config {k}: {v}, want {w}")
    if cfg.text_config.vocab_size < want["len_tokenizer"]:
        bad.append(f"config vocab_size {cfg.text_config.vocab_size} < tokenizer length {want['len_tokenizer']}")
    p = AutoProcessor.from_pretrained(folder)
    ids = p.tokenizer("<image>").input_ids
    if ids.count(want["image_token_id"]) != 1 or len(ids) != 2:
        bad.append(f"AutoProcessor's tokenizer: '<image>' -> {ids}, want [bos, {want['image_token_id']}]")
    print(f"{folder}: {type(p).__name__}, {type(p.image_processor).__name__}, <image> {got['image_token_id']}, "
          f"<pad> {got['pad_token_id']}, config pad {cfg.pad_token_id}")
    for b in bad:
        print("FAIL:", b)
    print("PASS" if not bad else f"{len(bad)} differences")
    return 1 if bad else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check-init", metavar="DIR", help="compare a folder `llava init` wrote with expected.json")
    a = ap.parse_args()
    sys.exit(check_init(a.check_init) if a.check_init else make())
