"""Train-step time of lossguard's losses against Keras' own.

A seq2seq output layer: hidden states (64, 30, 128) -> Dense(20000) -> loss,
forward and backward (gradient of the projection), in one process, alternating
the variants every round. Prints the median step time and lossguard / Keras.

    python benchmarks/bench_losses.py [--reps 10]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import alternate  # noqa: E402

from lossguard import losses as L  # noqa: E402

B, T, H, V = 64, 30, 128, 20000


def make_step(loss_fn, head, labels, w, h):
    @tf.function
    def step():
        with tf.GradientTape() as tape:
            y_pred = head(h @ w)
            loss = loss_fn(labels, y_pred)
        return tape.gradient(loss, w)

    return lambda: step().numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    h = tf.constant(rng.normal(size=(B, T, H)).astype("float32"))
    w = tf.Variable(rng.normal(size=(H, V)).astype("float32") * 0.05)
    ids = tf.constant(rng.integers(0, V, (B, T)), dtype=tf.int32)
    onehot = tf.one_hot(ids, V)
    softmax = keras.activations.softmax  # carries its logits, as a Keras layer does

    def probs(z):  # probabilities that do not carry logits: the clamp path
        return tf.nn.softmax(z)

    def logits(z):
        return z

    cases = {
        "dense softmax-output": (onehot, softmax, {}),
        "dense probabilities": (onehot, probs, {}),
        "dense from_logits": (onehot, logits, {"from_logits": True}),
        "sparse softmax-output": (ids, softmax, {}),
        "sparse probabilities": (ids, probs, {}),
        "sparse from_logits": (ids, logits, {"from_logits": True}),
    }
    ours = {
        "dense": L.StableCategoricalCrossentropy,
        "sparse": L.StableSparseCategoricalCrossentropy,
    }
    theirs = {
        "dense": keras.losses.CategoricalCrossentropy,
        "sparse": keras.losses.SparseCategoricalCrossentropy,
    }
    extra = {
        "dense": [
            ("clipped", L.ClippedCategoricalCrossentropy),
            ("bounded", L.BoundedCategoricalCrossentropy),
        ],
        "sparse": [
            ("clipped", L.ClippedSparseCategoricalCrossentropy),
            ("bounded", L.BoundedSparseCategoricalCrossentropy),
        ],
    }
    print(f"train step on a ({B}, {T}, {V}) output, median of {args.reps} rounds")
    print(f"{'case':28s} {'keras ms':>9s} {'loss':>8s} {'ms':>9s} {'ratio':>6s}")
    for case, (labels, head, kw) in cases.items():
        kind = case.split()[0]
        variants = {
            "keras": make_step(theirs[kind](**kw), head, labels, w, h),
            "stable": make_step(ours[kind](**kw), head, labels, w, h),
        }
        if "softmax" in case:
            for name, cls in extra[kind]:
                variants[name] = make_step(cls(**kw), head, labels, w, h)
        medians = alternate(variants, args.reps)
        base = medians.pop("keras")
        for name, t in medians.items():
            print(
                f"{case:28s} {base * 1e3:9.1f} {name:>8s} {t * 1e3:9.1f} "
                f"{t / base:6.3f}"
            )


if __name__ == "__main__":
    main()
