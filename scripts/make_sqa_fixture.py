#!/usr/bin/env python3
"""A small ScienceQA-shaped data set and the scores an independent Python
implementation gives for it, so the whole ScienceQA path is tested without
the real data.

    python scripts/make_sqa_fixture.py      # writes tests/fixtures/scienceqa/

Writes:
  problems.json, pid_splits.json   the real schema (question, choices, answer,
                                   hint, image, task, grade, subject, topic,
                                   category, skill, lecture, solution, split)
  images/<split>/<pid>/image.png   small PNGs for the problems with an image
  llava_test_CQM-A.json, llava_train_QCM-LEA.json, llava_test_QCM-A.json
                                   scripts/convert_sqa.py's output
  answers.jsonl                    model outputs in LLaVA's answers format:
                                   tricky texts, one question left out, one
                                   answered twice (the last line counts)
  golden_result.json, golden_output.json
                                   LLaVA's eval_science_qa.py rule applied to
                                   answers.jsonl (re-implemented below)
  golden_scores.json               the leaderboard's per-category accuracies
                                   (ScienceQA's get_scores, re-implemented
                                   without pandas)
  parse_cases.json                 the parsing rule on a table of tricky texts
  questions_tricky.json, golden_prompts.json
                                   the question text LLaVA's model_vqa_science.py
                                   builds (before the template) for the test
                                   questions and a few odd ones, with and
                                   without --single-pred-prompt
"""
import json
import os
import random
import re
import shutil
import subprocess
import sys

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "scienceqa")
OPTIONS = ["A", "B", "C", "D", "E"]
SUBJECTS = ["natural science", "social science", "language science"]


def make_problems(rng):
    """Problems with every feature the conversion and the categories care about."""
    lectures = [
        "Magnets can pull or push on each other without touching.\nWhen magnets attract, they pull together.",
        "Literal backslash-n here:\\nbecomes a line break in LLaVA's text.",
        "",
        "A  sentence  with  double  spaces   and three.",
        "Caf\u00e9 \u2014 \u201cquoted\u201d text, braces {C} and {Q} stay as they are.",
    ]
    solutions = [
        "Look at each magnet.\n\nThe answer follows.",
        "Answer: the solution itself says Answer: twice.",
        "",
        "Think about the units.   Then pick.",
        "The answer is in the picture.",
    ]
    questions = [
        "Which word would you find on a dictionary page with the guide words {lo} - {ma}?",
        "Question: what does the text say? (a question that contains 'Question: ')",
        "Will these magnets attract or repel each other?",
        "Which of these states is farthest north?",
        "How long is a school bus?",
        "What is the capital of Texas?",
    ]
    hints = ["", "  Two magnets are placed as shown.  ", "Select the best estimate.", "", "Read the text.\nThen answer.",
             "\u00a0"]
    problems = {}
    splits = {"train": [], "val": [], "test": []}
    pid = 0
    for split, count in [("train", 6), ("val", 4), ("test", 14)]:
        for k in range(count):
            pid += 1
            n_choices = 2 + (pid % 4)
            grade = 1 + (pid * 5) % 12
            has_image = pid % 3 != 0
            problems[str(pid)] = {
                "question": questions[pid % len(questions)],
                "choices": [f"choice {c} of {pid}" for c in range(n_choices)],
                "answer": rng.randrange(n_choices),
                "hint": hints[pid % len(hints)],
                "image": "image.png" if has_image else None,
                "task": "closed choice" if n_choices > 2 else "yes or no",
                "grade": f"grade{grade}",
                "subject": SUBJECTS[pid % 3],
                "topic": ["physics", "geography", "vocabulary", "units-and-measurement"][pid % 4],
                "category": "Magnets" if pid % 2 else "Geography",
                "skill": "Identify magnets that attract or repel",
                "lecture": lectures[pid % len(lectures)],
                "solution": solutions[(pid // 2) % len(solutions)],
                "split": split,
            }
            splits[split].append(str(pid))
    rng.shuffle(splits["test"])  # pid_splits order is not numeric order
    splits["trainval"] = splits["train"] + splits["val"]
    splits["minival"] = splits["val"][:2]
    return problems, splits


def write_images(problems, rng):
    for pid, p in problems.items():
        if p["image"] is None:
            continue
        folder = os.path.join(OUT, "images", p["split"], pid)
        os.makedirs(folder, exist_ok=True)
        w, h = 20 + int(pid) % 7, 14 + int(pid) % 5
        img = Image.new("RGB", (w, h))
        img.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(w * h)])
        img.save(os.path.join(folder, p["image"]))


