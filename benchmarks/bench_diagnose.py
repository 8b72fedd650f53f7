"""Time `lossguard.diagnose` on 8 batches of the benchmark seq2seq against one
`model.predict` over the same batches.

Same model as bench_overhead.py (vocab 8000, 20 steps, batch 64, LSTM 128
encoder-decoder, frozen 50-d embedding, sparse targets). Calls alternate; the
first call of each (tracing, warm-up) is dropped; medians are printed.

    python benchmarks/bench_diagnose.py [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from bench_overhead import BATCH, STEPS, VOCAB, build  # noqa: E402

import lossguard  # noqa: E402

BATCHES = 8


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    n = BATCH * BATCHES
    x = [rng.integers(1, VOCAB, (n, STEPS)), rng.integers(1, VOCAB, (n, STEPS))]
    y = rng.integers(1, VOCAB, (n, STEPS))
    model = build(0)
    calls = {
        "model.predict": lambda: model.predict(x, batch_size=BATCH, verbose=0),
        "lossguard.diagnose": lambda: lossguard.diagnose(
            model, x, y, batches=BATCHES, batch_size=BATCH
        ),
    }
    times = {name: [] for name in calls}
    first = {}
    for rep in range(args.reps + 1):
        for name, call in calls.items():
            start = time.perf_counter()
            result = call()
            if rep:  # rep 0 traces and warms up
                times[name].append(time.perf_counter() - start)
            else:
                first[name] = time.perf_counter() - start
    base = statistics.median(times["model.predict"])
    print(
        f"{BATCHES} batches of {BATCH} x {STEPS} tokens, vocab {VOCAB}; "
        f"median of {args.reps} calls"
    )
    for name, values in times.items():
        t = statistics.median(values)
        print(
            f"{name:20s} {t:7.3f} s   ratio {t / base:.2f}   "
            f"(first call, tracing included: {first[name]:.3f} s)"
        )
    print(f"findings on the healthy data: {sorted(result.codes) or 'none'}")


if __name__ == "__main__":
    main()
