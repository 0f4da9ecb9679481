#!/usr/bin/env python3
"""Text-level golden references for `llava generate --prompt`, `llava chat`
and `llava eval scienceqa`: a tiny random LLaVA model that ships a real
tokenizer (the legacy tokenizer fixture, 4008 tokens with <image> = 4004) and
a preprocessor config (weights stored in bf16, computed in fp32 from the
rounded values), and what LLaVA's own pipeline produces with it, run
through transformers.

    python scripts/make_text_generation_reference.py    # writes tests/fixtures/tiny_llava_text/

The pipeline is LLaVA's (llava/conversation.py, mm_utils.py,
eval/run_llava.py, serve/cli.py, eval/model_vqa_science.py), re-implemented
here on transformers:
  - template vicuna_v1: system + " USER: " + q + " ASSISTANT:" (an earlier
    answer is followed by "</s>");
  - an image is "<image>\\n" before the first question; the prompt is split
    at "<image>", each chunk tokenized with BOS, the chunks joined by the image
    token (BOS kept on the first chunk only), then the image token expanded to
    image_seq_length positions for transformers' LlavaForConditionalGeneration;
  - images: Pillow open, convert("RGB"), expand2square with the mean colour
    (image_aspect_ratio "pad", LLaVA-1.5), CLIPImageProcessor;
  - greedy generate, explicit settings (no generation_config defaults), the
    answer = decode(new tokens, skip_special_tokens=True).strip().

Writes golden.json with the cases (prompt, expected ids and text);
expected_*.txt, chat_input.txt: what `llava generate` and `llava chat` must
print (tests/test_text_cli.sh); scienceqa_answers.jsonl: the answers
model_vqa_science.py would write for tests/fixtures/scienceqa/
llava_test_CQM-A.json (single-prediction prompt, 8 new tokens).
"""
import argparse
import copy
import json
import os
import shutil

