#!/usr/bin/env python3
"""Draws the curves of a run's metrics.jsonl (written by `llava train`) to a PNG:
loss, learning rate, gradient norm and throughput against the step.

    python scripts/plot_metrics.py runs/NAME/metrics.jsonl [--out runs/NAME/metrics.png]

Needs matplotlib. A resumed run repeats the steps after its checkpoint; the
last record of each step wins.
"""
import argparse
import json
import os


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics")
    ap.add_argument("--out", help="PNG path (default: beside the metrics file)")
    args = ap.parse_args()
    by_step = {}
    with open(args.metrics) as f:
        for line in f:
            line = line.strip()
            if line:
                rec = json.loads(line)
                by_step[rec["step"]] = rec
    steps = sorted(by_step)
    if not steps:
        raise SystemExit(f"{args.metrics}: no records")
    recs = [by_step[s] for s in steps]

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    panels = [("loss", "loss"), ("lr", "learning rate"), ("grad_norm", "gradient norm"),
              ("tokens_per_s", "tokens / s")]
    for ax, (key, title) in zip(axes.flat, panels):
        xs = [s for s, r in zip(steps, recs) if r.get(key) is not None and r.get("skipped", 0) == 0]
        ys = [r[key] for r in recs if r.get(key) is not None and r.get("skipped", 0) == 0]
        ax.plot(xs, ys, lw=1.2)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    skipped = [s for s, r in zip(steps, recs) if r.get("skipped")]
    for s in skipped:
        axes[0][0].axvline(s, color="red", alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("step")
    fig.suptitle(os.path.dirname(os.path.abspath(args.metrics)))
    fig.tight_layout()
    out = args.out or os.path.join(os.path.dirname(args.metrics), "metrics.png")
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main()
