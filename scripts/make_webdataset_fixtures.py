#!/usr/bin/env python3
"""WebDataset tar fixtures for tests/test_webdataset.c -> tests/fixtures/webdataset/.

clean/: three shards written the way img2dataset writes them (KEY.jpg, KEY.txt,
KEY.json per sample, 9-digit keys = 5-digit shard + 4-digit index, plus the
shard's .parquet and _stats.json next to it), and the same samples as a LLaVA
JSON (LLaVA-558K style prompts) + image folder.

hostile/: every way a shard can be broken, and expected.json listing the
report entry each must give (tar, key, reason), in order:
  00000.tar  a caption-less sample, a corrupt JPEG, a text file named .jpg,
             a duplicate key (img2dataset collision), path traversal and
             absolute names, a symlink, an image-less sample, good samples
             between them
  00001.tar  truncated inside a JPEG member
  00002.tar  a header claiming 2^40 bytes (base-256 size field), past the end
  00003.tar  not a tar at all
  00004.tar  listed in shards.txt but missing

Pillow for the JPEGs; tarfile (stdlib) for headers. Deterministic output.
Run: /path/to/venv/bin/python scripts/make_webdataset_fixtures.py
"""
import io
import json
import os
import tarfile

from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "webdataset")
PROMPTS = ["Give a brief description of the image.\n<image>", "<image>\nDescribe the image concisely.",
           "Render a clear and concise summary of the photo.\n<image>"]


def jpeg(seed, w=26, h=20):
    im = Image.new("RGB", (w, h))
    px = im.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = ((x * 9 + seed * 40) % 256, (y * 13 + seed * 17) % 256, (x * y + seed * 5) % 256)
    b = io.BytesIO()
    im.save(b, "JPEG", quality=90)
    return b.getvalue()


def member(name, data=b"", kind=tarfile.REGTYPE, link="", size=None):
    ti = tarfile.TarInfo(name)
    ti.size = len(data) if size is None else size
    ti.type = kind
    ti.linkname = link
    ti.mtime = 1700000000
    ti.mode = 0o644
    ti.uname = ti.gname = ""
    head = ti.tobuf(format=tarfile.GNU_FORMAT)
    pad = (-len(data)) % 512
    return head + data + b"\0" * pad


def end():
    return b"\0" * 1024


def sample_members(key, img, caption, meta_extra=None):
    meta = {"url": "http://example.com/%s.jpg" % key, "key": key, "status": "success", "caption": caption,
            "width": 26, "height": 20}
    if meta_extra:
        meta.update(meta_extra)
    return [member(key + ".jpg", img), member(key + ".txt", caption.encode()),
            member(key + ".json", json.dumps(meta).encode())]


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def make_clean():
    d = os.path.join(ROOT, "clean")
    captions = ["a red square on a green field", "two cats, one black and one white",
                "an old bus parked near the station at night", "Café au lait in a blue cup",
                "a line\nbroken in two", "mountains", "a very long caption " + "with many words " * 6,
                "sunset over the sea", "a dog", "the number 42 painted on a wall", "ÜBER große Straße",
                "an empty room"]
    items, k = [], 0
    for shard in range(3):
        blob = b""
        for i in range(4):
            key = "%05d%04d" % (shard, i)
            img = jpeg(k)
            blob += b"".join(sample_members(key, img, captions[k]))
            write(os.path.join(d, "images", key + ".jpg"), img)
            items.append({"id": key, "image": key + ".jpg",
                          "conversations": [{"from": "human", "value": PROMPTS[k % 3]},
                                            {"from": "gpt", "value": captions[k]}]})
            k += 1
        write(os.path.join(d, "%05d.tar" % shard), blob + end())
        write(os.path.join(d, "%05d.parquet" % shard), b"PAR1 not read by llava")
        write(os.path.join(d, "%05d_stats.json" % shard), json.dumps({"count": 4, "successes": 4}).encode())
    write(os.path.join(d, "llava.json"), json.dumps(items, indent=1, ensure_ascii=False).encode())


def make_hostile():
    d = os.path.join(ROOT, "hostile")
    expected = []

    def exp(tar, key, reason):
        expected.append({"tar": tar, "key": key, "reason": reason})

    # 00000.tar
    m = []
    m += sample_members("000000000", jpeg(1), "good one")
    m += [member("000000001.jpg", jpeg(2)), member("000000001.json", b'{"caption": "only in json"}')]
    exp("00000.tar", "000000001", "missing_caption")
    bad = bytearray(jpeg(3))
    bad[200:] = bytes((i * 37) % 256 for i in range(len(bad) - 200))
    m += [member("000000002.jpg", bytes(bad)), member("000000002.txt", b"corrupt jpeg")]
    exp("00000.tar", "000000002", "corrupt_image")
    m += [member("000000003.jpg", b"this is text, not a JPEG\n"), member("000000003.txt", b"text named jpg")]
    exp("00000.tar", "000000003", "corrupt_image")
    m += sample_members("000000004", jpeg(4), "first of a collision")
    m += sample_members("000000004", jpeg(5), "second of a collision")
    exp("00000.tar", "000000004", "duplicate_key")
    m += [member("../../evil.jpg", jpeg(6))]
    exp("00000.tar", "", "unsafe_member")
    m += [member("/tmp/llava_wds_absolute.txt", b"absolute")]
    exp("00000.tar", "", "unsafe_member")
    m += [member("000000005.jpg", kind=tarfile.SYMTYPE, link="/etc/passwd")]
    exp("00000.tar", "000000005", "unsafe_member")
    m += [member("000000006.txt", b"caption without image"), member("000000006.json", b"{}")]
    exp("00000.tar", "000000006", "missing_image")
    m += [member("sub/", kind=tarfile.DIRTYPE)]
    m += sample_members("sub/000000007", jpeg(7), "good one in a folder")
    write(os.path.join(d, "00000.tar"), b"".join(m) + end())

    # 00001.tar: cut inside the second sample's JPEG
    good = b"".join(sample_members("000010000", jpeg(8), "good before the cut"))
    cut = b"".join(sample_members("000010001", jpeg(9), "lost"))
    write(os.path.join(d, "00001.tar"), good + cut[:512 + 300])
    exp("00001.tar", "000010001", "corrupt_archive")

    # 00002.tar: a header claiming 2^40 bytes, then the file ends
    good = b"".join(sample_members("000020000", jpeg(10), "good before the huge header"))
    huge = member("000020001.jpg", b"x" * 100, size=1 << 40)
    write(os.path.join(d, "00002.tar"), good + huge[:512 + 512])
    exp("00002.tar", "000020001", "unsafe_member")
    exp("00002.tar", "", "corrupt_archive")

    # 00003.tar: not a tar
    write(os.path.join(d, "00003.tar"), b"<html>404 Not Found</html>\n" * 30)
    exp("00003.tar", "", "corrupt_archive")

    # 00004.tar: listed, missing
    exp("00004.tar", "", "corrupt_archive")
    write(os.path.join(d, "shards.txt"),
          b"# hostile shards, relative to this file\n00000.tar\n00001.tar\n\n00002.tar\n00003.tar\n00004.tar\n")
    written = ["000000000", "000000004", "sub/000000007", "000010000", "000020000"]
    write(os.path.join(d, "expected.json"),
          json.dumps({"written": written, "problems": expected}, indent=1).encode())


if __name__ == "__main__":
    make_clean()
    make_hostile()
    print("wrote", ROOT)
