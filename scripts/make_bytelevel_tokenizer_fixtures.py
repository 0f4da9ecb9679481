#!/usr/bin/env python3
"""Byte-level BPE tokenizer fixtures (issue 10): a Llama-3-style and a
Qwen2-style tokenizer trained here with `tokenizers` on the generated text of
make_tokenizer_fixtures.py, with the real pre-tokenizer regexes, and the ids /
decodes `tokenizers` gives over a hostile corpus. tests/test_tokenizer_bytelevel.c
compares data/tokenizer*.c against them, so CI needs no Python.

    python3 scripts/make_bytelevel_tokenizer_fixtures.py   # -> tests/fixtures/tokenizer_bytelevel/

  llama3/  Split(Llama-3 regex, Isolated) + ByteLevel(use_regex false), no
           normalizer, BPE with ignore_merges, decoder ByteLevel, post-processor
           Sequence[ByteLevel, TemplateProcessing "<|begin_of_text|> $A"], the
           header / eot specials.
  qwen2/   NFC normalizer, Split(Qwen2 regex: single digits) + ByteLevel, BPE
           without ignore_merges, decoder ByteLevel, post-processor ByteLevel
           (no BOS), <|endoftext|> / <|im_start|> / <|im_end|>.
Both: <image> (special, as `llava init` adds it), <sep> (normalized, not
special), <|ß|> (not special: its non-ASCII content shows how the ByteLevel
decoder treats added tokens), <|tool|> (lstrip + rstrip).

Outputs: corpus.json (strings; {"hex": ...} for ones with NUL), and per
tokenizer expected_<name>.json {"ids": [...] with special tokens, "prefix": n
ids the post-processor puts first, "decoded": {i: decode(ids without
specials)} where it differs from the string, "decoded_skip": {i:
decode(ids, skip_special_tokens)} where it differs from decoded}.
"""
import json
import os
import random
import shutil
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

sys.path.insert(0, os.path.dirname(__file__))
import make_tokenizer_fixtures as base  # noqa: E402  (the training text and the corpus generator)

LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
            r"\s*[\r\n]+|\s+(?!\S)|\s+")

FORMS = {
    "llama3": dict(regex=LLAMA3_RE, nfc=False, ignore_merges=True,
                   specials=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                             "<|eot_id|>"],
                   config={"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                           "tokenizer_class": "PreTrainedTokenizerFast"}),
    "qwen2": dict(regex=QWEN2_RE, nfc=True, ignore_merges=False,
                  specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                  config={"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                          "tokenizer_class": "Qwen2Tokenizer"}),
}

EXTRA = ["I'M", "DON'T", "it'S", "we'Ll", "they'RE", "ſ", "'s", "''s", "l'amour", "1234567", "12 345 6789",
         "3.14159", "x1y22z333", "\r\n\r\n", " \n\n ", "a\r\nb", "\n\n\n", "  \n", "ǅ", "K", "\u212b", "e\u0301",
         "\u1100\u1161\u11a8", "\u0344", "ﬁ", "\u180e", "a\u180eb", "\u0085", "a\u00a0b", "\u2028x", "   a",
         "a   ", "\t\tdef f():\n\t\treturn 1", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
         "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", "<|ß|>", "a<|ß|>b", "ß", "\U0001F600" * 3,
         "Ⅷ", "²³", "١٢٣", "๑๒", "x²", "\u00ad", "a\u00adb"]


def train(form, rng):
    spec = FORMS[form]
    tok = Tokenizer(models.BPE(ignore_merges=spec["ignore_merges"]))
    if spec["nfc"]:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(spec["regex"]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=3000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    text = base.training_text(rng) + ["\n".join(rng.choice(base.CODE_LINES) for _ in range(4)) for _ in range(500)]
    tok.train_from_iterator(text, trainer)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in spec["specials"]] +
                           [AddedToken("<image>", special=True, normalized=False)])
    tok.add_tokens([AddedToken("<sep>", normalized=True), AddedToken("<|ß|>", normalized=False),
                    AddedToken("<|tool|>", lstrip=True, rstrip=True, normalized=False)])
    if form == "llama3":
        bos = spec["specials"][0]
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                          special_tokens=[(bos, tok.token_to_id(bos))])])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def main():
    out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "tokenizer_bytelevel")
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    base.SPECIALS[:] = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
                        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<image>", "<sep>", "<|tool|>", "<|ß|>"]
    base.PARTIALS[:] = ["<|im_start", "im_end|>", "<|", "|>", "<|eot", "eot_id|>", "<|begin_of_text", "<image",
                        "<|ß", "< image>", "<IMAGE>", "<", ">", "|"]
    corpus = base.make_corpus(random.Random(77)) + EXTRA
    with open(os.path.join(out, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump(base.corpus_json(corpus), f, ensure_ascii=False, indent=0)
    for form in FORMS:
        folder = os.path.join(out, form)
        os.makedirs(folder)
        train(form, random.Random(4321)).save(os.path.join(folder, "tokenizer.json"))
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump(FORMS[form]["config"], f, indent=2)
        tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))  # exactly the file the C code reads
        bos = [tok.token_to_id("<|begin_of_text|>")] if form == "llama3" else []
        prefix = len(bos)
        ids, decoded, decoded_skip = base.encode_corpus(tok, corpus, bos)
        with open(os.path.join(out, "expected_%s.json" % form), "w", encoding="utf-8") as f:
            json.dump({"tokenizer": form, "vocab_size": tok.get_vocab_size(with_added_tokens=True), "prefix": prefix,
                       "ids": ids, "decoded": decoded, "decoded_skip": decoded_skip}, f, ensure_ascii=False,
                      separators=(",", ":"))
        print("%s: vocab %d, %d strings, %d tokens, %d round-trip exactly" %
              (form, tok.get_vocab_size(with_added_tokens=True), len(corpus), sum(map(len, ids)),
               len(corpus) - len(decoded)))


if __name__ == "__main__":
    main()
