#!/usr/bin/env python3
"""ScienceQA (problems.json + pid_splits.json) -> LLaVA-format JSON.

    python scripts/convert_sqa.py --base-dir DIR --split test --prompt-format CQM-A
    # writes DIR/llava_test_CQM-A.json (or --out FILE)

The output is what LLaVA's scripts/convert_sqa_to_llava.py (convert_to_llava)
writes for the same split and prompt format, byte for byte: the same prompt
text, the same list order (pid_splits order), json.dump with indent=2 and
ASCII escapes. The rules it follows (docs/eval.md has them too):

- context = hint (captions are not used), stripped; "N/A" when empty;
- choices = "(A) x (B) y ..." joined by single spaces;
- lecture and solution: a literal backslash-n in the text becomes a newline
  (LLaVA escapes newlines to "\\n" and back, which also turns existing
  backslash-n pairs into newlines);
- input formats (Q question, C context, M options, L lecture, E solution):
  CQM, QCM, QCML, QCME, QCMLE, QCLM, QCEM, QCLEM; output formats: A, AL, AE,
  ALE, AEL, LA, EA, LEA, ELA, LEPA (the training data uses QCM-LEA, the
  LLaVA-1.5 evaluation CQM-A);
- both texts: every double space replaced by one (a single left-to-right
  pass), stripped; a text ending in "BECAUSE:" loses every "BECAUSE:";
- an input starting with "Question: " loses every "Question: "; an output
  starting with "Answer: " loses every "Answer: " (all occurrences, as
  str.replace does, not just the first);
- with an image: "image": "<pid>/<image file>" and the human turn gets
  "\\n<image>" appended.
"""
import argparse
import json
import os
import re
import sys

OPTIONS = ["A", "B", "C", "D", "E"]

INPUTS = {
    "CQM": "Context: {C}\nQuestion: {Q}\nOptions: {M}\n",
    "QCM": "Question: {Q}\nContext: {C}\nOptions: {M}\n",
    "QCML": "Question: {Q}\nContext: {C}\nOptions: {M}\nBECAUSE: {L}\n",
    "QCME": "Question: {Q}\nContext: {C}\nOptions: {M}\nBECAUSE: {E}\n",
    "QCMLE": "Question: {Q}\nContext: {C}\nOptions: {M}\nBECAUSE: {L} {E}\n",
    "QCLM": "Question: {Q}\nContext: {C}\nBECAUSE: {L}\nOptions: {M}\n",
    "QCEM": "Question: {Q}\nContext: {C}\nBECAUSE: {E}\nOptions: {M}\n",
    "QCLEM": "Question: {Q}\nContext: {C}\nBECAUSE: {L} {E}\nOptions: {M}\n",
}

OUTPUTS = {
    "A": "Answer: The answer is {A}.",
    "AL": "Answer: The answer is {A}. BECAUSE: {E}",
    "AE": "Answer: The answer is {A}. BECAUSE: {L}",
    "ALE": "Answer: The answer is {A}. BECAUSE: {L} {E}",
    "AEL": "Answer: The answer is {A}. BECAUSE: {E} {L}",
    "LA": "Answer: {L} The answer is {A}.",
    "EA": "Answer: {E} The answer is {A}.",
    "LEA": "Answer: {L} {E} The answer is {A}.",
    "ELA": "Answer: {E} {L} The answer is {A}.",
}


def fill(template, fields):
    # One pass, like an f-string: text inside a field is never substituted again.
    return re.sub(r"\{([QCMALE])\}", lambda m: fields[m.group(1)], template)


def unescape_newlines(text):
    return text.replace("\n", "\\n").replace("\\n", "\n")


def lepa_output(lecture, solution, answer):
    parts = []
    if lecture.strip():
        parts.append(f"LECTURE: {lecture}\n")
    if solution.strip():
        parts.append(f"SOLUTION: {solution}\n")
    parts.append("###\n")
    parts.append(f"ANSWER: {answer}.")
    return "".join(parts)


def tidy(text):
    text = text.replace("  ", " ").strip()
    if text.endswith("BECAUSE:"):
        text = text.replace("BECAUSE:", "").strip()
    return text


def prompt_pair(problem, prompt_format):
    in_fmt, out_fmt = prompt_format.split("-")
    context = (problem["hint"] + " ").strip() or "N/A"
    fields = {
        "Q": problem["question"],
        "C": context,
        "M": " ".join(f"({OPTIONS[i]}) {c}" for i, c in enumerate(problem["choices"])),
        "A": OPTIONS[problem["answer"]],
        "L": unescape_newlines(problem["lecture"]),
        "E": unescape_newlines(problem["solution"]),
    }
    text_in = fill(INPUTS[in_fmt], fields)
    if out_fmt == "LEPA":
        text_out = lepa_output(fields["L"], fields["E"], fields["A"])
    else:
        text_out = fill(OUTPUTS[out_fmt], fields)
    text_in, text_out = tidy(text_in), tidy(text_out)
    if text_in.startswith("Question: "):
        text_in = text_in.replace("Question: ", "")
    if text_out.startswith("Answer: "):
        text_out = text_out.replace("Answer: ", "")
    return text_in, text_out


def convert(problems, pids, prompt_format):
    records = []
    for pid in pids:
        problem = problems[pid]
        text_in, text_out = prompt_pair(problem, prompt_format)
        record = {"id": pid}
        if problem["image"] is not None:
            record["image"] = os.path.join(pid, problem["image"])
            text_in = f"{text_in}\n<image>"
        record["conversations"] = [{"from": "human", "value": text_in}, {"from": "gpt", "value": text_out}]
        records.append(record)
    return records


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-dir", required=True, help="folder with problems.json and pid_splits.json")
    ap.add_argument("--split", required=True, help="train, val, test, minival, ... (a key of pid_splits.json)")
    ap.add_argument("--prompt-format", default="QCM-LEA", help="INPUT-OUTPUT, e.g. QCM-LEA, QCM-A, CQM-A")
    ap.add_argument("--out", help="output file (default BASE_DIR/llava_{split}_{format}.json)")
    args = ap.parse_args()
    in_fmt, _, out_fmt = args.prompt_format.partition("-")
    if in_fmt not in INPUTS or (out_fmt not in OUTPUTS and out_fmt != "LEPA"):
        sys.exit(f"convert_sqa.py: unknown prompt format {args.prompt_format!r}: input one of "
                 f"{', '.join(INPUTS)}; output one of {', '.join(list(OUTPUTS) + ['LEPA'])}")
    with open(os.path.join(args.base_dir, "pid_splits.json")) as f:
        splits = json.load(f)
    if args.split not in splits:
        sys.exit(f"convert_sqa.py: pid_splits.json has no split {args.split!r} (it has {', '.join(splits)})")
    with open(os.path.join(args.base_dir, "problems.json")) as f:
        problems = json.load(f)
    records = convert(problems, splits[args.split], args.prompt_format)
    out = args.out or os.path.join(args.base_dir, f"llava_{args.split}_{args.prompt_format}.json")
    with open(out, "w") as f:
        json.dump(records, f, indent=2)
    print(f"Number of samples: {len(records)} -> {out}")


if __name__ == "__main__":
    main()
