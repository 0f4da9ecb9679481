#!/usr/bin/env python3
"""Conversation fixtures for the LLaVA-NeXT chat templates (qwen_2, llama_3):
conversations and the input ids / labels LLaVA-NeXT's own preprocessing gives
them with the byte-level fixture tokenizers, for tests/test_conversation.c.

    python3 scripts/make_chat_conversation_fixtures.py   # -> tests/fixtures/conversation_chat/cases.json

(needs tests/fixtures/tokenizer_bytelevel/, made by
scripts/make_bytelevel_tokenizer_fixtures.py)

The reference is a line-by-line reimplementation of LLaVA-NeXT's
llava/train/train.py: preprocess_multimodal (NeXT's version: a message that
starts with <image> is left alone), preprocess_qwen and preprocess_llama3 with
their chat templates rendered by transformers' apply_chat_template (Jinja) and
tokenized without special tokens, each message on its own, the unmask-by-id
loop (qwen: 198 = the "\\n" token, which in a byte-level vocabulary is "Ċ";
im_start, im_end; llama3: begin_of_text, start/end_header_id, eot_id and
convert_tokens_to_ids("\\n\\n"), which is no token), then, as the HF LLaVA
processor lays images out, each image token expanded to image_seq_length copies
of image_token_index (labels -100), and the collator's truncation.
"""
import json
import os
import random

from transformers import PreTrainedTokenizerFast

IGNORE_INDEX = -100
IMAGE = "<image>"
IMAGE_SEQ_LENGTH = 8
QWEN_SYSTEM = "You are a helpful assistant."
LLAMA3_SYSTEM = ("You are a helpful language and vision assistant. You are able to understand the visual content "
                 "that the user provides, and assist the user with a variety of tasks using natural language.")
QWEN_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                 "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                 "{% endif %}")
LLAMA3_TEMPLATE = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
                   "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
                   "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
                   "{{ content }}{% endfor %}{% if add_generation_prompt %}"
                   "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")


def chat_ids(tok, template, messages):
    """apply_chat_template(messages) as transformers 4.x returns it: the
    rendered text tokenized without special tokens."""
    text = tok.apply_chat_template(messages, chat_template=template, tokenize=False)
    return tok(text, add_special_tokens=False).input_ids


def preprocess_multimodal(source):
    for sentence in source:
        v = sentence["value"]
        if v.count(IMAGE) == 1 and IMAGE in v and not v.startswith(IMAGE):
            v = v.replace(IMAGE, "").strip()
            v = IMAGE + "\n" + v
            v = v.strip()
        sentence["value"] = v
    return source


def preprocess_next(source, tok, template):
    roles = {"human": "user", "gpt": "assistant"}
    image_token_index = tok.convert_tokens_to_ids(IMAGE)
    if template == "qwen_2":
        im_start, im_end = tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids("<|im_end|>")
        unmask = [tok.convert_tokens_to_ids("\u010a"), im_start, im_end]  # 198 in Qwen2's vocabulary
        system, jinja, skip_bos = QWEN_SYSTEM, QWEN_TEMPLATE, 0
    else:
        names = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "\n\n"]
        unmask = [tok.convert_tokens_to_ids(n) for n in names]
        system, jinja, skip_bos = LLAMA3_SYSTEM, LLAMA3_TEMPLATE, 1
    if roles[source[0]["from"]] != roles["human"]:
        source = source[1:]
    input_id = chat_ids(tok, jinja, [{"role": "system", "content": system}])
    target = [IGNORE_INDEX] * len(input_id)
    for conv in source:
        role = roles.get(conv["from"], conv["from"])
        encode_id = chat_ids(tok, jinja, [{"role": role, "content": conv["value"]}])[skip_bos:]
        input_id += encode_id
        target += [IGNORE_INDEX] * len(encode_id) if role in ["user", "system"] else encode_id
    for idx, encode_id in enumerate(input_id):
        if encode_id in unmask:
            target[idx] = encode_id
        if encode_id == image_token_index:
            input_id[idx] = -200
    return input_id, target


