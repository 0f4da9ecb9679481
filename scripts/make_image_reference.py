#!/usr/bin/env python3
"""Golden references for the image pipeline (data/image*.c), from Pillow and
transformers' CLIPImageProcessor (PIL backend), as LLaVA runs them.

    python3 scripts/make_image_reference.py   # rewrites tests/fixtures/images/

Writes, under tests/fixtures/images/:
  src/       the test images (JPEG, PNG, GIF in many modes and sizes; some
             with a misleading extension, since the format is read from the
             content). Modes Pillow cannot write (16-bit, 2/4-bit, interlaced
             PNG, GIF with a local palette or an offset frame) are written
             by the small encoders below.
  bad/       inputs that must fail with a clear error (truncated, corrupt,
             text named .jpg, empty, decompression bombs, unsupported format).
  huge/      tiny files of extreme aspect (60000x2, 33x22575) whose
             expand2square canvas would take gigabytes.
  configs/   preprocessor_config.json files (LLaVA-1.5's at 336, small sizes,
             other mean/std, a crop smaller and one larger than the resize,
             the legacy integer "size"/"crop_size" spelling).
  manifest.json        the cases (file, config, Pillow's mode) and the bad
                       inputs with the words their error must contain.
  reference.safetensors
      u8/<id>/<aspect>   U8 [3,S,S]  transformers' output with do_rescale and
                                     do_normalize off: the resized, cropped pixels
      f32/<id>/<aspect>  F32 [3,S,S] its full output (pixel_values), for a subset
      table/<config>     F32 [3,256] the processor's float for each pixel value
                                     and channel; the script checks that every
                                     case's full output equals table[c][u8], so
                                     comparing against the table is comparing
                                     against the processor's output.

The reference path is LLaVA's: Image.open(p).convert("RGB"), expand2square
with tuple(int(m * 255) for m in image_mean) in "pad" mode, then the
processor. The image goes to the processor as a numpy array: transformers 5.x
composites a PIL image that still carries info["transparency"] onto white,
which LLaVA's pinned transformers (4.37, plain convert("RGB")) never did.
"""
import io
import json
import os
import shutil
import struct
import zlib

import numpy as np
import PIL
import transformers
from PIL import Image
from safetensors.numpy import save_file
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "images")
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def clip_config(se, crop, mean=CLIP_MEAN, std=CLIP_STD, legacy=False):
    cfg = {
        "crop_size": crop if legacy else {"height": crop, "width": crop},
        "do_center_crop": True, "do_convert_rgb": True, "do_normalize": True, "do_rescale": True,
        "do_resize": True, "image_mean": mean, "image_processor_type": "CLIPImageProcessor",
        "image_std": std, "resample": 3, "rescale_factor": 0.00392156862745098,
        "size": se if legacy else {"shortest_edge": se},
    }
    if not legacy:
        cfg["processor_class"] = "LlavaProcessor"
    return cfg


