#!/usr/bin/env python3
"""A synthetic COCO-shaped data set and fake-server rules for timing
`llava datagen`'s own overhead (docs/performance.md). Standard library only.

    python3 scripts/make_datagen_bench.py OUT_DIR [N_IMAGES]

Writes OUT_DIR/captions.json (5 captions per image), OUT_DIR/instances.json
(7 random boxes per image, 80 categories) and OUT_DIR/rules.json (instant,
parseable answers for the three response types).
"""
import json
import os
import random
import sys


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    os.makedirs(out, exist_ok=True)
    r = random.Random(1)
    images = [{"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": 640, "height": 480} for i in range(n)]
    caps = [{"image_id": i + 1, "id": 5 * i + k, "caption": f"A photo number {i} showing thing {k} on a table."}
            for i in range(n) for k in range(5)]
    with open(os.path.join(out, "captions.json"), "w") as f:
        json.dump({"images": images, "annotations": caps}, f)
    boxes = [{"image_id": i + 1, "category_id": r.randrange(80),
              "bbox": [r.uniform(0, 300), r.uniform(0, 200), r.uniform(10, 300), r.uniform(10, 200)]}
             for i in range(n) for _ in range(7)]
    with open(os.path.join(out, "instances.json"), "w") as f:
        json.dump({"images": [], "categories": [{"id": c, "name": f"cat{c}"} for c in range(80)],
                   "annotations": boxes}, f)
    with open(os.path.join(out, "rules.json"), "w") as f:
        json.dump([{"system": "needs reasoning", "content": "Question:\nWhy?\n===\nAnswer:\nBecause."},
                   {"system": "a conversation", "content": "Question:\nWhat?\n===\nAnswer:\nThat."},
                   {"content": "A description."}], f)
    print(f"wrote {out}: {n} images")


if __name__ == "__main__":
    main()