import torch
from PIL import Image
from transformers import (AutoTokenizer, CLIPImageProcessor, CLIPVisionConfig, GenerationConfig, LlamaConfig,
                          LlavaConfig, LlavaForConditionalGeneration)

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures")
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the user's questions.")
SINGLE_PRED = "Answer with the option's letter from the given choices directly."
S, P = 28, 7
SEQ = (S // P) ** 2


def vicuna_v1_prompt(turns):
    """turns: [(question, answer or None), ...] -> LLaVA's get_prompt()."""
    out = SYSTEM + " "
    for q, a in turns:
        out += "USER: " + q + " "
        out += "ASSISTANT: " + a + "</s>" if a is not None else "ASSISTANT:"
    return out


def tokenizer_image_token(prompt, tok, image_id):
    chunks = [tok(c).input_ids for c in prompt.split("<image>")]
    ids, offset = [], 0
    if chunks and chunks[0] and chunks[0][0] == tok.bos_token_id:
        offset = 1
        ids.append(chunks[0][0])
    for i, c in enumerate(chunks):
        if i > 0:
            ids.append(image_id)
        ids.extend(c[offset:])
    return ids


def expand2square(img, background):
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new(img.mode, (side, side), background)
    canvas.paste(img, (0, (w - h) // 2) if w > h else ((h - w) // 2, 0))
    return canvas


def pixels_of(path, processor):
    img = Image.open(path).convert("RGB")
    img = expand2square(img, tuple(int(x * 255) for x in processor.image_mean))
    return processor.preprocess(img, return_tensors="pt")["pixel_values"]


def build_model(tok, image_id):
    torch.manual_seed(21)
    vocab = len(tok)
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, image_size=S, patch_size=P),
        text_config=LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                                max_position_embeddings=512, tie_word_embeddings=False, bos_token_id=1,
                                eos_token_id=2, pad_token_id=tok.pad_token_id),
        image_token_index=image_id, image_seq_length=SEQ, vision_feature_layer=-2,
        vision_feature_select_strategy="default", tie_word_embeddings=False)
    model = LlavaForConditionalGeneration(cfg)
    g = torch.Generator().manual_seed(22)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_((0.0 if "class_embedding" in name else 1.0) + 0.2 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name or "position_embedding" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
        for p in model.parameters():  # stored in bf16: compute with the rounded values
            p.copy_(p.bfloat16().float())
    model.eval()
    model.generation_config = GenerationConfig()
    return model


def generate(model, tok, ids, pixels, max_new):
    seq = []
    for i in ids:  # transformers wants every image position as an image token
        seq.extend([i] * SEQ if i == model.config.image_token_index else [i])
    kwargs = dict(input_ids=torch.tensor([seq]), attention_mask=torch.ones((1, len(seq)), dtype=torch.long))
    if pixels is not None:
        kwargs["pixel_values"] = pixels
    gc = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new, min_new_tokens=0,
                          repetition_penalty=1.0, eos_token_id=2, pad_token_id=tok.pad_token_id, bos_token_id=1)
    with torch.no_grad():
        out = model.generate(**kwargs, generation_config=gc)
    new = out[0, len(seq):].tolist()
    return seq, new, tok.decode(new, skip_special_tokens=True).strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default=os.path.join(FIXTURES, "tokenizer", "legacy"))
    ap.add_argument("--out", default=os.path.join(FIXTURES, "tiny_llava_text"))
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    image_id = tok.convert_tokens_to_ids("<image>")
    model = build_model(tok, image_id)
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(args.out)
    tok.save_pretrained(args.out)
    processor = CLIPImageProcessor(size={"shortest_edge": S}, crop_size={"height": S, "width": S})
    processor.save_pretrained(args.out)
    # An image of its own, not square (pad mode matters).
    g = torch.Generator().manual_seed(23)
    img = Image.fromarray((torch.rand((19, 33, 3), generator=g) * 255).to(torch.uint8).numpy(), "RGB")
    image_path = os.path.join(args.out, "example.png")
    img.save(image_path)
    pixels = pixels_of(image_path, processor)

    cases = []
    # llava generate --image example.png --prompt ...
    q = "What is shown in this image?"
    prompt = vicuna_v1_prompt([("<image>\n" + q, None)])
    seq, new, text = generate(model, tok, tokenizer_image_token(prompt, tok, image_id), pixels, 32)
    cases.append(dict(name="generate_image", prompt=q, image="example.png", max_new_tokens=32, template_prompt=prompt,
                      input_ids=seq, output_ids=new, text=text))
    q2 = "Tell me a story about a cat."
    prompt = vicuna_v1_prompt([(q2, None)])
    seq, new, text = generate(model, tok, tokenizer_image_token(prompt, tok, image_id), None, 32)
    cases.append(dict(name="generate_text", prompt=q2, image=None, max_new_tokens=32, template_prompt=prompt,
                      input_ids=seq, output_ids=new, text=text))
    # llava chat: two turns, the image in the first; an earlier answer is
    # stored as its text (without the "</s>" LLaVA's cli.py keeps).
    turns, answers = ["Describe it.", "And the colors?"], []
    for k in range(len(turns)):
        hist = [(("<image>\n" if i == 0 else "") + turns[i], answers[i] if i < k else None) for i in range(k + 1)]
        prompt = vicuna_v1_prompt(hist)
        seq, new, text = generate(model, tok, tokenizer_image_token(prompt, tok, image_id), pixels, 16)
        answers.append(text)
        cases.append(dict(name=f"chat_turn{k + 1}", prompt=turns[k], image="example.png", max_new_tokens=16,
                          template_prompt=prompt, input_ids=seq, output_ids=new, text=text))

    # ScienceQA: model_vqa_science.py on the fixture's test questions.
    sqa = os.path.join(FIXTURES, "scienceqa")
    with open(os.path.join(sqa, "llava_test_CQM-A.json")) as f:
        questions = json.load(f)
    lines = []
    for item in questions:
        qs = item["conversations"][0]["value"].replace("<image>", "").strip()
        px = None
        if "image" in item:
            px = pixels_of(os.path.join(sqa, "images", "test", item["image"]), processor)
            qs = "<image>\n" + qs
        qs = qs + "\n" + SINGLE_PRED
        prompt = vicuna_v1_prompt([(qs, None)])
        _, new, text = generate(model, tok, tokenizer_image_token(prompt, tok, image_id), px, 8)
        lines.append({"question_id": item["id"], "prompt": qs, "text": text})
    with open(os.path.join(args.out, "scienceqa_answers.jsonl"), "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    for c in cases[:2]:
        with open(os.path.join(args.out, f"expected_{c['name']}.txt"), "w") as f:
            f.write(c["text"] + "\n")
    with open(os.path.join(args.out, "chat_input.txt"), "w") as f:
        f.write("".join(t + "\n" for t in turns) + "\n")
    with open(os.path.join(args.out, "expected_chat.txt"), "w") as f:
        f.write("".join(f"USER: ASSISTANT: {a}\n" for a in answers) + "USER: exit...\n")
    with open(os.path.join(args.out, "golden.json"), "w") as f:
        json.dump({"generator": "transformers " + __import__("transformers").__version__, "cases": cases}, f,
                  indent=1)
    for c in cases:
        print(f"{c['name']}: {len(c['output_ids'])} new tokens: {c['text']!r}")
    print(f"scienceqa: {len(lines)} answers, e.g. {lines[0]['text']!r}")


if __name__ == "__main__":
    main()
