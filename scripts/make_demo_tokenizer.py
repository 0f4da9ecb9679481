#!/usr/bin/env python3
"""The demo's tokenizer (assets/demo/tokenizer/): a LLaMA-style SentencePiece
BPE (legacy normalizer, byte fallback, <unk> 0, <s> 1, </s> 2, bytes at
3..258) with a small vocabulary trained on the demo's own text (captions of
coloured shapes, ScienceQA-style questions, the vicuna_v1 template), plus
<image> and <pad>. `llava demo` embeds nothing else from Python.

    python scripts/make_demo_tokenizer.py     # -> assets/demo/tokenizer/
"""
import json
import os
import random

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

SPM = "\u2581"
BYTES = ["<0x%02X>" % i for i in range(256)]
COLORS = ["red", "green", "blue", "yellow"]
SHAPES = ["circle", "square", "triangle", "diamond"]
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the user's questions.")


def demo_text(rng):
    lines = []
    for _ in range(3000):
        lines.append("a %s %s %s." % (rng.choice(["large", "small"]), rng.choice(COLORS), rng.choice(SHAPES)))
        opts = rng.sample(COLORS if rng.random() < 0.5 else SHAPES, 4)
        q = "What %s is the shape in the picture?" % rng.choice(["color", "kind of shape"])
        options = " ".join("(%s) %s" % ("ABCD"[i], o) for i, o in enumerate(opts))
        lines.append("%s USER: Context: N/A Question: %s Options: %s Answer with the option's letter from the "
                     "given choices directly. ASSISTANT: %s" % (SYSTEM, q, options, rng.choice("ABCD")))
    return lines


def main():
    rng = random.Random(0)
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPM, prepend_scheme="always", split=True)
    alphabet = [chr(c) for c in range(0x21, 0x7F)] + [SPM]
    trainer = trainers.BpeTrainer(vocab_size=768, special_tokens=["<unk>", "<s>", "</s>"] + BYTES,
                                  initial_alphabet=alphabet, show_progress=False)
    trainer_tok.train_from_iterator(demo_text(rng), trainer)
    model = json.loads(trainer_tok.to_str())["model"]
    vocab, merges = dict(model["vocab"]), [tuple(m) for m in model["merges"]]
    assert vocab["<unk>"] == 0 and all(vocab[b] == 3 + i for i, b in enumerate(BYTES))

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(SPM), normalizers.Replace(" ", SPM)])
    tok.decoder = decoders.Sequence([decoders.Replace(SPM, " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in ("<unk>", "<s>", "</s>")])
    tok.add_tokens([AddedToken("<image>", normalized=False, special=True)])
    tok.add_tokens([AddedToken("<pad>", normalized=False, special=True)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets", "demo", "tokenizer")
    os.makedirs(out, exist_ok=True)
    j = json.loads(tok.to_str())
    j["model"]["merges"] = ["%s %s" % (a, b) for a, b in j["model"]["merges"]]
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, separators=(",", ":"))
    decoder = {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word",
                                                  "special")} for t in j["added_tokens"]}
    cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
           "unk_token": "<unk>", "pad_token": "<pad>", "legacy": True, "model_max_length": 256,
           "tokenizer_class": "LlamaTokenizer", "added_tokens_decoder": decoder}
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=1)
    ids = {t["content"]: t["id"] for t in j["added_tokens"]}
    print("wrote", out, "vocab", tok.get_vocab_size(), "image", ids["<image>"], "pad", ids["<pad>"])
    print("sample:", tok.encode("a large red circle.").tokens)


if __name__ == "__main__":
    main()
