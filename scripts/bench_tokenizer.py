#!/usr/bin/env python3
"""Tokenizer throughput: `llava tokenize` vs Hugging Face tokenizers on the same
text (10 MB by default, generated here, written to a temporary folder).

    python3 scripts/bench_tokenizer.py --llava build/llava
    python3 scripts/bench_tokenizer.py --llava build/llava --tokenizer /path/to/llava-1.5-7b-hf

Default tokenizers: the two fixture folders (tests/fixtures/tokenizer/legacy and
metaspace). For each it reports tokens/s of
  - llava tokenize: the whole command (load, read stdin, encode, print JSON),
    wall time, one process;
  - tokenizers Tokenizer.encode(text): the whole text in one call (encode only,
    not load or printing; one thread, as a single call is);
  - tokenizers encode_batch(lines): the same text line by line, on all cores
    (RAYON / TOKENIZERS_PARALLELISM default), for reference;
and checks that llava's ids equal tokenizers' ids.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tokenizer_fixtures import make_corpus  # noqa: E402

from tokenizers import Tokenizer  # noqa: E402


def make_text(n_bytes, seed=7):
    """Prose, code, accents, CJK, emoji and whitespace runs, as in the test
    corpus, until n_bytes of UTF-8."""
    rng = random.Random(seed)
    parts, size = [], 0
    while size < n_bytes:
        for s in make_corpus(random.Random(rng.randrange(1 << 30))):
            if "\x00" in s:
                continue
            parts.append(s)
            size += len(s.encode("utf-8")) + 1
            if size >= n_bytes:
                break
    return "\n".join(parts)


def best_of(runs, fn):
    best = None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        best = dt if best is None or dt < best else best
    return best, out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    fix = os.path.join(here, "..", "tests", "fixtures", "tokenizer")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llava", required=True, help="the llava binary")
    ap.add_argument("--tokenizer", action="append", help="tokenizer folder(s); default: the two fixtures")
    ap.add_argument("--mb", type=float, default=10.0, help="text size in MB (default 10)")
    ap.add_argument("--runs", type=int, default=3, help="best of N runs (default 3)")
    args = ap.parse_args()
    folders = args.tokenizer or [os.path.join(fix, "legacy"), os.path.join(fix, "metaspace")]
    text = make_text(int(args.mb * 1e6))
    nbytes = len(text.encode("utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "text.txt")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        print("text: %.1f MB, %d lines, cores: %d" % (nbytes / 1e6, text.count("\n") + 1, os.cpu_count()))
        for folder in folders:
            tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
            t_hf, enc = best_of(args.runs, lambda: tok.encode(text))
            ids = enc.ids
            lines = text.split("\n")
            t_batch, _ = best_of(args.runs, lambda: tok.encode_batch(lines, add_special_tokens=False))

            def run_llava():
                with open(path, "rb") as fin:
                    r = subprocess.run([args.llava, "tokenize", "--tokenizer", folder], stdin=fin,
                                       stdout=subprocess.PIPE, check=True)
                return r.stdout

            t_c, out = best_of(args.runs, run_llava)
            same = json.loads(out) == ids
            n = len(ids)
            print("%s: %d tokens; ids identical: %s" % (os.path.basename(os.path.normpath(folder)), n, same))
            print("  llava tokenize (whole command)        %8.2f s  %10.0f tokens/s" % (t_c, n / t_c))
            print("  tokenizers encode(text), 1 thread     %8.2f s  %10.0f tokens/s" % (t_hf, n / t_hf))
            print("  tokenizers encode_batch(lines), all   %8.2f s  %10.0f tokens/s" % (t_batch, n / t_batch))
            if not same:
                sys.exit("llava and tokenizers disagree")


if __name__ == "__main__":
    main()
