#!/usr/bin/env python3
"""The paper's "LLaVA + GPT-4 (judge)" ScienceQA ensemble on the ScienceQA
fixture, with a scripted judge, and the result an independent Python
implementation of the rule gives.

    python3 scripts/make_sqa_ensemble_fixture.py   # after make_sqa_fixture.py

The rule (LLaVA's eval_science_qa_gpt4_requery.py): where the two models'
parsed answers differ, the judge is asked; its answer counts when it names
one of the question's options, otherwise the first model's answer stands.
(LLaVA draws a random option for a judge letter beyond the choices; we keep
the first model's answer there too, so results are reproducible.)

Writes tests/fixtures/scienceqa/ensemble/:
  other_answers.jsonl   the second model's answers (agreeing, disagreeing, FAILED)
  judge_rules.json      the fake server's rules: the judge's reply per question
  golden.json           which questions were disagreements, the judge's
                        parsed letters, and the leaderboard scores of the
                        first model, the second and the ensemble
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_sqa_fixture as sqa  # noqa: E402

OUT = os.path.join(sqa.OUT, "ensemble")


def load_answers(path):
    preds = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                a = json.loads(line)
                preds[str(a["question_id"])] = a  # the last line wins, as in LLaVA
    return preds


def main():
    os.makedirs(OUT, exist_ok=True)
    problems = json.load(open(os.path.join(sqa.OUT, "problems.json")))
    pids = json.load(open(os.path.join(sqa.OUT, "pid_splits.json")))["test"]
    ours = load_answers(os.path.join(sqa.OUT, "answers.jsonl"))
    other_lines, rules = [], []
    golden = {"disagree": [], "judge_letters": {}}
    combined = {}
    for i, pid in enumerate(pids):
        p = problems[pid]
        n = len(p["choices"])
        right = sqa.OPTIONS[p["answer"]]
        wrong = sqa.OPTIONS[(p["answer"] + 1) % n]
        our_text = ours.get(pid, {"text": "FAILED"})["text"]
        our_letter = sqa.parse_answer(our_text)
        # The second model: agrees with ours, is right, is wrong, or says nothing parseable.
        letter = [right, wrong, None, right][i % 4]
        text = f"Other model on pid {pid}: " + (f"The answer is {letter}." if letter else "I am not sure.")
        other_lines.append({"question_id": pid, "prompt": "Question text", "text": text, "answer_id": f"o{i}",
                            "model_id": "other", "metadata": {}})
        other_letter = sqa.parse_answer(text)
        pred = {"prompt": ours.get(pid, {"prompt": "Unknown"})["prompt"], "text": our_text}
        if our_letter != other_letter:
            golden["disagree"].append(pid)
            # The judge: usually right; sometimes unparseable, out of range or wrong.
            j = len(golden["disagree"]) % 5
            reply = {0: f"Thinking it over.\nThe answer is {right}.", 1: f"The answer is {right}.",
                     2: "Both could be right.", 3: "The answer is E.", 4: f"The answer is {wrong}."}[j]
            rules.append({"match": f"Other model on pid {pid}:", "content": reply})
            jl = sqa.parse_answer(reply)
            golden["judge_letters"][pid] = jl
            if sqa.pred_index(jl, n) >= 0:
                pred = {"prompt": pred["prompt"], "text": reply}
        combined[pid] = pred
    with open(os.path.join(OUT, "other_answers.jsonl"), "w") as f:
        for a in other_lines:
            f.write(json.dumps(a) + "\n")
    with open(os.path.join(OUT, "judge_rules.json"), "w") as f:
        json.dump(rules, f, indent=1)
    for name, preds in [("first", ours), ("second", {a["question_id"]: a for a in other_lines}),
                        ("ensemble", combined)]:
        result, _ = sqa.llava_eval(problems, pids, preds)
        golden[name] = {"acc": "{:.2f}".format(result["acc"]), "correct": result["correct"],
                        "scores": sqa.leaderboard_scores(problems, result["results"])}
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
    print(f"{OUT}: {len(golden['disagree'])} disagreements; accuracy first {golden['first']['acc']}, "
          f"second {golden['second']['acc']}, ensemble {golden['ensemble']['acc']}")


if __name__ == "__main__":
    main()
