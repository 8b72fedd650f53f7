"""Epoch time of a GloVe-sized seq2seq with and without LossSanityCallback.

Encoder-decoder LSTM 128, vocab 8000, 20 steps, batch 64, frozen 50-d
embedding, sparse targets. Both models train in one process, alternating
fits of a few epochs each; the first (tracing) epoch of every fit is dropped.
Prints the median steady-state epoch times and their ratio.

    python benchmarks/bench_overhead.py [--rounds 3] [--epochs 3] [--batches 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import lossguard  # noqa: E402

VOCAB, STEPS, BATCH, DIM, UNITS = 8000, 20, 64, 50, 128


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
    def __init__(self, sink):
        super().__init__()
        self.sink = sink

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if epoch > 0:  # epoch 0 traces the train function
            self.sink.append(time.perf_counter() - self.start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, default=30)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    n = BATCH * args.batches
    x = [rng.integers(1, VOCAB, (n, STEPS)), rng.integers(1, VOCAB, (n, STEPS))]
    y = rng.integers(1, VOCAB, (n, STEPS))
    plain, watched = build(0), build(0)
    callback = lossguard.LossSanityCallback(action="record")
    times = {"keras": [], "lossguard": []}
    for _ in range(args.rounds):
        for name, model, cbs in (
            ("keras", plain, []),
            ("lossguard", watched, [callback]),
        ):
            timer = EpochTimer(times[name])
            model.fit(
                x,
                y,
                batch_size=BATCH,
                epochs=args.epochs,
                verbose=0,
                callbacks=[*cbs, timer],
            )
    base = statistics.median(times["keras"][1:])
    ours = statistics.median(times["lossguard"][1:])
    print(
        f"seq2seq vocab {VOCAB}, {STEPS} steps, batch {BATCH}, LSTM {UNITS}, "
        f"{args.batches} batches/epoch, median of {len(times['keras'])} epochs"
    )
    print(f"keras      {base:7.3f} s/epoch")
    print(f"lossguard  {ours:7.3f} s/epoch   ratio {ours / base:.3f}")
    print(f"findings on the healthy run: {sorted(callback.report.codes) or 'none'}")


if __name__ == "__main__":
    main()
