#!/usr/bin/env python3
"""Seed inputs for the LLaVA-sample fuzz targets, from the conversation
fixture (tests/fixtures/conversation/cases.json): every case as a LLaVA
sample object (tests/fuzz/seeds/conversation/) and groups of them as JSON
lists and JSONL files (tests/fuzz/seeds/dataset/). Python standard library
only. The other targets seed straight from tests/fixtures (scripts/fuzz_seeds.sh).

    python3 scripts/make_fuzz_seeds.py
"""
import json
import os
import shutil

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CASES = os.path.join(ROOT, "tests", "fixtures", "conversation", "cases.json")
OUT = os.path.join(ROOT, "tests", "fuzz", "seeds")


def sample(case, i):
    s = {"id": f"case{i}", "conversations": [{"from": r, "value": v} for r, v in case["turns"]]}
    if case.get("has_image"):
        s["image"] = "img.jpg"
    return s


def main():
    cases = json.load(open(CASES))["cases"]
    for d in ("conversation", "dataset"):
        shutil.rmtree(os.path.join(OUT, d), ignore_errors=True)
        os.makedirs(os.path.join(OUT, d))
    samples = [sample(c, i) for i, c in enumerate(cases)]
    for i, s in enumerate(samples[::4]):  # every fourth case: the templates and edge cases vary along the list
        with open(os.path.join(OUT, "conversation", f"sample_{i:03d}.json"), "w") as f:
            json.dump(s, f, ensure_ascii=False)
    for i in range(0, len(samples), 24):
        group = samples[i:i + 8]
        with open(os.path.join(OUT, "dataset", f"list_{i:03d}.json"), "w") as f:
            json.dump(group, f, ensure_ascii=False, indent=1)
        with open(os.path.join(OUT, "dataset", f"lines_{i:03d}.jsonl"), "w") as f:
            f.write("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in group))
    print(f"{len(samples[::4])} conversation seeds, {2 * len(range(0, len(samples), 24))} dataset seeds in {OUT}")


if __name__ == "__main__":
    main()
