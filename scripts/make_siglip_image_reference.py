#!/usr/bin/env python3
"""Golden references for SigLIP image preprocessing (issue 10): the images of
tests/fixtures/images (made by make_image_reference.py) through transformers'
SiglipImageProcessor (PIL backend) -- a square BICUBIC resize without crop,
rescale, mean/std 0.5 -- in both of LLaVA's aspect modes (pad: expand2square
with the processor's mean as the fill).

    python3 scripts/make_siglip_image_reference.py   # rewrites tests/fixtures/images_siglip/

Same layout as tests/fixtures/images (tests/test_image.c reads both):
configs/<name>/preprocessor_config.json, manifest.json (cases point at
../images/src), reference.safetensors with u8/<id>/<aspect>, f32/... for a
subset, table/<config>.
"""
import json
import os
import shutil

import numpy as np
import PIL
import transformers
from PIL import Image
from safetensors.numpy import save_file
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "tests", "fixtures", "images_siglip")
IMAGES = os.path.join(HERE, "..", "tests", "fixtures", "images")

CONFIGS = {
    # what SigLIP checkpoints ship (siglip-so400m-patch14-384 at a small size)
    "siglip16": {"do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
                 "image_processor_type": "SiglipImageProcessor", "image_std": [0.5, 0.5, 0.5], "resample": 3,
                 "rescale_factor": 0.00392156862745098, "size": {"height": 16, "width": 16}},
    # only the type and the size: every other key takes SiglipImageProcessor's class defaults
    "siglip_sparse": {"image_processor_type": "SiglipImageProcessor", "size": {"height": 24, "width": 24}},
}


def expand2square(pil_img, background_color):
    width, height = pil_img.size
    if width == height:
        return pil_img
    side = max(width, height)
    result = Image.new(pil_img.mode, (side, side), background_color)
    result.paste(pil_img, (0, (width - height) // 2) if width > height else ((height - width) // 2, 0))
    return result


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(os.path.join(ROOT, "configs"))
    with open(os.path.join(IMAGES, "manifest.json")) as f:
        images = json.load(f)
    procs, tensors = {}, {}
    manifest = {"pillow": PIL.__version__, "transformers": transformers.__version__,
                "processor": "SiglipImageProcessorPil", "configs": {}, "cases": [], "bad": []}
    for name, cfg in CONFIGS.items():
        d = os.path.join(ROOT, "configs", name)
        os.makedirs(d)
        with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        proc = SiglipImageProcessorPil.from_pretrained(d)
        procs[name] = proc
        ramp = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, -1)
        t = proc(ramp, do_resize=False, input_data_format="channels_last", return_tensors="np")["pixel_values"][0]
        tensors[f"table/{name}"] = np.ascontiguousarray(t.reshape(3, 256).astype(np.float32))
        manifest["configs"][name] = {"dir": f"configs/{name}", "out_size": int(proc.size["height"]),
                                     "pad_color": [int(m * 255) for m in proc.image_mean]}
    for k, case in enumerate(images["cases"]):
        cfg = "siglip_sparse" if k % 5 == 0 else "siglip16"
        proc = procs[cfg]
        im = Image.open(os.path.join(IMAGES, case["file"])).convert("RGB")
        table = tensors[f"table/{cfg}"]
        for aspect in ("square", "pad"):
            x = expand2square(im, tuple(manifest["configs"][cfg]["pad_color"])) if aspect == "pad" else im
            kw = dict(input_data_format="channels_last", return_tensors="np")
            u8 = proc(np.array(x), do_rescale=False, do_normalize=False, **kw)["pixel_values"][0]
            f32 = proc(np.array(x), **kw)["pixel_values"][0]
            assert np.array_equal(np.stack([table[c][u8[c]] for c in range(3)]), f32), case["id"]
            tensors[f"u8/{case['id']}/{aspect}"] = np.ascontiguousarray(u8)
            if k % 7 == 0:
                tensors[f"f32/{case['id']}/{aspect}"] = np.ascontiguousarray(f32)
        manifest["cases"].append(dict(case, file="../images/" + case["file"], config=cfg))
    save_file(tensors, os.path.join(ROOT, "reference.safetensors"))
    with open(os.path.join(ROOT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"{len(manifest['cases'])} images x 2 aspects through SiglipImageProcessor")


if __name__ == "__main__":
    main()
