#!/usr/bin/env python3
"""Tokenizer fixtures: two LLaMA-style SentencePiece-BPE tokenizer folders, a
corpus of varied strings and the ids / decoded text Hugging Face `tokenizers`
gives for them. The C tests (tests/test_tokenizer.c, tests/test_tokenize_cli.sh)
compare data/tokenizer.c against these files, so CI needs no Python.

    python3 scripts/make_tokenizer_fixtures.py   # -> tests/fixtures/tokenizer/
    python3 scripts/make_tokenizer_fixtures.py --retrain   # a new vocabulary too

Both tokenizers share one vocabulary (about 4,000 tokens) trained here with
the tokenizers library on generated text (once: later runs reuse the
committed one unless --retrain is given), laid out as LLaMA does: <unk> 0,
<s> 1, </s> 2, <0x00>..<0xFF> at 3..258, "▁"-prefixed word pieces, a few
whitespace-run tokens ("▁▁", "▁▁▁▁", ...), byte fallback on, fuse_unk on.
They differ in everything the C loader must handle:

  legacy/     normalizer Sequence[Prepend "▁", Replace " " -> "▁"], no
              pre-tokenizer, merges as "a b" strings, tokenizer_config.json with
              AddedToken objects for bos/eos/unk (older transformers spelling).
  metaspace/  no normalizer, pre-tokenizer Metaspace(prepend_scheme "first",
              split false), merges as [["a", "b"]] pairs, plain-string config.

Added tokens beyond the specials: <image> (special, normalized false) and
<pad> as in llava-1.5-hf (ids just past the model vocabulary, not inside it),
plus <sep> (normalized true, not special) and <|tool|> (lstrip + rstrip) so
that every added-token flag is exercised.

Outputs (tests/fixtures/tokenizer/):
  legacy/, metaspace/     tokenizer.json + tokenizer_config.json
  corpus.json             list of strings ({"hex": ...} for strings with NUL)
  expected_<name>.json    {"ids": [[...]], "decoded": {index: text}, "decoded_skip": {index: text},
                           "eos_cases": [...], "unk_cases": [...]}: ids = encode(s) with special
                          tokens; decoded = decode(encode(s, no specials)) where
                          it differs from s; decoded_skip = decode(ids,
                          skip_special_tokens=True) where it differs from decoded.
  cli/                    a few stdin texts with the exact `llava tokenize` output
"""
import argparse
import json
import os
import random
import shutil

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

SPM = "\u2581"
BYTE_TOKENS = ["<0x%02X>" % i for i in range(256)]

WORDS = """the of and to in is was for that on with as by at from his her they this which be
have had are were not but all one their there been has would will who more when can out so
what about if up into them some could time than other then only these its may two new first
any like over after also made most such where much through back years way well down should
because each just those people how too little state good very make world still own see men
work long get here between both life being under never day same another know while last might
us great old year off come since against go came right used take three states himself few house
use during without again place american around however home small found mrs thought went say part
once general high upon school every don does got united left number course war until always away
something fact though water less public put think almost hand enough far took head yet government
system better set told nothing night end why called didn eyes find going look asked later knew
point next program city business give group toward young days let room president side social
given present several order national possible rather second face per among form important often
things looking early white case john become large big need four within felt along children saw
best church ever least power development light thing seemed family interest want members mind
country area others done turned although open god service certain kind problem began different
door thus help sense means whole matter perhaps itself york times law human line above name
example action company hands local show whether five history gave today either act feet across
taken past quite anyone having seen death experience body word half really week car field
image picture photo shows describe caption person man woman dog cat table street sign red blue
green yellow black sky tree trees building window standing sitting holding wearing shirt plate
food pizza bus train truck bike horse grass snow water beach ocean boat airplane kitchen bathroom
question answer options context lecture solution explain detail details visible background
foreground left right center top bottom near behind front color colors number count many""".split()

