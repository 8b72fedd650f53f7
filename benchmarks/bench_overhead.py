"""Epoch time with and without LossSanityCallback, on a fast and a slow step.

Two models, each with validation data:
- `classifier`: 20 -> 64 -> 10, batch 32, 2,000 steps an epoch: about 1 ms a
  step on a CPU, where any fixed per-batch cost of lossguard would show;
- `seq2seq`: encoder-decoder LSTM 128, vocab 8000, 20 steps, batch 64,
  frozen 50-d embedding, sparse targets: about 120 ms a step.
The variants of a model train in one process, on one model instance,
alternating fits of a few epochs each; the first (tracing) epoch of every
fit is dropped. One instance, because on this CPU two models built alike
differ by up to 4% a step (the placement of their weights and optimizer
slots in memory): measured on separate instances, that difference, not
lossguard's, decided single runs. Plain Keras' fits get back the train and
test functions they traced (the callback removes its own at the end of its
fit), so nothing retraces. With
`--epochs 1` each variant is fitted once untimed (it traces) and then the
variants alternate one-epoch fits, every one timed: the finest alternation,
which the machine's drift between minutes disturbs least.
Prints the median steady-state epoch and train-step times and their ratios
to plain Keras, for the default callback, for `internals=True` (gradient
norms and ReLU layers read) and for `predictions="all"`, and
the median of the paired ratios (each epoch against plain Keras' epoch of
the same round and number, run next to it: the machine's drift cancels).
The variants run in turn, every other round in reverse order.
Both variants train with shuffle=False and with Python's garbage collector
paused inside each timed fit: on a 2-core machine Keras' per-epoch reshuffle
and a full collection of TensorFlow's objects each stall an epoch by 1-2.5 s
at random, which would swamp the difference being measured. Epoch times
are printed as the median and the best (least disturbed) epoch; the
train-step column (median) is immune to those stalls.

Every epoch ends with `--val-batches` validation batches (0: none), which
the callback watches too; epoch times include them.

    python benchmarks/bench_overhead.py [--model classifier|seq2seq|both]
        [--rounds 3] [--epochs 3] [--batches 30] [--val-batches 8]
        [--backend tensorflow|jax|torch|all]

`--backend` picks Keras' backend (it is fixed at import, so `all` runs this
script once per backend, one after the other, each comparing lossguard with
plain Keras on that backend in one process). On JAX and PyTorch Keras runs
the batch hooks asynchronously when every callback allows it, so there the
timer keeps to the epoch hooks (the train-step column is left out: a step's
wall time is only its dispatch).

(`--batches`/`--val-batches` size the seq2seq; the classifier runs 2,000 and
500.) Reported per model: the median and best steady-state epoch, the
median train step, their ratios to plain Keras, and lossguard's cost per
step in microseconds (epoch difference / steps). On TensorFlow also the
median call of the model's train function (`fn us`): the step alone, which
carries lossguard's in-graph statistics, without any callback's hooks.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
BACKENDS = ("tensorflow", "jax", "torch")


def _backend_in(argv):
    for i, arg in enumerate(argv):
        if arg == "--backend" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--backend="):
            return arg.split("=", 1)[1]
    return None


if _backend_in(sys.argv[1:]) in BACKENDS:  # before Keras is imported
    os.environ["KERAS_BACKEND"] = _backend_in(sys.argv[1:])

import keras  # noqa: E402
import numpy as np  # noqa: E402

import lossguard  # noqa: E402

VOCAB, STEPS, BATCH, DIM, UNITS = 8000, 20, 64, 50, 128


def build_classifier(seed):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((20,))
    h = keras.layers.Dense(64, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def build(seed):
    keras.utils.set_random_seed(seed)
    enc_in = keras.Input((STEPS,), dtype="int32")
    dec_in = keras.Input((STEPS,), dtype="int32")
    embed = keras.layers.Embedding(VOCAB, DIM, mask_zero=True, trainable=False)
    _, h, c = keras.layers.LSTM(UNITS, return_state=True)(embed(enc_in))
    seq = keras.layers.LSTM(UNITS, return_sequences=True)(
        embed(dec_in), initial_state=[h, c]
    )
    out = keras.layers.Dense(VOCAB, activation="softmax")(seq)
    model = keras.Model([enc_in, dec_in], out)
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


class EpochTimer(keras.callbacks.Callback):
    """Epoch wall times, steady state only; leaves Keras' asynchronous
    dispatch of the batch hooks on (JAX, PyTorch)."""

    async_safe = True

    def __init__(self, epochs, steps, first=1):
        super().__init__()
        self.epochs, self.steps = epochs, steps
        #: The first epoch a fit times (epoch 0 of a model's first fit traces).
        self.first = first

    def on_epoch_end(self, epoch, logs=None):
        if epoch >= self.first:
            self.epochs.append(time.perf_counter() - self.epoch_start)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.epoch_start = time.perf_counter()


class Timer(EpochTimer):
    """Epoch and train-step wall times, steady state only, and each call of
    the model's train function (what lossguard adds inside the step, apart
    from its batch hooks)."""

    async_safe = False

    def __init__(self, epochs, steps, calls=None, first=1):
        super().__init__(epochs, steps, first)
        self.calls = calls if calls is not None else []

    def on_train_begin(self, logs=None):
        # After every other callback's (lossguard installs its step here).
        self.inner = inner = self.model.train_function
        calls = self.calls

        def timed(*args):
            start = time.perf_counter()
            out = inner(*args)
            if self.epoch >= self.first:
                calls.append(time.perf_counter() - start)
            return out

        self.timed = timed
        self.model.train_function = timed

    def on_train_end(self, logs=None):
        if self.model.train_function is self.timed:
            self.model.train_function = self.inner

    def on_train_batch_begin(self, batch, logs=None):
        self.batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch >= self.first:
            self.steps.append(time.perf_counter() - self.batch_start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=("classifier", "seq2seq", "both"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--val-batches", type=int, default=8)
    parser.add_argument("--backend", choices=(*BACKENDS, "all"))
    parser.add_argument("--instances", type=int, default=3)
    args = parser.parse_args(argv)
    if args.backend == "all":
        given = list(argv if argv is not None else sys.argv[1:])
        rest, skip = [], False
        for arg in given:  # every argument but --backend all
            if skip or arg.startswith("--backend"):
                skip = arg == "--backend"
                continue
            rest.append(arg)
        for backend in BACKENDS:
            subprocess.run(
                [sys.executable, __file__, *rest, "--backend", backend], check=False
            )
        return
    print(f"backend: {keras.backend.backend()}")
    which = args.model or "both"
    if which in ("classifier", "both"):
        rng = np.random.default_rng(0)

        def data(n):
            return rng.normal(size=(n, 20)).astype("float32"), rng.integers(0, 10, n)

        runs = {
            "keras": None,
            "lossguard": lambda: lossguard.LossSanityCallback(action="record"),
            "lossguard internals=True": lambda: lossguard.LossSanityCallback(
                action="record", internals=True
            ),
        }
        measure(
            "classifier 20-64-10, batch 32, 2000 steps/epoch + 500 validation",
            build_classifier(0),
            runs,
            data(32 * 2000),
            data(32 * 500),
            32,
            args,
        )
    if which in ("seq2seq", "both"):
        rng = np.random.default_rng(0)

        def data(batches):
            n = BATCH * batches
            x = [
                rng.integers(1, VOCAB, (n, STEPS)),
                rng.integers(1, VOCAB, (n, STEPS)),
            ]
            return x, rng.integers(1, VOCAB, (n, STEPS))

        runs = {
            "keras": None,
            "lossguard": lambda: lossguard.LossSanityCallback(action="record"),
            "lossguard predictions='all'": lambda: lossguard.LossSanityCallback(
                action="record", predictions="all"
            ),
            "lossguard internals=True": lambda: lossguard.LossSanityCallback(
                action="record", internals=True
            ),
        }
        measure(
            f"seq2seq vocab {VOCAB}, {STEPS} steps, batch {BATCH}, LSTM {UNITS}, "
            f"{args.batches} batches/epoch + {args.val_batches} validation",
            build(0),
            runs,
            data(args.batches),
            data(args.val_batches) if args.val_batches else None,
            BATCH,
            args,
        )


class Instance:
    """One variant's own traced step functions: plain Keras' (kept here,
    given back before each of its fits) or a callback's (it keeps them)."""

    def __init__(self, name, make_callback):
        self.name = name
        self.callback = make_callback() if make_callback else None
        self.functions = (None, None)  # None: Keras traces them at the fit

    def fit(self, model, x, y, callbacks, **kwargs):
        if self.callback is None:
            model.train_function, model.test_function = self.functions
        else:  # the callback installs its own (traced at its first fit)
            callbacks = [self.callback, *callbacks]
        model.fit(x, y, callbacks=callbacks, **kwargs)
        if self.callback is None:
            self.functions = (model.train_function, model.test_function)


