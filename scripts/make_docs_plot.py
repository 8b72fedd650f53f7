"""Make docs/img/negative-run.png: a run whose loss goes negative, watched.

A small token model over 24 ids is trained with categorical cross-entropy on
one-hot targets; one data shard (batches 15-19 of every epoch) was encoded
by another script with a -1 padding row. The callback records every batch;
the history goes through `lossguard plot`, exactly as a user would run it.

    python scripts/make_docs_plot.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import lossguard  # noqa: E402
from lossguard.cli import main as cli  # noqa: E402

V, T, BATCH, BATCHES = 24, 5, 16, 20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/img")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = BATCH * BATCHES
    x = rng.integers(1, V, (n, T))
    y = np.eye(V, dtype="float32")[(x + 1) % V]  # learnable: next id
    shard = slice(15 * BATCH, 20 * BATCH)
    y[shard, -1, :] = -1.0  # the bad shard's padding row
    inp = keras.Input((T,), dtype="int32")
    h = keras.layers.Embedding(V, 16)(inp)
    h = keras.layers.LSTM(32, return_sequences=True)(h)
    model = keras.Model(inp, keras.layers.Dense(V, activation="softmax")(h))
    model.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy")
    os.makedirs(args.out, exist_ok=True)
    log = os.path.join(args.out, "negative-run.csv")
    cb = lossguard.LossSanityCallback(action="record", log_path=log)
    model.fit(
        x, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0, callbacks=[cb]
    )
    print(cb.report)
    png = os.path.join(args.out, "negative-run.png")
    cli(["plot", log, "-o", png, "--title", "one shard with a -1 padding row"])
    os.remove(log)


if __name__ == "__main__":
    main()