ACCENTED = """café naïve résumé façade jalapeño piñata crème brûlée über Größe Straße Ångström
smörgåsbord déjà vu coöperate São Paulo Zürich Málaga Kraków Dvořák Łódź Čapek İstanbul
garçon élève père mère fenêtre hôtel où très français español niño mañana corazón canción
açaí pão coração ação düşün öğrenci şehir ağaç""".split()

CJK = ["你好世界", "今天天气很好", "我喜欢学习", "图片中有一只猫", "这是什么", "中文分词", "人工智能",
       "日本語のテキスト", "こんにちは", "ありがとう", "カタカナ", "東京タワー", "한국어", "안녕하세요",
       "감사합니다", "图像描述", "问题", "答案", "学生", "老师"]

SYSTEM_V1 = ("A chat between a curious user and an artificial intelligence assistant. "
             "The assistant gives helpful, detailed, and polite answers to the user's questions.")
SYSTEM_LLAVA = ("A chat between a curious human and an artificial intelligence assistant. "
                "The assistant gives helpful, detailed, and polite answers to the human's questions.")

CODE_LINES = ["def main(argv):", "return 0", "for i in range(10):", "if x == None:", "print(\"hello\")",
              "int main(void) {", "}", "x = [1, 2, 3]", "y = {'a': 1}", "#include <stdio.h>",
              "while (n-- > 0) sum += a[n];", "import numpy as np", "class Foo(object):", "pass",
              "const char *s = \"abc\";", "std::vector<int> v;", "a->b = c;", "i++;", "// comment",
              "# comment", "/* block */", "x += 1", "return self.value", "SELECT * FROM t;"]


def training_text(rng):
    """Generated English-like text (plus accents, CJK, code and the LLaVA
    templates) to train the vocabulary on; no newlines or tabs, so that those
    stay byte-fallback tokens as in LLaMA."""
    lines = []
    for _ in range(12000):
        k = rng.randint(4, 18)
        ws = [rng.choice(WORDS) for _ in range(k)]
        if rng.random() < 0.3:
            ws[0] = ws[0].capitalize()
        if rng.random() < 0.15:
            ws.insert(rng.randint(0, len(ws)), rng.choice(ACCENTED))
        if rng.random() < 0.08:
            ws.insert(rng.randint(0, len(ws)), rng.choice(CJK))
        if rng.random() < 0.1:
            ws.insert(rng.randint(0, len(ws)), str(rng.randint(0, 2024)))
        s = " ".join(ws) + rng.choice([".", ".", "?", "!", ",", ":", ";"])
        lines.append(s)
    for _ in range(1500):
        lines.append(rng.choice(CODE_LINES))
    for _ in range(800):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        lines.append("%s USER: %s? ASSISTANT: %s." % (rng.choice([SYSTEM_V1, SYSTEM_LLAVA]), q, a))
    return lines