# ---- LLaVA's parsing and scoring rule, re-implemented --------------------------------

def parse_answer(text):
    if text in OPTIONS:
        return text
    if len(text) >= 3 and text[0] in OPTIONS and text[1:3] == ". ":
        return text[0]
    found = re.findall(r"The answer is ([A-Z]).", text)
    return found[0] if len(found) == 1 else "FAILED"


def pred_index(answer, n_choices):
    return OPTIONS.index(answer) if answer in OPTIONS[:n_choices] else -1


def llava_eval(problems, pids, predictions):
    result = {"acc": None, "correct": None, "count": None, "results": {}, "outputs": {}}
    output = {"correct": [], "incorrect": []}
    for pid in pids:
        prob = problems[pid]
        pred = predictions.get(pid, {"text": "FAILED", "prompt": "Unknown"})
        answer = parse_answer(pred["text"])
        idx = pred_index(answer, len(prob["choices"]))
        analysis = {"question_id": pid, "parsed_ans": answer, "ground_truth": OPTIONS[prob["answer"]],
                    "question": pred["prompt"], "pred": pred["text"], "is_multimodal": "<image>" in pred["prompt"]}
        result["results"][pid] = idx
        result["outputs"][pid] = pred["text"]
        output["correct" if idx == prob["answer"] else "incorrect"].append(analysis)
    correct = len(output["correct"])
    total = correct + len(output["incorrect"])
    result.update(acc=correct / total * 100, correct=correct, count=total)
    return result, output


def leaderboard_scores(problems, results, split="test"):
    """ScienceQA's get_scores: categories over the problems of the split,
    Avg over the number of results."""
    rows = [(pid, p) for pid, p in problems.items() if p["split"] == split]

    def acc(pred):
        chosen = [(pid, p) for pid, p in rows if pred(p)]
        if not chosen:
            return None
        right = sum(1 for pid, p in chosen if int(results[pid]) == p["answer"])
        return "{:.2f}".format(right / len(chosen) * 100)

    grades_low = [f"grade{g}" for g in range(1, 7)]
    grades_high = [f"grade{g}" for g in range(7, 13)]
    right_all = sum(1 for pid, p in rows if int(results[pid]) == p["answer"])
    return {
        "acc_natural": acc(lambda p: p["subject"] == "natural science"),
        "acc_social": acc(lambda p: p["subject"] == "social science"),
        "acc_language": acc(lambda p: p["subject"] == "language science"),
        "acc_has_text": acc(lambda p: bool(p["hint"])),
        "acc_has_image": acc(lambda p: bool(p["image"])),
        "acc_no_context": acc(lambda p: not p["hint"] and not p["image"]),
        "acc_grade_1_6": acc(lambda p: p["grade"] in grades_low),
        "acc_grade_7_12": acc(lambda p: p["grade"] in grades_high),
        "acc_average": "{:.2f}".format(right_all / len(results) * 100),
    }


# ---- model outputs --------------------------------------------------------------------

TRICKY = [
    ("B", 3), ("B. because of the magnets", 3), ("The answer is C.", 4), ("The answer is A. The answer is B.", 4),
    ("b", 3), ("the answer is b.", 3), ("E", 3), ("The answer is F.", 5), ("", 2), ("   ", 2), (" B", 3),
    ("B ", 3), ("B\n", 3), ("B.", 3), ("(B)", 3), ("The answer is C", 4), ("The answer is C\n", 4),
    ("The answer is Cx", 4), ("A. The answer is B.", 3), ("The answer is AThe answer is B.", 3),
    ("The answer is B\u3002", 3), ("The answer is B.\nThe answer is B.", 3), ("Lecture...\nThe answer is D.", 4),
    ("The answer is  B.", 3), ("The answer is Z.", 5), ("C", 5), ("E", 5), ("F", 5), ("\u00c9. no", 3),
    ("D. x", 3),
]


