"""What lossguard adds to a TensorFlow train step, part by part.

The classifier of `bench_overhead.py` (about 1 ms a step on a CPU) is fitted
for one epoch plain and with `LossSanityCallback`, and once more with the
statistics replaced by zeros (the row's write and step count only). Then the
three train functions (the one lossguard traced stays compiled after the fit)
are called in turn, blocks of `--steps` calls each, `--rounds` times, on the
same batches: no callback hooks, no epoch ends, no reads, so what is left is
the step itself. Prints each function's median call and its median paired
difference to plain Keras in microseconds.

With `--in-fit` the same three variants are timed inside `fit` instead, all
on one model, `--instances` traced instances of each: each round fits every
instance for one epoch of `--steps` batches (no validation), every other
round in reverse order, and `bench_overhead.Timer` times each call of the
model's train function (not the batch hooks); the medians are per fit.

    python benchmarks/bench_step_parts.py [--rounds 40] [--steps 300] [--in-fit]
        [--instances 2]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from bench_overhead import Instance, Timer, build_classifier  # noqa: E402
from keras import ops  # noqa: E402

import lossguard  # noqa: E402
from lossguard.callbacks.instrument import Instrumenter  # noqa: E402


def _zeros(self, x, y, y_pred, sample_weight, loss, head, masks=None, extra_terms=None):
    """The row lossguard writes, its statistics replaced by zeros."""
    width = len(self.collector.keys)
    return ops.concatenate([ops.stack(head), ops.zeros((width,), "float32")])


@contextlib.contextmanager
def tracing(statistics_too):
    """Inside: the callback traces its row with the statistics, or with
    zeros in their place (the row's write and step count only)."""
    real = Instrumenter._packed_row
    if not statistics_too:
        Instrumenter._packed_row = _zeros
    try:
        yield
    finally:
        Instrumenter._packed_row = real


def traced(x, y, statistics_too):
    """The train function lossguard traces (fitted once, then kept)."""
    with tracing(statistics_too):
        model = build_classifier(0)
        watch = lossguard.LossSanityCallback(action="record")
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[watch])
    return watch.instrumenter.functions["train"]


def in_fit(x, y, args):
    """Median train-function call (µs) of each fit, per variant: all on one
    model (see bench_overhead.py: two models built alike differ by a few
    percent), `--instances` traced instances of each."""
    model = build_classifier(0)
    instances = []
    for _ in range(args.instances):
        for name, statistics_too in (
            ("keras", None),
            ("lossguard", True),
            ("write only", False),
        ):
            make = None
            if statistics_too is not None:
                make = lambda: lossguard.LossSanityCallback(action="record")  # noqa: E731
            instance = Instance(name, make)
            with tracing(statistics_too is not False):  # traced here
                instance.fit(model, x, y, [], batch_size=32, epochs=1, verbose=0)
            instances.append(instance)
    n = 32 * args.steps
    times = {name: [] for name in ("keras", "lossguard", "write only")}
    for r in range(args.rounds):
        for instance in instances[:: -1 if r % 2 else 1]:
            calls = []
            # Each train-function call, hooks aside; every epoch (traced before).
            timer = Timer([], [], calls, first=0)
            gc.collect()
            gc.disable()
            instance.fit(
                model,
                x[:n],
                y[:n],
                [timer],
                batch_size=32,
                epochs=1,
                verbose=0,
                shuffle=False,
            )
            gc.enable()
            times[instance.name].append(1e6 * statistics.median(calls))
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--in-fit", action="store_true")
    parser.add_argument("--instances", type=int, default=2)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    size = max(200, args.steps)
    x = rng.normal(size=(32 * size, 20)).astype("float32")
    y = rng.integers(0, 10, 32 * size)
    if args.in_fit:
        report(
            in_fit(x, y, args),
            f"inside fit, {args.rounds} one-epoch fits of {args.steps} steps each",
        )
        return
    plain = build_classifier(0)
    plain.fit(x, y, batch_size=32, epochs=1, verbose=0)
    functions = {
        "keras": plain.train_function,
        "lossguard": traced(x, y, statistics_too=True),
        "write only": traced(x, y, statistics_too=False),
    }
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).repeat()
    iterators = {name: iter(batches) for name in functions}
    times = {name: [] for name in functions}
    names = list(functions)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            function, iterator = functions[name], iterators[name]
            start = time.perf_counter()
            for _ in range(args.steps):
                function(iterator)
            times[name].append(1e6 * (time.perf_counter() - start) / args.steps)
    report(times, f"alone, {args.rounds} blocks of {args.steps} calls each")


def report(times, how):
    print(f"train function calls, {how}")
    print(f"{'':12s} {'median us':>10s} {'paired diff us':>15s}")
    for name in times:
        diff = statistics.median(
            a - b for a, b in zip(times[name], times["keras"], strict=True)
        )
        print(f"{name:12s} {statistics.median(times[name]):10.1f} {diff:+15.1f}")


if __name__ == "__main__":
    main()