def measure(title, model, runs, train, validation, batch_size, args):
    """Time `runs` (name -> a callback factory, None for plain Keras) on
    `model`, `args.instances` traced instances of each, alternating."""
    x, y = train
    epochs = {name: [] for name in runs}
    steps = {name: [] for name in runs}
    calls = {name: [] for name in runs}
    instances = [
        [Instance(name, make) for name, make in runs.items()]
        for _ in range(args.instances)
    ]
    first = 1
    fit = {
        "batch_size": batch_size,
        "verbose": 0,
        "validation_data": validation,
    }
    if args.epochs == 1:  # one-epoch fits, alternating: trace once, untimed
        first = 0
        for group in instances:
            for instance in group:
                instance.fit(model, x, y, [], epochs=1, **fit)
    for round_ in range(args.rounds):
        for group in instances:
            # Every other round in reverse: a fit's place in the round (the
            # machine warmer, or slower, after another fit) evens out.
            for instance in group[:: -1 if round_ % 2 else 1]:
                name = instance.name
                if keras.backend.backend() == "tensorflow":
                    timer = Timer(epochs[name], steps[name], calls[name], first)
                else:
                    timer = EpochTimer(epochs[name], steps[name], first)
                # A full collection of TensorFlow's object graph takes ~1 s
                # and lands in random epochs of either variant: collect
                # first, then keep it out of the timed fit.
                gc.collect()
                gc.disable()
                instance.fit(
                    model, x, y, [timer], epochs=args.epochs, shuffle=False, **fit
                )
                gc.enable()
    n_steps = -(-len(y) // batch_size)
    base_epoch = statistics.median(epochs["keras"])
    base_step = statistics.median(steps["keras"]) if steps["keras"] else float("nan")
    base_best = min(epochs["keras"])
    base_call = statistics.median(calls["keras"]) if calls["keras"] else float("nan")
    print(
        f"{title}; medians of {len(epochs['keras'])} steady-state epochs and "
        f"{len(steps['keras'])} steps per variant, {args.instances} traced "
        "instances of each"
    )
    print(
        f"{'':28s} {'median':>8s} {'ratio':>6s} {'best':>8s} {'ratio':>6s} "
        f"{'paired':>6s} {'ms/step':>8s} {'ratio':>6s} {'us/step':>8s} "
        f"{'fn us':>7s} {'ratio':>6s}"
    )
    for name in runs:
        e = statistics.median(epochs[name])
        s = statistics.median(steps[name]) if steps[name] else float("nan")
        best = min(epochs[name])
        call = statistics.median(calls[name]) if calls[name] else float("nan")
        cost = 1e6 * (e - base_epoch) / n_steps
        # Each epoch against plain Keras' epoch of the same round, instance
        # and number (they ran one after the other): robust to the drift.
        paired = statistics.median(
            a / b for a, b in zip(epochs[name], epochs["keras"], strict=True)
        )
        print(
            f"{name:28s} {e:8.3f} {e / base_epoch:6.3f} {best:8.3f} "
            f"{best / base_best:6.3f} {paired:6.3f} {1000 * s:8.3f} "
            f"{s / base_step:6.3f} {cost:8.1f} {1e6 * call:7.1f} "
            f"{call / base_call:6.3f}"
        )
        if runs[name] is not None:
            found = {
                code
                for group in instances
                for i in group
                if i.name == name
                for code in i.callback.report.codes
            }
            print(f"{'':28s} findings: {sorted(found) or 'none'}")


if __name__ == "__main__":
    main()