def train_vocab(rng, vocab_size):
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPM, prepend_scheme="always", split=True)
    alphabet = [chr(c) for c in range(0x21, 0x7F)] + [SPM] + list("éèàçöüäñß")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"] + BYTE_TOKENS,
                                  initial_alphabet=alphabet, limit_alphabet=160, show_progress=False)
    tok.train_from_iterator(training_text(rng), trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = dict(model["vocab"])
    merges = [tuple(m) for m in model["merges"]]
    assert vocab["<unk>"] == 0 and vocab["<s>"] == 1 and vocab["</s>"] == 2
    assert all(vocab[b] == 3 + i for i, b in enumerate(BYTE_TOKENS)), "byte tokens must sit at 3..258"
    # Whitespace runs as LLaMA has them, at early ranks so they compete with
    # "▁word" merges (their ids are appended to the vocabulary).
    for rank, (a, b) in [(3, (SPM, SPM)), (40, (SPM * 2, SPM * 2)), (90, (SPM * 2, SPM)),
                         (300, (SPM * 4, SPM * 4))]:
        vocab[a + b] = len(vocab)
        merges.insert(rank, (a, b))
    return vocab, merges


def build(vocab, merges, form):
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    if form == "legacy":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend(SPM), normalizers.Replace(" ", SPM)])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPM, prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace(SPM, " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in ("<unk>", "<s>", "</s>")])
    tok.add_tokens([AddedToken("<image>", normalized=False, special=True)])
    tok.add_tokens([AddedToken("<pad>", normalized=False, special=True)])
    tok.add_tokens([AddedToken("<sep>", normalized=True, special=False)])
    tok.add_tokens([AddedToken("<|tool|>", lstrip=True, rstrip=True, normalized=False, special=False)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    return tok


def token_obj(content):
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False}


def write_folder(tok, form, out):
    os.makedirs(out, exist_ok=True)
    j = json.loads(tok.to_str())
    if form == "legacy":
        j["model"]["merges"] = ["%s %s" % (a, b) for a, b in j["model"]["merges"]]
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, separators=(",", ":"))
    decoder = {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word",
                                                  "special")} for t in j["added_tokens"]}
    if form == "legacy":
        cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": token_obj("<s>"),
               "eos_token": token_obj("</s>"), "unk_token": token_obj("<unk>"), "pad_token": "<pad>",
               "clean_up_tokenization_spaces": False, "legacy": True, "model_max_length": 2048,
               "tokenizer_class": "LlamaTokenizer", "added_tokens_decoder": decoder}
    else:
        cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
               "unk_token": "<unk>", "pad_token": "<pad>", "legacy": False, "model_max_length": 1000000000000000019884624838656,
               "tokenizer_class": "LlamaTokenizer", "added_tokens_decoder": decoder}
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=1)


# ---- the test corpus --------------------------------------------------------

EMOJI = ["😀", "😂", "👍", "👍🏽", "❤️", "🎉", "🚀", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵", "1️⃣", "🐱", "🍕",
         "🤖", "✨", "☕", "⚽", "🧑🏿‍💻", "🫠"]
RARE = ["नमस्ते", "مرحبا بالعالم", "שלום", "สวัสดี", "გამარჯობა", "Привет мир", "Ελληνικά", "∑∫∂√∞≠≈",
        "→⇒↔", "┌─┐│└┘", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟘𝟙𝟚", "\u200b", "\u200d", "\ufeff", "\ufffd", "\ue000", "\U0010fffd",
        "\x01\x02", "\x1b[0m", "\x7f", "\u0301", "e\u0301", "a\u0308o\u0308", "ﬁ", "Ⅻ", "½", "™", "©", "°C",
        "\u00a0", "\u3000", "\u2028", "\u2009", "\x0b", "\x0c", "\x85"]
SPECIALS = ["<image>", "</s>", "<s>", "<pad>", "<unk>", "<sep>", "<|tool|>"]
PARTIALS = ["<image", "image>", "</s", "<s", "s>", "</", "<im age>", "<IMAGE>", "< s>", "<<s>>", "<sep", "<|tool",
            "|>", "<", ">"]
WHITES = [" ", "  ", "   ", "    ", "        ", "\n", "\n\n", "\t", "\t\t", "\r\n", " \n ", "\u00a0", "\u3000",
          "\u2003", " \t"]


def sentence(rng, lo=3, hi=14):
    ws = [rng.choice(WORDS) for _ in range(rng.randint(lo, hi))]
    if rng.random() < 0.5:
        ws[0] = ws[0].capitalize()
    return " ".join(ws) + rng.choice(["", ".", "?", "!", ",", "...", ":"])


