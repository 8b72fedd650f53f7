"""How long probing an unknown loss takes, beside one Keras call of that loss.

    python benchmarks/bench_probe.py --reps 5

For each loss users write (a clipped wrapper, a hand-written cross-entropy, a
masked mean, a `Loss` subclass, a partial, a label-smoothed lambda, cosine,
a loss that raises), prints what probing found and the median time of
`lossguard.diagnosis.probe.identify` after a warm-up call, next to one plain
call of the loss on a batch of the same shape (the unit of cost it is made
of). The first `identify` of a process also pays TensorFlow's eager start:
it is printed separately.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import alternate  # noqa: E402
from keras import ops  # noqa: E402

from lossguard.diagnosis.probe import identify  # noqa: E402


def clipped_loss(y_true, y_pred):
    return tf.clip_by_value(
        tf.keras.losses.categorical_crossentropy(y_true, y_pred), 0, 10
    )


def hand_written(y, p):
    return -ops.sum(y * ops.log(p + 1e-7), axis=-1)


def masked_loss(y_true, y_pred):
    loss_fn = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="none"
    )
    loss = loss_fn(y_true, y_pred)
    mask = ops.cast(y_true != 0, loss.dtype)
    return ops.sum(loss * mask) / ops.sum(mask)


class NonPaddingTokenLoss(keras.losses.Loss):
    def call(self, y_true, y_pred):
        loss_fn = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction=None
        )
        mask = ops.cast(y_true > 0, "float32")
        return ops.sum(loss_fn(y_true, y_pred) * mask) / ops.sum(mask)


def raises(y, p):
    raise RuntimeError("a loss that fails on the probes")


CASES = {
    "clipped wrapper": (clipped_loss, (None, 20, 50)),
    "hand-written CE": (hand_written, (None, 10)),
    "NMT masked mean": (masked_loss, (None, 20, 300)),
    "NER Loss subclass": (NonPaddingTokenLoss(), (None, 20, 10)),
    "functools.partial": (
        functools.partial(keras.losses.categorical_crossentropy, label_smoothing=0.0),
        (None, 10),
    ),
    "label-smoothed lambda": (
        lambda y, p: keras.losses.categorical_crossentropy(y, p, label_smoothing=0.1),
        (None, 10),
    ),
    "cosine (negative)": (
        lambda y, p: -ops.sum(ops.normalize(y) * ops.normalize(p), axis=-1),
        (None, 10),
    ),
    "raises": (raises, (None, 10)),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    start = time.perf_counter()
    identify(hand_written, (None, 10))
    print(
        f"first identify of the process: {1e3 * (time.perf_counter() - start):.0f} ms"
    )
    print(f"{'loss':24s} {'identify':>10s} {'one call':>10s}  found")
    for name, (loss, shape) in CASES.items():
        batch = (32, *(d for d in shape[1:]))
        y = np.eye(batch[-1], dtype="float32")[np.zeros(batch[:-1], int)]
        p = np.full(batch, 1.0 / batch[-1], "float32")
        if "masked" in name or "NER" in name:
            y = np.ones(batch[:-1], "int32")

        def call(loss=loss, y=y, p=p):
            try:
                loss(y, p)
            except RuntimeError:
                pass

        times = alternate(
            {"identify": functools.partial(identify, loss, shape), "call": call},
            args.reps,
            1,
        )
        found = identify(loss, shape)
        print(
            f"{name:24s} {1e3 * times['identify']:8.1f}ms {1e3 * times['call']:8.2f}ms"
            f"  {found.kind}: {found.how}"
        )


if __name__ == "__main__":
    main()
