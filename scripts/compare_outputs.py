#!/usr/bin/env python3
"""Compares a `llava forward` output with a golden file from
scripts/make_reference.py: logits and loss rel. error < 1e-4, every gradient
||a-b||/||b|| < 1e-3 (the tolerances of tests/test_model_golden.c).

    python scripts/compare_outputs.py OUT.safetensors GOLDEN.safetensors [--stage 1|2]

Exit status 0 when everything is within tolerance, 1 otherwise.
"""
import argparse
import sys

from safetensors.torch import load_file


def rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("golden")
    ap.add_argument("--stage", type=int, default=2, help="1: only projector gradients are expected")
    args = ap.parse_args()
    out, gold = load_file(args.out), load_file(args.golden)
    bad = 0
    for key in sorted(gold):
        if key in ("num_tokens", "rope_inv_freq"):  # not outputs of `llava forward`
            continue
        is_grad = key.startswith("grad.")
        if args.stage == 1 and is_grad and "projector" not in key:
            if key in out:
                print(f"UNEXPECTED {key}: stage 1 must not produce it")
                bad += 1
            continue
        if key not in out:
            print(f"MISSING {key}")
            bad += 1
            continue
        tol = 1e-3 if is_grad else 1e-4
        e = rel(out[key], gold[key])
        flag = "ok " if e < tol else "BAD"
        bad += e >= tol
        print(f"{flag} {e:.2e} (tol {tol:.0e}) {key}")
    extra = [k for k in out if k not in gold and k != "num_tokens"]
    for k in extra:
        print(f"EXTRA {k}")
    print(f"{'PASS' if bad == 0 and not extra else 'FAIL'}: {len(gold)} golden tensors compared")
    return 0 if bad == 0 and not extra else 1


if __name__ == "__main__":
    sys.exit(main())
