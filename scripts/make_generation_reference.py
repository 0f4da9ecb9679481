#!/usr/bin/env python3
"""Golden references for generation: what transformers' `generate` produces
with greedy decoding on the tiny fixture models (tests/fixtures/tiny_llava15,
tests/fixtures/tiny_llava_v1, built by make_reference.py).

    python scripts/make_generation_reference.py      # writes tests/fixtures/generation/

Prompts are token ids (the tiny models have no tokenizer). Each case lists
its prompts, how many images each one holds (already expanded to
image_seq_length image tokens), the new tokens transformers generated per
prompt, and, in logits.safetensors, the raw logits of every step
("<case>.logits" [steps, B, V]); the images are "<case>.pixel_values".

sampling.safetensors holds the distributions transformers' logits warpers
(temperature, then top-k, then top-p, then softmax) give for random logits
under several settings: "logits" [R, V], "params" [K, 3] (temperature,
top_k, top_p), "probs" [K, R, V].

transformers is made to do exactly what the C test does: the model's own
generation_config is replaced by an empty one (otherwise a None eos_token_id
would be filled in from it) and every setting is passed explicitly: greedy,
one beam, no repetition penalty, no length constraints beyond
max_new_tokens, the given eos (or none). A batch of prompts of different
lengths is left-padded with an attention mask, as transformers requires.
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import GenerationConfig, LlavaForConditionalGeneration

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_reference  # noqa: E402  (the fixture models' definitions)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
PAD = 0


def load_model(name):
    """The fixture model, checked against the committed weights."""
    folder = os.path.join(FIXTURES, name)
    if name == "tiny_llava15":
        model = LlavaForConditionalGeneration.from_pretrained(folder)
    else:  # linear projector + sparse 4.x config: rebuild, then verify every tensor
        model, _ = make_reference.build_model(make_reference.VARIANTS["b"])
        saved = load_file(os.path.join(folder, "model.safetensors"))
        for n, p in model.named_parameters():
            if n == "lm_head.weight":
                continue  # tied to embed_tokens, not stored
            key = make_reference.file_name_of(n, "current")
            assert torch.equal(saved[key], p.detach()), f"{name}: {key} differs from the fixture"
    model.eval()
    model.generation_config = GenerationConfig()  # nothing inherited
    return model


def info(model):
    c = model.config
    S = c.vision_config.image_size
    return c.image_token_index, c.image_seq_length, S, c.text_config.vocab_size


def text(g, n, img):
    return torch.randint(3, img - 5, (n,), generator=g).tolist()


def run_case(model, prompts, image_counts, pixels, max_new, eos):
    B = len(prompts)
    T = max(len(p) for p in prompts)
    ids = torch.full((B, T), PAD, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, T - len(p):] = torch.tensor(p)
        mask[b, T - len(p):] = 1
    kwargs = dict(input_ids=ids, attention_mask=mask)
    if sum(image_counts):
        kwargs["pixel_values"] = pixels
    gc = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new, min_new_tokens=0,
                          repetition_penalty=1.0, eos_token_id=eos, pad_token_id=PAD, bos_token_id=1,
                          return_dict_in_generate=True, output_logits=True, use_cache=True)
    with torch.no_grad():
        res = model.generate(**kwargs, generation_config=gc)
    new = res.sequences[:, T:]
    logits = torch.stack(res.logits, dim=0).float()  # [steps, B, V]
    outputs = []
    for b in range(B):
        row = new[b].tolist()
        if eos is not None and eos in row:
            row = row[: row.index(eos) + 1]
        outputs.append(row)
    return outputs, logits


def sampling_reference(out_dir):
    from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)
    g = torch.Generator().manual_seed(5)
    R, V = 4, 50
    logits = 3.0 * torch.randn((R, V), generator=g)
    logits[3, 7] = logits[3, 9] = logits[3].max() + 0.5  # a tie at the top
    params = [(0.7, 0, 1.0), (1.0, 5, 1.0), (0.9, 0, 0.8), (1.3, 10, 0.6), (1.0, 1, 1.0), (2.0, 0, 0.3)]
    probs = []
    for temp, k, p in params:
        x = TemperatureLogitsWarper(temp)(None, logits.clone())
        if k > 0:
            x = TopKLogitsWarper(k)(None, x)
        if p < 1.0:
            x = TopPLogitsWarper(p)(None, x)
        probs.append(torch.softmax(x, dim=-1))
    save_file({"logits": logits.contiguous(), "params": torch.tensor(params, dtype=torch.float32),
               "probs": torch.stack(probs).contiguous()}, os.path.join(out_dir, "sampling.safetensors"))


def main():
    torch.manual_seed(0)
    out_dir = os.path.join(FIXTURES, "generation")
    os.makedirs(out_dir, exist_ok=True)
    cases, tensors = [], {}
    for model_name, seed in [("tiny_llava15", 11), ("tiny_llava_v1", 12)]:
        model = load_model(model_name)
        img, n_img, S, V = info(model)
        g = torch.Generator().manual_seed(seed)
        with_image = [1] + text(g, 5, img) + [img] * n_img + text(g, 7, img)
        no_image = [1] + text(g, 9, img)
        short_image = [1] + [img] * n_img + text(g, 3, img)
        pix1 = torch.randn((1, 3, S, S), generator=g)
        pix2 = torch.randn((2, 3, S, S), generator=g)
        specs = [
            ("image", [with_image], [1], pix1, 40, None),
            ("text", [no_image], [0], None, 40, None),
            # Different lengths, with and without images, in one batch.
            ("batch", [with_image, no_image, short_image], [1, 0, 1], pix2, 36, None),
        ]
        for name, prompts, counts, pixels, max_new, eos in specs:
            outputs, logits = run_case(model, prompts, counts, pixels, max_new, eos)
            for o in outputs:
                assert len(o) == max_new, f"{model_name}/{name}: transformers stopped early"
            case = f"{model_name}.{name}"
            cases.append(dict(name=case, model=model_name, prompts=prompts, image_counts=counts,
                              max_new_tokens=max_new, eos_id=-1, outputs=outputs))
            tensors[case + ".logits"] = logits.contiguous()
            if pixels is not None:
                tensors[case + ".pixel_values"] = pixels.contiguous()
        # Stopping: the eos is the first token the middle prompt produces, at
        # step 5 or later, that it did not produce before, so that sequence
        # stops there while the others go on (or stop wherever they produce it).
        batch = cases[-1]
        row = batch["outputs"][1]
        k = next(k for k in range(5, len(row)) if row[k] not in row[:k])
        stop_tok = row[k]
        outputs, logits = run_case(model, batch["prompts"], batch["image_counts"], pix2, 36, stop_tok)
        assert len(outputs[1]) == k + 1 and any(len(o) > k + 1 for o in outputs)
        case = f"{model_name}.batch_eos"
        cases.append(dict(name=case, model=model_name, prompts=batch["prompts"], image_counts=batch["image_counts"],
                          max_new_tokens=36, eos_id=stop_tok, outputs=outputs))
        tensors[case + ".logits"] = logits.contiguous()
        tensors[case + ".pixel_values"] = pix2.clone()
    # For the command-line test (tests/test_generate_cli.sh): the first case
    # as `llava generate --ids ... --pixels image.safetensors` input, and the
    # line it must print.
    first = cases[0]
    save_file({"pixel_values": tensors[first["name"] + ".pixel_values"].clone()},
              os.path.join(out_dir, "image.safetensors"))
    with open(os.path.join(out_dir, "cli_prompt.txt"), "w") as f:
        f.write(json.dumps(first["prompts"][0]) + "\n")
    with open(os.path.join(out_dir, "cli_expected.txt"), "w") as f:
        f.write(f'{{"ids": {json.dumps(first["outputs"][0])}, "stop": "length", '
                f'"prompt_tokens": {len(first["prompts"][0])}}}\n')
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump({"generator": "transformers " + __import__("transformers").__version__ + " generate (greedy)",
                   "cases": cases}, f, indent=1)
    save_file(tensors, os.path.join(out_dir, "logits.safetensors"))
    sampling_reference(out_dir)
    for c in cases:
        print(f"{c['name']}: {len(c['prompts'])} prompt(s), new tokens {[len(o) for o in c['outputs']]}")


if __name__ == "__main__":
    main()
