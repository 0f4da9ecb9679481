#!/usr/bin/env python3
"""Fixtures for `llava judge`: LLaVA's score parsing and summary rule
(llava/eval/eval_gpt_review_bench.py parse_score, summarize_gpt_review.py),
re-implemented here in Python with numpy as the independent reference.

    python3 scripts/make_judge_fixture.py      # writes tests/fixtures/judge/

Writes:
  score_cases.json     review texts (tricky first lines) -> the two scores
                       LLaVA's parse_score gives ([-1, -1] when it fails)
  reviews.jsonl        a review file as eval_gpt_review_bench.py writes it:
                       three categories, fractional scores, unparseable
                       reviews recorded as [-1, -1]
  summary.json         per key of the summary (sorted as Python sorts): the
                       two means rounded to 3 decimals and the relative score
                       round(mean2 / mean1 * 100, 1), and the lines LLaVA prints
"""
import json
import os
import random
from collections import defaultdict

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "judge")


def parse_score(review):
    """LLaVA's rule: the first line, commas as spaces, split(' ') into exactly two floats."""
    try:
        pair = review.split("\n")[0].replace(",", " ")
        sp = pair.split(" ")
        if len(sp) == 2:
            return [float(sp[0]), float(sp[1])]
        return [-1, -1]
    except Exception:
        return [-1, -1]


def summarize(reviews):
    scores = defaultdict(list)
    for r in reviews:
        if "category" in r:
            scores[r["category"]].append(r["tuple"])
            scores["all"].append(r["tuple"])
        elif "tuple" in r:
            scores["all"].append(r["tuple"])
        else:
            scores["all"].append(r["score"])
    out, lines = [], []
    for k, v in sorted(scores.items()):
        stats = [round(x, 3) for x in np.asarray(v).mean(0).tolist()]
        rel = round(stats[1] / stats[0] * 100, 1)
        out.append({"name": k, "mean": stats, "relative": rel, "n": len(v),
                    "unparseable": sum(1 for t in v if list(t) == [-1, -1])})
        lines.append(f"{k} {rel}")
    return out, lines


def main():
    os.makedirs(OUT, exist_ok=True)
    texts = [
        "8 9\nAssistant 1 was more detailed.",
        "8,9\nexplanation",
        "7.5 6\n",
        "10, 3",
        "8  9\ntwo spaces make three fields",
        "Score: 8 9",
        "8 9 10",
        "8\n9",
        "",
        "nine eight",
        " 8 9",
        "8 9 \nx",
        "8\t9",
        "1e1 5",
        "8 9\r\nCRLF",
        "-3 4",
        "8.0,  7.0",
        "6 7, ",
    ]
    cases = [{"review": t, "scores": parse_score(t)} for t in texts]
    with open(os.path.join(OUT, "score_cases.json"), "w") as f:
        json.dump(cases, f, indent=1)

    rng = random.Random(12)
    reviews = []
    qid = 0
    for cat in ["llava_bench_complex", "llava_bench_conv", "llava_bench_detail"]:
        for _ in range(7):
            text = rng.choice([f"{rng.randint(5, 10)} {rng.randint(1, 10)}\nok",
                               f"{rng.randint(5, 10)}.5 {rng.randint(1, 10)}\nok",
                               f"{rng.randint(5, 10)},{rng.randint(1, 10)}.25\nok",
                               f"{rng.randint(5, 10)} {rng.randint(1, 10)}\nok",
                               "The first assistant is better.\n8 4"])
            reviews.append({"id": qid + 1, "question_id": qid, "answer1_id": f"r{qid}", "answer2_id": f"m{qid}",
                            "category": cat, "content": text, "tuple": parse_score(text)})
            qid += 1
    with open(os.path.join(OUT, "reviews.jsonl"), "w") as f:
        for r in reviews:
            f.write(json.dumps(r) + "\n")
    summary, lines = summarize(reviews)
    with open(os.path.join(OUT, "summary.json"), "w") as f:
        json.dump({"categories": summary, "lines": lines}, f, indent=1)
    print(f"wrote {OUT}: {len(cases)} score cases, {len(reviews)} reviews")


if __name__ == "__main__":
    main()
