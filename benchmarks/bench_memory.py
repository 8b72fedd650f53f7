"""Memory of LossSanityCallback's history, against plain Keras, at any length.

    python benchmarks/bench_memory.py [--steps 200000]

1. Bytes per history row: a tiny single-output model is fitted for a few
   hundred steps, then its history store grows to `--steps` rows from those
   measured blocks (what `fit` would append), and tracemalloc measures it.
2. Peak memory of a real `--steps`-step fit (tiny model, batch 1 of 2
   features), with and without the callback, each in a fresh process (peak
   resident set, `VmHWM`), and the callback's history size at the end.
3. `lossguard plot` of a log of `--plot-rows` rows (default 1,000,000),
   timed from reading the CSV to writing the PNG.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

FIT = r"""
import os, sys, numpy as np
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, lossguard
steps, watch = int(sys.argv[1]), sys.argv[2] == "1"
inp = keras.Input((2,))
model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(inp))
model.compile("sgd", "sparse_categorical_crossentropy")
x = np.random.default_rng(0).normal(size=(steps, 2)).astype("float32")
y = np.random.default_rng(1).integers(0, 3, steps)
cb = [lossguard.LossSanityCallback(action="record")] if watch else []
model.fit(x, y, batch_size=1, epochs=1, verbose=0, callbacks=cb)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
rows = len(cb[0].history) if watch else 0
print(int(hwm) * 1024, rows)
"""


def bytes_per_row(rows):
    import keras

    import lossguard

    inp = keras.Input((2,))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(inp))
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(512, 2)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, 512)
    cb = lossguard.LossSanityCallback(action="record")
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[cb])
    store = cb.store
    stats, meta = store.columns()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    grown = type(store)(store.keys)
    for start in range(0, rows, len(stats)):
        m = min(len(stats), rows - start)
        grown.append(
            stats[:m],
            0,
            meta["step"][:m],
            "train",
            meta["running_loss"][:m],
            meta["global_step"][:m],
        )
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / rows, len(store.keys)


def peak_fit(steps, watch):
    out = subprocess.run(
        [sys.executable, "-c", FIT, str(steps), "1" if watch else "0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[0]), int(out[1])


def plot_time(rows):
    import pandas as pd

    from lossguard.plot import plot_history, read_log

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "epoch": np.repeat(np.arange(rows // 10_000 + 1), 10_000)[:rows],
            "step": np.arange(rows) % 10_000,
            "phase": "train",
            "loss": rng.normal(2, 0.1, rows).astype("float32"),
            "running_loss": rng.normal(2, 0.05, rows).astype("float32"),
            "label_min": np.zeros(rows, "float32"),
            "pred_min": rng.uniform(0, 0.1, rows).astype("float32"),
            "pred_max": rng.uniform(0.5, 1, rows).astype("float32"),
            "findings": "",
        }
    )
    bad = rng.choice(rows, 25, replace=False)
    frame.loc[bad, "loss"] = -1.5  # impossible batches must stay visible
    frame.loc[bad, "findings"] = "NEGATIVE_LABELS"
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "history.csv")
        frame.to_csv(path, index=False)
        size = os.path.getsize(path)
        start = time.perf_counter()
        plot_history({"run": read_log(path)}, os.path.join(folder, "loss.png"))
        return time.perf_counter() - start, size


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--plot-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    per_row, width = bytes_per_row(args.steps)
    print(
        f"history: {per_row:.0f} bytes per row ({width} statistics, single "
        f"output), {per_row * args.steps / 1e6:.1f} MB for {args.steps:,} rows"
    )
    keras_peak, _ = peak_fit(args.steps, False)
    guard_peak, rows = peak_fit(args.steps, True)
    print(
        f"{args.steps:,}-step fit, peak RSS: keras {keras_peak / 1e6:.0f} MB, "
        f"with LossSanityCallback {guard_peak / 1e6:.0f} MB "
        f"(+{(guard_peak - keras_peak) / 1e6:.0f} MB, {rows:,} history rows)"
    )
    seconds, size = plot_time(args.plot_rows)
    print(
        f"lossguard plot of a {args.plot_rows:,}-row log ({size / 1e6:.0f} MB "
        f"CSV): {seconds:.2f} s"
    )


if __name__ == "__main__":
    main()
