#!/usr/bin/env python3
"""Conversation fixtures: LLaVA-format conversations and the input ids / labels
LLaVA's own preprocessing gives them, for tests/test_conversation.c.

    python3 scripts/make_conversation_fixtures.py   # -> tests/fixtures/conversation/cases.json

(needs tests/fixtures/tokenizer/, made by scripts/make_tokenizer_fixtures.py)

For every case two independent references are recorded:

  llava      a line-by-line reimplementation of LLaVA's training pipeline
             (llava/train/train.py: preprocess_multimodal, preprocess_plain,
             preprocess_v1 with its round-by-round "-2" instruction lengths and
             the non-legacy "-1", tokenizer_image_token, the collator's
             truncation; llava/conversation.py: get_prompt), run with the HF
             tokenizer (tokenizers on the fixture tokenizer.json, BOS from its
             post-processor), then the image placeholder expanded to
             image_seq_length copies of image_token_index as the HF LLaVA
             processor lays them out, and truncated to max_length.
             "mismatch" is true where LLaVA prints "tokenization mismatch" and
             masks the whole sample.
  construct  the same prompt tokenized chunk by chunk (split at <image> as
             tokenizer_image_token does) with the offsets tokenizers reports:
             a token is a target when it starts inside an answer (the space
             before it, the answer, its "</s>"; plain: caption + "\\n").
             "crossing" is true where a token straddles an answer boundary.

The C code must give construct's ids and labels, which are LLaVA's labels
wherever LLaVA's arithmetic holds. It does not always: LLaVA masks the whole
sample when its round lengths miss ("mismatch"), and for samples cut at
model_max_length it skips that check, so with a non-legacy (Metaspace)
tokenizer its labels can be silently shifted ("silently_off": questions
trained on, answers masked). Both are recorded per case.
"""
import argparse
import json
import os
import random

from tokenizers import Tokenizer

IGNORE_INDEX = -100
IMAGE_TOKEN_INDEX = -200
DEFAULT_IMAGE_TOKEN = "<image>"
IMAGE_SEQ_LENGTH = 8

SYSTEMS = {
    "vicuna_v1": "A chat between a curious user and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    "llava_v1": "A chat between a curious human and an artificial intelligence assistant. "
                "The assistant gives helpful, detailed, and polite answers to the human's questions.",
}


class HFTokenizer:
    """What LLaVA's code uses of a transformers tokenizer, on tokenizers."""

    def __init__(self, folder, model_max_length):
        self.tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        self.legacy = cfg.get("legacy", True)
        self.bos_token_id = self.tok.token_to_id("<s>")
        self.pad_token_id = self.tok.token_to_id("<unk>")  # train.py: tokenizer.pad_token = tokenizer.unk_token
        self.model_max_length = model_max_length

    def __call__(self, text, truncation=False):
        ids = self.tok.encode(text).ids
        return ids[:self.model_max_length] if truncation else ids


# ---- llava/train/train.py and llava/conversation.py, as they are ---------------

def preprocess_multimodal(source):
    for sentence in source:
        if DEFAULT_IMAGE_TOKEN in sentence["value"]:
            sentence["value"] = sentence["value"].replace(DEFAULT_IMAGE_TOKEN, "").strip()
            sentence["value"] = DEFAULT_IMAGE_TOKEN + "\n" + sentence["value"]
            sentence["value"] = sentence["value"].strip()
    return source


def get_prompt_two(system, messages):
    seps = [" ", "</s>"]
    ret = system + seps[0]
    for i, (role, message) in enumerate(messages):
        if message:
            ret += role + ": " + message + seps[i % 2]
        else:
            ret += role + ":"
    return ret


def tokenizer_image_token(prompt, tokenizer):
    prompt_chunks = [tokenizer(chunk) for chunk in prompt.split("<image>")]

    def insert_separator(X, sep):
        return [ele for sublist in zip(X, [sep] * len(X)) for ele in sublist][:-1]

    input_ids = []
    offset = 0
    if len(prompt_chunks) > 0 and len(prompt_chunks[0]) > 0 and prompt_chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        input_ids.append(prompt_chunks[0][0])
    for x in insert_separator(prompt_chunks, [IMAGE_TOKEN_INDEX] * (offset + 1)):
        input_ids.extend(x[offset:])
    return input_ids


def preprocess_plain(source, tokenizer):
    assert len(source) == 2
    assert DEFAULT_IMAGE_TOKEN in source[0]["value"]
    source[0]["value"] = DEFAULT_IMAGE_TOKEN
    conversation = source[0]["value"] + source[1]["value"] + "\n"
    input_ids = tokenizer_image_token(conversation, tokenizer)
    target = list(input_ids)
    tokenized_len = len(tokenizer_image_token(source[0]["value"], tokenizer))
    target[:tokenized_len] = [IGNORE_INDEX] * min(tokenized_len, len(target))
    return input_ids, target, False