def make_answers(problems, pids, rng):
    texts = [t for t, _ in TRICKY]
    lines = []
    for i, pid in enumerate(pids):
        if i == 3:
            continue  # no answer: scored FAILED
        p = problems[pid]
        right = OPTIONS[p["answer"]]
        text = [right, f"The answer is {right}.", f"{right}. {p['choices'][p['answer']]}",
                texts[i % len(texts)]][i % 4]
        prompt = ("<image>\n" if p["image"] else "") + "Question text\nAnswer with the option's letter from the " \
                                                       "given choices directly."
        lines.append({"question_id": pid, "prompt": prompt, "text": text, "answer_id": f"ans{i}",
                      "model_id": "fixture", "metadata": {}})
    # A repeated id: the later line wins, as with LLaVA's dict.
    lines.append(dict(lines[0], text="The answer is E.", answer_id="dup"))
    return lines


# ---- model_vqa_science.py's question text, re-implemented ------------------------------

SINGLE_PRED = "Answer with the option's letter from the given choices directly."


def question_text(item, single_pred):
    qs = item["conversations"][0]["value"].replace("<image>", "").strip()
    if "image" in item:
        qs = "<image>\n" + qs
    if single_pred:
        qs = qs + "\n" + SINGLE_PRED
    return qs


TRICKY_QUESTIONS = [
    {"id": "t1", "image": "t1/image.png", "conversations": [{"from": "human", "value": "<image>\u3000 Q?\n\u00a0"}]},
    {"id": "t2", "conversations": [{"from": "human", "value": " \x1c a <image>b<image> \u2028"}]},
    {"id": "t3", "image": "x.png", "conversations": [{"from": "human", "value": ""}]},
    {"id": "t4", "conversations": [{"from": "human", "value": "\u200b zero-width space is not whitespace \u200b"}]},
]


def main():
    rng = random.Random(7)
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    problems, splits = make_problems(rng)
    with open(os.path.join(OUT, "problems.json"), "w") as f:
        json.dump(problems, f, indent=1)
    with open(os.path.join(OUT, "pid_splits.json"), "w") as f:
        json.dump(splits, f, indent=1)
    write_images(problems, rng)
    for split, fmt in [("test", "CQM-A"), ("test", "QCM-A"), ("train", "QCM-LEA")]:
        subprocess.run([sys.executable, os.path.join(HERE, "convert_sqa.py"), "--base-dir", OUT, "--split", split,
                        "--prompt-format", fmt], check=True)

    answers = make_answers(problems, splits["test"], rng)
    with open(os.path.join(OUT, "answers.jsonl"), "w") as f:
        for a in answers:
            f.write(json.dumps(a) + "\n")
    predictions = {a["question_id"]: a for a in answers}
    result, output = llava_eval(problems, splits["test"], predictions)
    with open(os.path.join(OUT, "golden_result.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(OUT, "golden_output.json"), "w") as f:
        json.dump(output, f, indent=2)
    with open(os.path.join(OUT, "golden_scores.json"), "w") as f:
        json.dump(leaderboard_scores(problems, result["results"]), f, indent=2)
    cases = [{"text": t, "n_choices": n, "parsed": parse_answer(t), "pred_idx": pred_index(parse_answer(t), n)}
             for t, n in TRICKY]
    with open(os.path.join(OUT, "parse_cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
    with open(os.path.join(OUT, "questions_tricky.json"), "w") as f:
        json.dump(TRICKY_QUESTIONS, f, indent=1)
    with open(os.path.join(OUT, "llava_test_CQM-A.json")) as f:
        test_questions = json.load(f)
    prompts = {"llava_test_CQM-A.json": {}, "questions_tricky.json": {}}
    for fname, items in [("llava_test_CQM-A.json", test_questions), ("questions_tricky.json", TRICKY_QUESTIONS)]:
        for single in (0, 1):
            prompts[fname][str(single)] = [question_text(q, single) for q in items]
    with open(os.path.join(OUT, "golden_prompts.json"), "w") as f:
        json.dump(prompts, f, indent=1)
    print(f"{OUT}: {len(problems)} problems, test acc {result['acc']:.2f} ({result['correct']}/{result['count']})")


if __name__ == "__main__":
    main()
