"""Peak memory and time of parsing a large GloVe text file with 840B quirks.

Writes a synthetic GloVe text file (default 1,000,000 words x 300 dims,
about 2.5 GB, numbers formatted like the 840B file's) once, with the 840B
quirks sprinkled in: words holding spaces and malformed lines (too few fields,
a value that is not a number). Then loads it with `load_glove` in a fresh
process per run and prints the wall time and the peak resident memory the
load adds to its process (VmHWM after the load minus VmRSS after the imports),
as a multiple of the final float32 matrix.

    python benchmarks/bench_glove_memory.py [--rows 1000000] [--dim 300]
        [--threads 1 2] [--path /tmp/lossguard-bench-1000000x300.txt]
        [--glove another/glove/__init__.py] [--cache]

With `--cache`, it then loads the file with cache=<a temporary folder> twice:
the first parse, which writes the binary copy, and the mapped reload.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

CHILD = r"""
import importlib.util, sys, time
import numpy as np
import pandas as pd

# the lossguard/glove package on its own (numpy + pandas), so that Keras and the rest
# of the package do not sit in the memory being measured.
spec = importlib.util.spec_from_file_location("glove", sys.argv[1])
glove = sys.modules["glove"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(glove)

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

before = status("VmRSS")
start = time.perf_counter()
cache = sys.argv[4] if len(sys.argv) > 4 else False
vectors = glove.load_glove(sys.argv[2], threads=int(sys.argv[3]), cache=cache)
seconds = time.perf_counter() - start
peak = status("VmHWM")
print(seconds, peak - before, vectors.vectors.nbytes, len(vectors),
      getattr(vectors, "skipped", "?"),
      "new york 7" in vectors)
"""

GLOVE_PY = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "lossguard",
    "glove",
    "__init__.py",
)
#: Every this many lines, a word with spaces and a malformed line.
SPACED_EVERY, MALFORMED_EVERY = 99_991, 249_989


def write_text(path, rows, dim, seed=0):
    """`rows` lines of a word and `dim` numbers ("%.5f", as in the 840B
    file), drawn from 2,048 distinct number rows so writing stays fast."""
    rng = np.random.default_rng(seed)
    pool = [
        " ".join(row)
        for row in np.char.mod("%.5f", rng.normal(0, 0.4, (2048, dim)).round(5))
    ]
    bad = 0
    with open(path, "w", encoding="utf-8") as out:
        for start in range(0, rows, 10_000):
            lines = []
            for i in range(start, min(start + 10_000, rows)):
                word = f"w{i}"
                if i % SPACED_EVERY == 7:
                    word = f"new york {i}"  # a word with spaces
                numbers = pool[i % 2048]
                if i % MALFORMED_EVERY == 11:
                    bad += 1
                    if bad % 2:  # a field short
                        numbers = numbers.rsplit(" ", 1)[0]
                    else:  # a value that is not a number
                        numbers = "x" + numbers[numbers.index(" ") :]
                lines.append(f"{word} {numbers}\n")
            out.writelines(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--path")
    parser.add_argument(
        "--glove",
        default=GLOVE_PY,
        help="another lossguard/glove/__init__.py, to compare versions",
    )
    parser.add_argument("--cache", action="store_true", help="time the cache too")
    args = parser.parse_args(argv)
    path = args.path or os.path.join(
        tempfile.gettempdir(), f"lossguard-bench-{args.rows}x{args.dim}.txt"
    )
    if not os.path.exists(path):
        print(f"writing {path} ...", flush=True)
        write_text(path, args.rows, args.dim)
    size = os.path.getsize(path)
    print(f"{path}: {args.rows} lines x {args.dim} dims, {size / 1e9:.2f} GB")
    runs = [(f"threads={threads}", threads, ()) for threads in args.threads]
    if args.cache:
        cache = os.path.join(tempfile.gettempdir(), "lossguard-bench-memory-cache")
        shutil.rmtree(cache, ignore_errors=True)
        runs += [("cache, first parse", 2, (cache,)), ("cache, reload", 2, (cache,))]
    for name, threads, folder in runs:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, args.glove, path, str(threads), *folder],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        seconds, extra, matrix = float(out[0]), int(out[1]), int(out[2])
        print(
            f"{name}: {seconds:6.2f} s, {out[3]} words, {out[4]} skipped "
            f"(a word with spaces found: {out[5]}); "
            f"peak extra memory {extra / 1e9:.2f} GB = {extra / matrix:.2f}x the "
            f"{matrix / 1e9:.2f} GB matrix"
        )
    if args.cache:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