def preprocess_v1(source, tokenizer, system, has_image):
    roles = {"human": "USER", "gpt": "ASSISTANT"}
    if roles[source[0]["from"]] != "USER":
        source = source[1:]
    messages = []
    for j, sentence in enumerate(source):
        role = roles[sentence["from"]]
        assert role == ("USER", "ASSISTANT")[j % 2]
        messages.append((role, sentence["value"]))
    conversation = get_prompt_two(system, messages)
    if has_image:
        input_ids = tokenizer_image_token(conversation, tokenizer)
    else:
        input_ids = tokenizer(conversation, truncation=True)
    target = list(input_ids)
    sep = " " + "ASSISTANT" + ": "
    total_len = sum(1 for x in target if x != tokenizer.pad_token_id)
    rounds = conversation.split("</s>")
    cur_len = 1
    target[:cur_len] = [IGNORE_INDEX] * cur_len
    for i, rou in enumerate(rounds):
        if rou == "":
            break
        parts = rou.split(sep)
        if len(parts) != 2:
            break
        parts[0] += sep
        if has_image:
            round_len = len(tokenizer_image_token(rou, tokenizer))
            instruction_len = len(tokenizer_image_token(parts[0], tokenizer)) - 2
        else:
            round_len = len(tokenizer(rou))
            instruction_len = len(tokenizer(parts[0])) - 2
        if i != 0 and not tokenizer.legacy:  # IS_TOKENIZER_GREATER_THAN_0_14
            round_len -= 1
            instruction_len -= 1
        lo, hi = cur_len, min(cur_len + instruction_len, len(target))
        if hi > lo:
            target[lo:hi] = [IGNORE_INDEX] * (hi - lo)
        cur_len += round_len
    target[cur_len:] = [IGNORE_INDEX] * max(0, len(target) - cur_len)
    mismatch = False
    if cur_len < tokenizer.model_max_length and cur_len != total_len:
        target = [IGNORE_INDEX] * len(target)
        mismatch = True
    return input_ids, target, mismatch


def llava_reference(sample, template, tokenizer):
    import copy
    source = copy.deepcopy(sample["conversations"])
    has_image = "image" in sample
    if has_image:
        source = preprocess_multimodal(source)
    if template == "plain":
        ids, labels, mismatch = preprocess_plain(source, tokenizer)
    else:
        ids, labels, mismatch = preprocess_v1(source, tokenizer, SYSTEMS[template], has_image)
    m = tokenizer.model_max_length
    ids, labels = ids[:m], labels[:m]  # DataCollatorForSupervisedDataset
    out_ids, out_labels = [], []
    for i, l in zip(ids, labels):  # the HF processor's layout of the image positions
        if i == IMAGE_TOKEN_INDEX:
            out_ids += [IMAGE_INDEX] * IMAGE_SEQ_LENGTH
            out_labels += [IGNORE_INDEX] * IMAGE_SEQ_LENGTH
        else:
            out_ids.append(i)
            out_labels.append(l)
    return out_ids[:m], out_labels[:m], mismatch  # prepare_inputs_labels_for_multimodal


# ---- construct: tokens by offsets ------------------------------------------------

def marked_prompt(sample, template):
    """The prompt as (text, is_target) pieces, built from the template rules."""
    import copy
    source = copy.deepcopy(sample["conversations"])
    if "image" in sample:
        source = preprocess_multimodal(source)
    if template == "plain":
        return [(DEFAULT_IMAGE_TOKEN, False), (source[1]["value"] + "\n", True)]
    if source[0]["from"] != "human":
        source = source[1:]
    pieces = [(SYSTEMS[template] + " ", False)]
    for s in source:
        if s["from"] == "human":
            pieces.append(("USER: " + s["value"] + " ", False))
        else:
            pieces += [("ASSISTANT:", False), (" " + s["value"] + "</s>", True)]
    return pieces