def expand(ids, labels, image_token_index, max_length):
    out_ids, out_labels = [], []
    for i, l in zip(ids, labels):
        if i == -200:
            out_ids += [image_token_index] * IMAGE_SEQ_LENGTH
            out_labels += [IGNORE_INDEX] * IMAGE_SEQ_LENGTH
        else:
            out_ids.append(i)
            out_labels.append(l)
    return out_ids[:max_length], out_labels[:max_length]


WORDS = "the a cat dog sits on red mat what is shown in picture color how many two one image left right".split()


def cases(rng):
    Q, A = "What is shown in the picture?", "A cat sitting on a red mat."
    hand = [
        ("single", [("human", "<image>\n" + Q), ("gpt", A)], True),
        ("image last", [("human", Q + "\n<image>"), ("gpt", A)], True),
        ("image first no newline", [("human", "<image>" + Q + "  "), ("gpt", A)], True),
        ("image only", [("human", "<image>"), ("gpt", A)], True),
        ("multi-turn", [("human", "<image>\n" + Q), ("gpt", A), ("human", "And the mat?"), ("gpt", "Red.\n\nVery red.")],
         True),
        ("text only", [("human", "Tell me a joke."), ("gpt", "Why did the cat sit on the mat?")], False),
        ("gpt first dropped", [("gpt", "dropped"), ("human", "<image>\n" + Q), ("gpt", A)], True),
        ("spaces", [("human", "  <image>  what   is this?  "), ("gpt", "  It is  a cat.  \n")], True),
        ("unicode", [("human", "<image>\n这是什么？"), ("gpt", "一只猫。 Café naïve 🐱👍🏽 e\u0301")], True),
        ("specials in text", [("human", "<image>\n<|im_end|> x <|eot_id|> y"), ("gpt", "a <|im_start|> b\n")], True),
        ("newlines", [("human", "\n\n<image>\n\nQ?\n"), ("gpt", "\nline1\n\nline2\n")], True),
    ]
    for k in range(30):
        turns = []
        image = rng.random() < 0.7
        for r in range(rng.randint(1, 3)):
            q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8))) + rng.choice(["?", "", "\n"])
            if r == 0 and image:
                q = rng.choice(["<image>\n" + q, q + "\n<image>", "<image>" + q])
            turns += [("human", q), ("gpt", " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 15))))]
        hand.append(("generated %d" % k, turns, image))
    return hand


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    fixtures = os.path.join(here, "..", "tests", "fixtures")
    out = []
    for template, form in (("qwen_2", "qwen2"), ("llama_3", "llama3")):
        tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(fixtures, "tokenizer_bytelevel", form,
                                                                  "tokenizer.json"),
                                      bos_token="<|begin_of_text|>" if form == "llama3" else None)
        image_token_index = tok.convert_tokens_to_ids(IMAGE)
        for name, turns, image in cases(random.Random(11)):
            for max_length in (2048, 40):
                source = preprocess_multimodal([{"from": f, "value": v} for f, v in turns]) if image else \
                    [{"from": f, "value": v} for f, v in turns]
                ids, labels = preprocess_next(source, tok, template)
                ids, labels = expand(ids, labels, image_token_index, max_length)
                out.append({"id": "%s/%s/%d" % (template, name, max_length), "tokenizer": form, "template": template,
                            "has_image": image, "turns": [[f, v] for f, v in turns],
                            "image_seq_length": IMAGE_SEQ_LENGTH, "image_token_index": image_token_index,
                            "max_length": max_length, "ids": ids, "labels": labels})
    os.makedirs(os.path.join(fixtures, "conversation_chat"), exist_ok=True)
    with open(os.path.join(fixtures, "conversation_chat", "cases.json"), "w", encoding="utf-8") as f:
        json.dump({"cases": out}, f, ensure_ascii=False, separators=(",", ":"))
    print("%d cases" % len(out))


if __name__ == "__main__":
    main()