def make_corpus(rng):
    c = ["", " ", "  ", "\n", "\t", "a", "A", " a", "a ", " a ", "Hello world", " Hello world", "Hello world ",
         "Hello  world", "Hello\nworld", "Hello\tworld", "<image>", "</s>", "<s>", "<pad>", "<unk>", "<sep>",
         "<|tool|>", "<image>\n", "<image>\nDescribe the image.", " <image>", "<image> ", "a<image>b",
         "<image><image>", "</s></s>", "<s></s>", "USER: hi</s>ASSISTANT: ok</s>", "a</s>USER: hi",
         "x <sep> y", "x<sep>y", "x  <sep>  y", "a  <|tool|>  b", "a<|tool|>b", "\n<|tool|>\n",
         SYSTEM_V1, SYSTEM_LLAVA, SYSTEM_V1 + " USER: <image>\nWhat is shown? ASSISTANT: A cat.</s>",
         "▁", "▁▁", " ▁ ", "▁Hello", "<0x41>", "<0x0A>", "\x00", "a\x00b"]
    for _ in range(300):  # ASCII prose
        s = " ".join(sentence(rng) for _ in range(rng.randint(1, 3)))
        c.append(s)
    for _ in range(150):  # accents, incl. combining marks
        ws = [rng.choice(WORDS + ACCENTED) for _ in range(rng.randint(1, 8))]
        if rng.random() < 0.3:
            ws.append(rng.choice(["e\u0301", "n\u0303", "A\u030a", "o\u0308"]))
        c.append(" ".join(ws))
    for _ in range(150):  # CJK, with and without spaces
        parts = [rng.choice(CJK) for _ in range(rng.randint(1, 4))]
        sep = rng.choice(["", " ", "，", "。", " and "])
        c.append(sep.join(parts))
    for _ in range(150):  # emoji
        parts = [rng.choice(EMOJI + WORDS) for _ in range(rng.randint(1, 6))]
        c.append(rng.choice(["", " "]).join(parts))
    for _ in range(150):  # code with indentation
        lines = []
        for _ in range(rng.randint(1, 6)):
            indent = rng.choice(["", "    ", "        ", "\t", "\t\t", "  "])
            lines.append(indent + rng.choice(CODE_LINES))
        c.append(rng.choice(["\n", "\r\n"]).join(lines) + rng.choice(["", "\n"]))
    for _ in range(200):  # whitespace runs everywhere
        s = rng.choice(WHITES) * rng.randint(0, 2)
        for _ in range(rng.randint(1, 5)):
            s += rng.choice(WORDS) + rng.choice(WHITES)
        s += rng.choice(WHITES) * rng.randint(0, 2)
        c.append(s if rng.random() < 0.8 else rng.choice(WHITES) * rng.randint(1, 6))
    for _ in range(250):  # text around added tokens and look-alikes
        s = ""
        for _ in range(rng.randint(1, 5)):
            r = rng.random()
            if r < 0.4:
                s += rng.choice(SPECIALS)
            elif r < 0.55:
                s += rng.choice(PARTIALS)
            elif r < 0.75:
                s += rng.choice(WHITES)
            else:
                s += sentence(rng, 1, 5)
        c.append(s)
    for _ in range(150):  # byte fallback: scripts and symbols outside the vocabulary
        parts = [rng.choice(RARE + WORDS) for _ in range(rng.randint(1, 5))]
        c.append(rng.choice(["", " "]).join(parts))
    pool = (list("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789.,;:!?'\"()[]{}<>/\\|_-+=*&^%$#@~`")
            + WHITES + EMOJI + RARE + CJK + ACCENTED + SPECIALS + PARTIALS + ["▁", "▁▁", "é", "ß"])
    for _ in range(500):  # random mixtures
        c.append("".join(rng.choice(pool) for _ in range(rng.randint(0, 40))))
    for _ in range(12):  # long paragraphs
        c.append("\n\n".join(" ".join(sentence(rng) for _ in range(8)) for _ in range(rng.randint(2, 5))))
    return c


def encode_corpus(tok, corpus, prefix=(1,)):
    """ids (with special tokens), and decodes where they differ from the
    string; `prefix` is what the post-processor must put first (BOS)."""
    ids, decoded, decoded_skip = [], {}, {}
    for i, s in enumerate(corpus):
        e = tok.encode(s).ids
        bare = tok.encode(s, add_special_tokens=False).ids
        assert e[:len(prefix)] == list(prefix) and e[len(prefix):] == bare, \
            "BOS handling differs from expectation for %r" % s
        ids.append(e)
        d = tok.decode(bare, skip_special_tokens=False)
        if d != s:
            decoded[str(i)] = d
        ds = tok.decode(e, skip_special_tokens=True)
        if ds != d:
            decoded_skip[str(i)] = ds
    return ids, decoded, decoded_skip