def construct_reference(sample, template, tokenizer):
    pieces = marked_prompt(sample, template)
    prompt = "".join(p for p, _ in pieces)
    is_target = []
    for p, t in pieces:
        is_target += [t] * len(p)
    ids, labels, crossing = [tokenizer.bos_token_id], [IGNORE_INDEX], False
    pos = 0
    for k, chunk in enumerate(prompt.split(DEFAULT_IMAGE_TOKEN)):
        if k:
            ids += [IMAGE_INDEX] * IMAGE_SEQ_LENGTH
            labels += [IGNORE_INDEX] * IMAGE_SEQ_LENGTH
            pos += len(DEFAULT_IMAGE_TOKEN)
        enc = tokenizer.tok.encode(chunk, add_special_tokens=False)
        for tid, (s, e) in zip(enc.ids, enc.offsets):
            t = is_target[pos + s]
            crossing |= any(is_target[pos + x] != t for x in range(s, e))
            ids.append(tid)
            labels.append(tid if t else IGNORE_INDEX)
        pos += len(chunk)
    m = tokenizer.model_max_length
    return ids[:m], labels[:m], crossing


# ---- the cases -------------------------------------------------------------------

WORDS = ("the a cat dog on mat sitting red blue image picture shows what is in this color how many people are "
         "there street sign bus train kitchen table plate food question answer left right near behind").split()


def conv(*turns, image=True, sid=None):
    s = {"id": sid, "conversations": [{"from": f, "value": v} for f, v in turns]}
    if image:
        s["image"] = "img.jpg"
    return s


def handmade():
    """(name, template, sample, max_length) with the cases the C code must get right."""
    Q, A = "What is shown in the picture?", "A cat sitting on a red mat."
    c = [
        ("plain basic", "plain", conv(("human", "<image>\nDescribe the image briefly."), ("gpt", A)), 2048),
        ("plain image last", "plain", conv(("human", "Render a clear caption.\n<image>"), ("gpt", A)), 2048),
        ("plain caption spaces", "plain", conv(("human", "<image>"), ("gpt", "  two leading spaces, trailing ")), 2048),
        ("plain caption unicode", "plain", conv(("human", "<image>"), ("gpt", "Ein Café in Zürich 你好 👍🏽\nnew line")), 2048),
        ("plain empty caption", "plain", conv(("human", "<image>"), ("gpt", "")), 2048),
        ("plain gpt first", "plain", conv(("gpt", "<image>"), ("human", "roles are not checked by plain")), 2048),
        ("v1 single", "vicuna_v1", conv(("human", "<image>\n" + Q), ("gpt", A)), 2048),
        ("v1 image last", "vicuna_v1", conv(("human", Q + "\n<image>"), ("gpt", A)), 2048),
        ("v1 image middle", "vicuna_v1", conv(("human", "Look at <image> and tell me what it is."), ("gpt", A)), 2048),
        ("v1 image only", "vicuna_v1", conv(("human", "<image>"), ("gpt", A)), 2048),
        ("v1 two images markers", "vicuna_v1", conv(("human", "<image> what <image> is this"), ("gpt", A)), 2048),
        ("v1 multi-turn", "vicuna_v1", conv(("human", "<image>\n" + Q), ("gpt", A), ("human", "What color is the mat?"),
                                             ("gpt", "Red."), ("human", "How many cats?"), ("gpt", "One.")), 2048),
        ("v1 text only", "vicuna_v1", conv(("human", "Tell me a joke."), ("gpt", "Why did the cat sit on the mat?"),
                                            image=False), 2048),
        ("v1 text only multi", "vicuna_v1", conv(("human", "Hi"), ("gpt", "Hello!"), ("human", "Bye"), ("gpt", "Bye."),
                                                  image=False), 2048),
        ("v1 gpt first dropped", "vicuna_v1", conv(("gpt", "I am first and dropped."), ("human", "<image>\n" + Q),
                                                    ("gpt", A)), 2048),
        ("v1 spaces", "vicuna_v1", conv(("human", "  <image>  what   is this?  "), ("gpt", "  It is  a cat.  "),
                                         ("human", " and\tthat? "), ("gpt", "\nA mat.\n")), 2048),
        ("v1 answer leading space", "vicuna_v1", conv(("human", "<image>\n" + Q), ("gpt", " " + A)), 2048),
        ("v1 unicode", "vicuna_v1", conv(("human", "<image>\n这是什么？"), ("gpt", "一只猫。 Café naïve 🐱👍🏽"),
                                          ("human", "नमस्ते مرحبا"), ("gpt", "∑∫ 𝔘𝔫𝔦 \u200b ok")), 2048),
        ("v1 answer has eos", "vicuna_v1", conv(("human", "<image>\n" + Q), ("gpt", "A cat.</s> Really.")), 2048),
        ("v1 question has role", "vicuna_v1", conv(("human", "<image>\nSay ASSISTANT: hi ASSISTANT: ok"),
                                                    ("gpt", "hi")), 2048),
        ("v1 special tokens in text", "vicuna_v1", conv(("human", "<image>\n<s> x <pad> y <sep> z"),
                                                         ("gpt", "a <|tool|> b <sep>")), 2048),
        ("llava_v1 single", "llava_v1", conv(("human", "<image>\n" + Q), ("gpt", A)), 2048),
        ("llava_v1 multi text only", "llava_v1", conv(("human", "Q1?"), ("gpt", "A1."), ("human", "Q2?"), ("gpt", "A2."),
                                                       image=False), 2048),
        ("llava_v1 unicode image last", "llava_v1", conv(("human", "Décris l'image.\n<image>"),
                                                          ("gpt", "Un chat sur un tapis rouge.")), 2048),
    ]
    long_turns = [("human", "<image>\n" + Q)]
    for k in range(6):
        long_turns += [("gpt", "Answer number %d is rather long: " % k + " ".join(WORDS[:20])),
                       ("human", "Question %d about the picture?" % k)]
    long_turns.append(("gpt", "Last answer."))
    c.append(("v1 truncated mid answer", "vicuna_v1", conv(*long_turns), 140))
    c.append(("v1 truncated text only", "vicuna_v1", conv(*long_turns[1:], image=False), 120))
    c.append(("v1 truncated before answers", "vicuna_v1", conv(*long_turns), 45))
    c.append(("plain truncated", "plain", conv(("human", "<image>"), ("gpt", " ".join(WORDS) * 3)), 40))
    return c