CONFIGS = {
    "clip32": clip_config(32, 32),
    "clip64": clip_config(64, 64),
    "clip336": clip_config(336, 336),  # LLaVA-1.5's (llava-hf/llava-1.5-7b-hf)
    "half40": clip_config(40, 32, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
    "legacy": clip_config(36, 32, legacy=True),
    "bigcrop": clip_config(24, 32),
}


# ---- content -------------------------------------------------------------------
def content(w, h, seed, noise=24):
    """Smooth colour fields plus noise: JPEG-friendly, and rich enough that
    resampling rounds differently across pixels."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for c in range(3):
        f = rng.uniform(0.05, 0.4, 2)
        ph = rng.uniform(0, 6.3, 2)
        v = 128 + 80 * np.sin(x * f[0] + ph[0]) * np.cos(y * f[1] + ph[1]) + 40 * (x / max(w, 1) - y / max(h, 1))
        chans.append(v + rng.normal(0, noise, (h, w)))
    return np.clip(np.stack(chans, -1), 0, 255).round().astype(np.uint8)


def rgb(w, h, seed, **kw):
    return Image.fromarray(content(w, h, seed, **kw), "RGB")


def grey(w, h, seed):
    return Image.fromarray(content(w, h, seed)[:, :, 0], "L")


def cmyk(w, h, seed):
    return Image.fromarray(np.concatenate([content(w, h, seed), content(w, h, seed + 1)[:, :, :1]], -1), "CMYK")


def palette_image(w, h, seed, colours=16):
    rng = np.random.default_rng(seed)
    im = rgb(w, h, seed, noise=8).quantize(colours, dither=Image.Dither.NONE)
    assert im.mode == "P"
    return im, rng


# ---- hand-written encoders for what Pillow cannot write ------------------------------
def png_chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def png_rows(a, depth):
    rows = []
    for r in a.reshape(a.shape[0], -1):
        if depth == 16:
            rows.append(r.astype(">u2").tobytes())
        elif depth == 8:
            rows.append(r.astype(np.uint8).tobytes())
        else:
            per = 8 // depth
            out = bytearray((len(r) * depth + 7) // 8)
            for i, v in enumerate(r):
                out[i // per] |= int(v) << (8 - depth * (i % per + 1))
            rows.append(bytes(out))
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_bytes(a, color_type, depth, plte=None, trns=None, interlace=False):
    """a: [H,W] or [H,W,C] integers. Filter type 0 on every row."""
    if a.ndim == 2:
        a = a[:, :, None]
    h, w = a.shape[:2]
    raw = b""
    subs = [a] if not interlace else [a[y0::dy, x0::dx] for (x0, y0, dx, dy) in ADAM7]
    for sub in subs:
        if sub.shape[0] and sub.shape[1]:
            raw += b"".join(b"\x00" + r for r in png_rows(sub, depth))
    d = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0,
                                                               1 if interlace else 0))
    if plte is not None:
        d += png_chunk(b"PLTE", bytes(np.asarray(plte, np.uint8).reshape(-1)))
    if trns is not None:
        d += png_chunk(b"tRNS", trns)
    return d + png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b"")


def gif_parts(data):
    """Splits a Pillow-written single-frame GIF: (header+LSD, global table,
    blocks before the image, image descriptor, image data to the end)."""
    flags = data[10]
    gct = 3 << ((flags & 7) + 1) if flags & 0x80 else 0
    pos = 13 + gct
    head, table = data[:13], data[13:pos]
    start = pos
    while data[pos] == 0x21:  # extensions: introducer, label, sub-blocks
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    assert data[pos] == 0x2C
    return head, table, data[start:pos], data[pos:pos + 10], data[pos + 10:]


def gif_local_palette(data):
    """Moves the global colour table into the frame's local table."""
    head, table, ext, desc, rest = gif_parts(data)
    bits = head[10] & 7
    head = head[:10] + bytes([head[10] & 0x70]) + head[11:]  # no global table
    desc = desc[:9] + bytes([desc[9] | 0x80 | bits])
    return head + ext + desc + table + rest


def gif_offset_frame(data, extra_w, extra_h, left, top):
    """Makes the logical screen larger than the frame and moves the frame."""
    head, table, ext, desc, rest = gif_parts(data)
    w, h = struct.unpack("<HH", head[6:10])
    head = head[:6] + struct.pack("<HH", w + extra_w, h + extra_h) + head[10:]
    desc = desc[:1] + struct.pack("<HH", left, top) + desc[5:]
    return head + table + ext + desc + rest


def gif_empty_frame(data, left):
    """A 0 x 0 first frame at x = left (Pillow: "tile cannot extend outside image")."""
    head, table, ext, desc, rest = gif_parts(data)
    desc = desc[:1] + struct.pack("<HHHH", left, 0, 0, 0) + desc[9:]
    return head + table + ext + desc + rest


def save(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


# ---- the cases --------------------------------------------------------------------
def build_cases():
    """(id, file name, config, bytes, keep f32). Sizes and modes per the
    acceptance list: tiny, very wide/tall, odd, square, exactly S, larger and
    smaller than S; RGB, L, LA, P (+/- transparency), RGBA, 1, CMYK, 16-bit,
    interlaced, progressive; JPEG, PNG, GIF."""
    C = []

    def add(cid, ext, cfg, data, f32=False):
        C.append((cid, f"{cid}.{ext}", cfg, data, f32))

    rng = np.random.default_rng(7)
    # JPEG
    add("jpeg_rgb_444", "jpg", "clip32", save(rgb(97, 61, 1), "JPEG", quality=92, subsampling=0), True)
    add("jpeg_rgb_420_odd", "jpg", "clip32", save(rgb(75, 53, 2), "JPEG", quality=90, subsampling=2))
    add("jpeg_rgb_422", "jpg", "clip32", save(rgb(64, 48, 3), "JPEG", quality=88, subsampling=1))
    add("jpeg_progressive", "jpg", "clip32", save(rgb(90, 70, 4), "JPEG", quality=90, progressive=True))
    add("jpeg_grey", "jpg", "clip32", save(grey(50, 80, 5), "JPEG", quality=90))
    add("jpeg_grey_progressive", "jpg", "clip32", save(grey(33, 47, 6), "JPEG", quality=85, progressive=True))
    add("jpeg_cmyk", "jpg", "clip32", save(cmyk(40, 30, 7), "JPEG", quality=92), True)
    add("jpeg_cmyk_progressive", "jpg", "clip32", save(cmyk(31, 45, 9), "JPEG", quality=90, progressive=True))
    add("jpeg_1x1", "jpg", "clip32", save(rgb(1, 1, 11), "JPEG", quality=95))
    add("jpeg_2x3", "jpg", "clip32", save(rgb(2, 3, 12), "JPEG", quality=95))
    add("jpeg_very_wide", "jpg", "clip32", save(rgb(300, 20, 13), "JPEG", quality=90))
    add("jpeg_very_tall", "jpg", "clip32", save(rgb(16, 250, 14), "JPEG", quality=90))
    add("jpeg_tall_shrink", "jpg", "clip32", save(rgb(40, 300, 15), "JPEG", quality=90))  # vertical pass first
    add("jpeg_exact_s", "jpg", "clip32", save(rgb(32, 32, 16), "JPEG", quality=90))
    add("jpeg_larger_64", "jpg", "clip64", save(rgb(120, 90, 17), "JPEG", quality=90, subsampling=0))
    add("jpeg_photo_336", "jpg", "clip336", save(rgb(500, 375, 18, noise=6), "JPEG", quality=80))
    add("jpeg_named_png", "png", "clip32", save(rgb(43, 29, 19), "JPEG", quality=90))
    add("jpeg_half40", "jpg", "half40", save(rgb(83, 59, 20), "JPEG", quality=90))
    # PNG via Pillow
    add("png_rgb", "png", "clip32", save(rgb(45, 67, 21), "PNG"))
    rgba = np.concatenate([content(70, 40, 22), rng.integers(0, 256, (40, 70, 1), dtype=np.uint8)], -1)
    add("png_rgba", "png", "clip32", save(Image.fromarray(rgba, "RGBA"), "PNG"))
    add("png_l_square", "png", "clip32", save(grey(33, 33, 23), "PNG"))
    la = np.stack([content(41, 29, 24)[:, :, 0], rng.integers(0, 256, (29, 41), dtype=np.uint8)], -1)
    add("png_la", "png", "clip32", save(Image.fromarray(la, "LA"), "PNG"))
    p, _ = palette_image(50, 37, 25)
    add("png_p", "png", "clip32", save(p, "PNG"))
    p, _ = palette_image(37, 50, 26)
    add("png_p_transparency", "png", "clip32", save(p, "PNG", transparency=3))
    add("png_mode1", "png", "clip32", save(grey(29, 31, 27).convert("1"), "PNG"))
    add("png_1x1_rgba", "png", "clip32", save(Image.fromarray(rgba[:1, :1], "RGBA"), "PNG"))
    add("png_3x2", "png", "clip32", save(rgb(3, 2, 28), "PNG"))
    p, _ = palette_image(400, 9, 29, colours=8)
    add("png_very_wide_p", "png", "clip32", save(p, "PNG"))
    add("png_tall_shrink", "png", "clip32", save(rgb(48, 400, 30, noise=2), "PNG"))  # vertical pass first
    add("png_exact_64", "png", "clip64", save(rgb(64, 64, 31), "PNG"))
    # Extreme aspect ratios: expand2square's canvas is 1000x the image (the C
    # side never builds it, data/image_resize.c).
    add("png_extreme_wide", "png", "clip32", save(rgb(2400, 3, 33), "PNG"))
    add("jpeg_extreme_tall", "jpg", "clip64", save(rgb(5, 1800, 34), "JPEG", quality=90))
    add("png_extreme_wide_336", "png", "clip336", save(rgb(3000, 2, 35, noise=40), "PNG"))
    add("png_larger_64", "png", "clip64", save(rgb(150, 110, 32, noise=3), "PNG"))
    add("png_smaller_64", "png", "clip64", save(rgb(20, 14, 33), "PNG"))
    p, _ = palette_image(180, 270, 34, colours=6)
    add("png_p_larger_64", "png", "clip64", save(p, "PNG"))
    add("png_named_jpg", "jpg", "clip32", save(rgb(35, 52, 35), "PNG"))
    add("png_rgba_half40", "png", "half40", save(Image.fromarray(rgba[:33, :61], "RGBA"), "PNG"))
    add("png_rgb_legacy", "png", "legacy", save(rgb(45, 30, 36), "PNG"))
    add("png_bigcrop", "png", "bigcrop", save(rgb(20, 50, 37), "PNG"), True)
    # PNG written by hand
    g16 = rng.integers(0, 1024, (29, 23)) * rng.integers(0, 2, (29, 23))  # half zeros: many values < 256
    add("png_grey16", "png", "clip32", png_bytes(g16, 0, 16), True)
    add("png_rgb16", "png", "clip32", png_bytes(content(39, 27, 38).astype(np.int64) * 257 + rng.integers(0, 257, (27, 39, 3)), 2, 16))
    add("png_rgba16", "png", "clip32", png_bytes(rng.integers(0, 65536, (21, 34, 4)), 6, 16))
    add("png_la16", "png", "clip32", png_bytes(rng.integers(0, 65536, (26, 19, 2)), 4, 16))
    add("png_grey2", "png", "clip32", png_bytes(rng.integers(0, 4, (17, 25)), 0, 2))
    add("png_grey4", "png", "clip32", png_bytes(rng.integers(0, 16, (25, 17)), 0, 4))
    pal = rng.integers(0, 256, (16, 3))
    add("png_p4", "png", "clip32", png_bytes(rng.integers(0, 16, (23, 27)), 3, 4, plte=pal))
    # indexes 4..5 are past the 4-entry palette
    add("png_p_short_palette", "png", "clip32", png_bytes(rng.integers(0, 6, (19, 22)), 3, 8, plte=pal[:4]))
    add("png_interlaced_rgb", "png", "clip32", png_bytes(content(47, 33, 39), 2, 8, interlace=True))
    add("png_interlaced_p2", "png", "clip32", png_bytes(rng.integers(0, 4, (35, 29)), 3, 2, plte=pal[:4],
                                                         interlace=True))
    add("png_interlaced_grey16", "png", "clip32", png_bytes(rng.integers(0, 400, (31, 26)), 0, 16, interlace=True))
    add("png_interlaced_rgba16", "png", "clip32", png_bytes(rng.integers(0, 65536, (13, 40, 4)), 6, 16, interlace=True))
    rgbt = content(30, 44, 40)
    rgbt[5:20, 5:20] = (10, 20, 30)  # the transparent colour occurs: it must stay (10, 20, 30)
    add("png_rgb_trns", "png", "clip32", png_bytes(rgbt, 2, 8, trns=b"\x00\x0a\x00\x14\x00\x1e"))
    gt = content(44, 30, 41)[:, :, 0]
    gt[3:12, :] = 16
    add("png_l_trns", "png", "clip32", png_bytes(gt, 0, 8, trns=b"\x00\x10"))
    # GIF
    p, _ = palette_image(50, 40, 42)
    add("gif_interlaced", "gif", "clip32", save(p, "GIF", interlace=True))
    p, _ = palette_image(37, 23, 43)
    add("gif_plain", "gif", "clip32", save(p, "GIF", interlace=False))
    p, _ = palette_image(29, 41, 44)
    add("gif_transparency", "gif", "clip32", save(p, "GIF", transparency=2))
    add("gif_grey", "gif", "clip32", save(grey(36, 28, 45), "GIF", optimize=False))  # identity palette: mode L
    frames = [palette_image(33, 27, 46 + i)[0] for i in range(3)]
    add("gif_animated", "gif", "clip32", save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50))
    p, _ = palette_image(26, 34, 49)
    add("gif_local_palette", "gif", "clip32", gif_local_palette(save(p, "GIF", interlace=False)))
    p, _ = palette_image(24, 18, 50)
    add("gif_offset_frame", "gif", "clip32", gif_offset_frame(save(p, "GIF"), 9, 5, 4, 3))
    p, _ = palette_image(24, 18, 51)
    add("gif_offset_transparent", "gif", "clip32", gif_offset_frame(save(p, "GIF", transparency=5), 6, 11, 2, 7))
    p, _ = palette_image(1, 1, 52)
    add("gif_1x1", "gif", "clip32", save(p, "GIF"))
    add("gif_named_jpg", "jpg", "clip64", save(palette_image(70, 45, 53)[0], "GIF"))
    return C


def bad_inputs(cases):
    """(file name, bytes, words the C error must contain)."""
    by = {c[0]: c[3] for c in cases}
    jpg, png, gif = by["jpeg_rgb_444"], by["png_rgb"], by["gif_plain"]
    prog = by["jpeg_progressive"]
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    bomb_png = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                + png_chunk(b"IEND", b""))
    sof = jpg.index(b"\xff\xc0")
    bomb_jpg = jpg[:sof + 5] + struct.pack(">HH", 60000, 60000) + jpg[sof + 9:]
    bomb_gif = gif[:6] + struct.pack("<HH", 65535, 65535) + gif[10:]
    idat = png.index(b"IDAT")
    corrupt_png = bytearray(png)
    corrupt_png[idat + 40] ^= 0xFF  # CRC mismatch in IDAT
    return [
        ("truncated.jpg", jpg[:len(jpg) // 2], ["truncated"]),
        ("truncated_eoi.jpg", jpg[:-2], ["truncated"]),
        ("truncated_progressive.jpg", prog[:len(prog) * 2 // 3], ["truncated"]),
        ("truncated.png", png[:len(png) // 2], ["truncated"]),
        ("truncated.gif", gif[:len(gif) // 2], ["GIF"]),
        ("text.jpg", b"this is a caption, not a picture\n", ["not a JPEG, PNG or GIF"]),
        ("empty.png", b"", ["empty file"]),
        ("bomb.png", bomb_png, ["over the limit", "20000x20000"]),
        ("bomb.jpg", bomb_jpg, ["over the limit", "60000x60000"]),
        ("bomb.gif", bomb_gif, ["over the limit", "65535x65535"]),
        ("corrupt.png", bytes(corrupt_png), ["PNG", "corrupt"]),
        ("garbage_after_magic.jpg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, ["JPEG"]),
        ("empty_frame.gif", gif_empty_frame(gif, 65535), ["GIF", "empty"]),
        ("image.webp", b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32, ["WebP", "not supported"]),
    ]


def expand2square(pil_img, background_color):
    # LLaVA's llava/train/train.py / mm_utils.py
    width, height = pil_img.size
    if width == height:
        return pil_img
    if width > height:
        result = Image.new(pil_img.mode, (width, width), background_color)
        result.paste(pil_img, (0, (width - height) // 2))
        return result
    result = Image.new(pil_img.mode, (height, height), background_color)
    result.paste(pil_img, ((height - width) // 2, 0))
    return result


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    for d in ("src", "bad", "configs"):
        os.makedirs(os.path.join(ROOT, d))
    procs, tensors, pad_colors = {}, {}, {}
    for name, cfg in CONFIGS.items():
        d = os.path.join(ROOT, "configs", name)
        os.makedirs(d)
        with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        proc = CLIPImageProcessorPil.from_pretrained(d)
        procs[name] = proc
        # The processor's float for every value: a 16x16 image holding 0..255
        # in each channel, with resize and crop off.
        ramp = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, -1)
        t = proc(ramp, do_resize=False, do_center_crop=False, input_data_format="channels_last",
                 return_tensors="np")["pixel_values"][0]
        tensors[f"table/{name}"] = np.ascontiguousarray(t.reshape(3, 256).astype(np.float32))
        pad_colors[name] = [int(m * 255) for m in proc.image_mean]

    cases = build_cases()
    manifest = {"pillow": PIL.__version__, "transformers": transformers.__version__,
                "processor": "CLIPImageProcessorPil", "configs": {}, "cases": [], "bad": []}
    for name in CONFIGS:
        p = procs[name]
        manifest["configs"][name] = {"dir": f"configs/{name}", "out_size": int(p.crop_size["height"]),
                                     "pad_color": pad_colors[name]}
    for cid, fname, cfg, data, keep_f32 in cases:
        path = os.path.join(ROOT, "src", fname)
        with open(path, "wb") as f:
            f.write(data)
        src = Image.open(path)
        mode, size, fmt = src.mode, src.size, src.format
        im = src.convert("RGB")
        proc = procs[cfg]
        table = tensors[f"table/{cfg}"]
        for aspect in ("square", "pad"):
            x = expand2square(im, tuple(pad_colors[cfg])) if aspect == "pad" else im
            arr = np.array(x)  # numpy, so no info["transparency"] reaches transformers
            # channels_last: a numpy 1x1 or 3x3 RGB image is ambiguous to transformers
            kw = dict(input_data_format="channels_last", return_tensors="np")
            u8 = proc(arr, do_rescale=False, do_normalize=False, **kw)["pixel_values"][0]
            f32 = proc(arr, **kw)["pixel_values"][0]
            assert u8.dtype == np.uint8 and f32.dtype == np.float32, (u8.dtype, f32.dtype)
            via_table = np.stack([table[c][u8[c]] for c in range(3)])
            assert np.array_equal(via_table, f32), f"{cid}/{aspect}: output is not table[c][u8]"
            tensors[f"u8/{cid}/{aspect}"] = np.ascontiguousarray(u8)
            if keep_f32:
                tensors[f"f32/{cid}/{aspect}"] = np.ascontiguousarray(f32)
        manifest["cases"].append({"id": cid, "file": f"src/{fname}", "config": cfg, "format": fmt,
                                  "pil_mode": mode, "size": list(size)})
    for fname, data, words in bad_inputs(cases):
        path = os.path.join(ROOT, "bad", fname)
        with open(path, "wb") as f:
            f.write(data)
        try:  # Pillow must refuse it too (what it says is recorded)
            Image.open(path).convert("RGB")
            raise SystemExit(f"Pillow accepted bad input {fname}")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            pil_error = f"{type(e).__name__}: {e}".replace(path, fname)
        manifest["bad"].append({"file": f"bad/{fname}", "expect": words, "pillow": pil_error})
    # Images whose expand2square canvas would be gigabytes (60000^2 x 3 bytes):
    # small files that must preprocess in bounded memory (Pillow's own
    # reference would need that canvas; the extreme cases above check the
    # pixels on canvases Pillow can afford).
    os.makedirs(os.path.join(ROOT, "huge"))
    manifest["huge"] = []
    for fname, im, fmt in (("wide_60000x2.png", Image.new("RGB", (60000, 2), (200, 30, 60)), "PNG"),
                           ("tall_33x22575.jpg", Image.new("RGB", (33, 22575), (10, 120, 230)), "JPEG")):
        with open(os.path.join(ROOT, "huge", fname), "wb") as f:
            f.write(save(im, fmt))
        manifest["huge"].append({"file": f"huge/{fname}", "size": list(im.size)})
    modes = {c["id"]: c["pil_mode"] for c in manifest["cases"]}
    assert modes["gif_grey"] == "L" and modes["png_la"] == "LA" and modes["png_mode1"] == "1", modes
    assert modes["png_grey16"] == "I;16" and modes["jpeg_cmyk"] == "CMYK" and modes["png_p_transparency"] == "P"
    save_file(tensors, os.path.join(ROOT, "reference.safetensors"))
    with open(os.path.join(ROOT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(ROOT) for fn in fns)
    print(f"{len(cases)} images x 2 aspects, {len(manifest['bad'])} bad inputs; {total / 1e6:.2f} MB in {ROOT}")


if __name__ == "__main__":
    main()