def eos_cases(tok, corpus, rng):
    """add_bos_token false + add_eos_token true: what transformers' Llama
    tokenizer sets up as post-processor for those flags ("$A </s>")."""
    t = Tokenizer.from_str(tok.to_str())
    t.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                     special_tokens=[("</s>", 2)])
    picks = rng.sample(range(len(corpus)), 40)
    return [{"index": i, "ids": t.encode(corpus[i]).ids} for i in sorted(picks)]


def unk_cases(tok, corpus, rng):
    """byte_fallback off: unknown characters become <unk>, fused or not."""
    out = []
    picks = sorted(rng.sample(range(len(corpus)), 300))
    for fuse in (True, False):
        j = json.loads(tok.to_str())
        j["model"]["byte_fallback"] = False
        j["model"]["fuse_unk"] = fuse
        t = Tokenizer.from_str(json.dumps(j))
        out.append({"fuse_unk": fuse, "indices": picks, "ids": [t.encode(corpus[i]).ids for i in picks]})
    return out


def corpus_json(corpus):
    return [{"hex": s.encode("utf-8").hex()} if "\x00" in s else s for s in corpus]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "tokenizer"))
    ap.add_argument("--vocab-size", type=int, default=4000)
    ap.add_argument("--retrain", action="store_true",
                    help="train a new vocabulary even if the fixtures have one (tokenizers' trainer breaks count "
                         "ties in hash order, so a new one differs slightly from run to run)")
    args = ap.parse_args()
    rng = random.Random(1234)
    vocab, merges = train_vocab(rng, args.vocab_size)  # also when reused: keeps rng's state the same
    existing = os.path.join(args.out, "legacy", "tokenizer.json")
    if os.path.exists(existing) and not args.retrain:
        with open(existing, encoding="utf-8") as f:
            model = json.load(f)["model"]
        vocab = model["vocab"]
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    corpus = make_corpus(random.Random(99))
    with open(os.path.join(args.out, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump(corpus_json(corpus), f, ensure_ascii=False, indent=0)
    cli_cases = [("hello", "Hello world"), ("image", SYSTEM_V1 + " USER: <image>\nWhat is this? ASSISTANT:"),
                 ("unicode", "naïve café 你好 👍🏽\n\tnew line  two spaces ")]
    for form in ("legacy", "metaspace"):
        folder = os.path.join(args.out, form)
        write_folder(build(vocab, merges, form), form, folder)
        tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))  # exactly the file the C code reads
        ids, decoded, decoded_skip = encode_corpus(tok, corpus)
        exp = {"tokenizer": form, "vocab_size": tok.get_vocab_size(with_added_tokens=True), "ids": ids,
               "decoded": decoded, "decoded_skip": decoded_skip, "eos_cases": eos_cases(tok, corpus, rng),
               "unk_cases": unk_cases(tok, corpus, rng)}
        with open(os.path.join(args.out, "expected_%s.json" % form), "w", encoding="utf-8") as f:
            json.dump(exp, f, ensure_ascii=False, separators=(",", ":"))
        cli = os.path.join(args.out, "cli")
        os.makedirs(cli, exist_ok=True)
        for name, text in cli_cases:
            with open(os.path.join(cli, "%s.txt" % name), "w", encoding="utf-8", newline="") as f:
                f.write(text)
            with open(os.path.join(cli, "%s.%s.ids" % (name, form)), "w") as f:
                f.write(json.dumps(tok.encode(text).ids) + "\n")
        n_rt = len(corpus) - len(decoded)
        print("%s: vocab %d, %d strings, %d tokens, %d round-trip exactly" %
              (form, exp["vocab_size"], len(corpus), sum(map(len, ids)), n_rt))


if __name__ == "__main__":
    main()