def generated(rng, n):
    ws = ["  ", "\n", " ", "\t", "", ""]
    out = []
    for i in range(n):
        template = rng.choice(["vicuna_v1", "llava_v1", "plain"])
        image = template == "plain" or rng.random() < 0.7

        def text(lo, hi):
            s = " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))
            if rng.random() < 0.3:
                s = rng.choice(ws) + s + rng.choice(ws)
            if rng.random() < 0.2:
                s += rng.choice(["?", ".", "!", " 🐱", " café", " 你好", "\n\n"])
            return s

        if template == "plain":
            turns = [("human", rng.choice(["<image>", "<image>\n" + text(2, 6), text(2, 6) + "\n<image>"])),
                     ("gpt", text(3, 15))]
        else:
            turns = []
            for r in range(rng.randint(1, 4)):
                q = text(2, 10)
                if r == 0 and image:
                    q = rng.choice(["<image>\n" + q, q + "\n<image>", q + " <image> " + text(1, 3)])
                turns += [("human", q), ("gpt", text(1, 25))]
        out.append(("generated %d" % i, template, conv(*turns, image=image), rng.choice([2048, 2048, 2048, 64])))
    return out


def main():
    global IMAGE_INDEX
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizers", default=os.path.join(here, "..", "tests", "fixtures", "tokenizer"))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "conversation"))
    args = ap.parse_args()
    cases, stats = [], {}
    for form in ("legacy", "metaspace"):
        rng = random.Random(5 if form == "legacy" else 6)
        for name, template, sample, max_length in handmade() + generated(rng, 40):
            tokenizer = HFTokenizer(os.path.join(args.tokenizers, form), max_length)
            IMAGE_INDEX = tokenizer.tok.token_to_id("<image>")
            sample["id"] = "%s/%s" % (form, name)
            l_ids, l_labels, mismatch = llava_reference(sample, template, tokenizer)
            c_ids, c_labels, crossing = construct_reference(sample, template, tokenizer)
            assert l_ids == c_ids, "%s: the two references tokenize differently" % sample["id"]
            agree = l_labels == c_labels
            # LLaVA's round arithmetic can go wrong without its check noticing:
            # the check is skipped for samples cut at model_max_length.
            silent = not (mismatch or crossing or agree)
            key = (form, "llava mismatch" if mismatch else "labels agree" if agree else
                   "crossing" if crossing else "llava silently off")
            stats[key] = stats.get(key, 0) + 1
            cases.append({"id": sample["id"], "tokenizer": form, "template": template, "has_image": "image" in sample,
                          "turns": [[t["from"], t["value"]] for t in sample["conversations"]],
                          "image_seq_length": IMAGE_SEQ_LENGTH, "image_token_index": IMAGE_INDEX,
                          "max_length": max_length,
                          "llava": {"ids": l_ids, "labels": l_labels, "mismatch": mismatch, "silently_off": silent},
                          "construct": {"labels": c_labels, "crossing": crossing}})
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"cases": cases}, f, ensure_ascii=False, separators=(",", ":"))
    for k in sorted(stats):
        print("%-10s %-15s %d" % (k[0], k[1], stats[k]))
    print("%d cases -> %s" % (len(cases), os.path.join(args.out, "cases.json")))


IMAGE_INDEX = None

if __name__ == "__main__":
    main()
