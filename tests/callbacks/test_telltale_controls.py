"""Healthy runs that look like a stuck or saturated loss, and are not.

Issue #25's controls for LOSS_AT_UNIFORM and SATURATED_PREDICTIONS: each
trains for more than the 200 steps LOSS_AT_UNIFORM reads, with the callback,
and must end with no error or warning. A learnable task (the class is the
argmax of a fixed linear map of the features), K = 10 classes, so a model at
its start loses about ln 10 = 2.303.
"""

import keras
import numpy as np
import pytest

import lossguard
from lossguard.testing import tiny_seq2seq
from tests.helpers import loud, watched_fit

pytestmark = pytest.mark.backends
K, FEATURES, N, BATCH = 10, 20, 2400, 8  # 300 steps an epoch


def task(imbalanced=False, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, FEATURES)).astype("float32")
    scores = x @ rng.normal(size=(FEATURES, K))
    if imbalanced:  # class 0 on about 80% of the rows
        scores[:, 0] += 4.0
    return x, scores.argmax(1)


def classifier(dropout=0.0, head_init="glorot_uniform"):
    layers = [keras.Input((FEATURES,)), keras.layers.Dense(32, activation="relu")]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(K, "softmax", kernel_initializer=head_init))
    return keras.Sequential(layers)


def warm_up(peak=1e-3, steps=1000):
    """A linear warm-up from 0, longer than the run."""
    return keras.optimizers.schedules.PolynomialDecay(
        0.0, steps, peak, power=1.0
    )  # from 0 up to `peak` over `steps`


CONTROLS = {
    "a loss at ln K that falls in the first epoch": dict(),
    "a high but stable Adam rate": dict(optimizer=lambda: keras.optimizers.Adam(0.01)),
    "gradient clipping": dict(optimizer=lambda: keras.optimizers.Adam(clipnorm=0.1)),
    "dropout 0.5": dict(dropout=0.5),
    "label smoothing": dict(
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.2), onehot=True
    ),
    "an imbalanced classifier": dict(imbalanced=True),
    "a warm-up": dict(optimizer="warm-up"),
    "a zero-initialised head under a warm-up": dict(
        optimizer="warm-up", head_init="zeros"
    ),
    "a zero-initialised head under a 10,000-step warm-up": dict(
        optimizer="long warm-up", head_init="zeros"
    ),
}


@pytest.mark.parametrize(
    "predictions, internals", [("auto", False), ("all", True)], ids=["default", "all"]
)
@pytest.mark.parametrize("control", list(CONTROLS))
def test_a_healthy_control_is_quiet(control, predictions, internals):
    setup = dict(CONTROLS[control])
    keras.utils.set_random_seed(0)
    x, ids = task(imbalanced=setup.pop("imbalanced", False))
    y = np.eye(K, dtype="float32")[ids] if setup.pop("onehot", False) else ids
    model = classifier(
        setup.pop("dropout", 0.0), setup.pop("head_init", "glorot_uniform")
    )
    optimizer = setup.pop("optimizer", "adam")
    if optimizer == "warm-up":
        optimizer = keras.optimizers.Adam(warm_up())
    if optimizer == "long warm-up":
        optimizer = keras.optimizers.Adam(warm_up(steps=10_000))
    if callable(optimizer):  # a fresh one for each run
        optimizer = optimizer()
    loss = setup.pop("loss", "sparse_categorical_crossentropy")
    model.compile(optimizer, loss)
    options = {"predictions": predictions, "internals": internals}
    cb = watched_fit(model, x, y, batch_size=BATCH, options=options)
    assert len(cb.history[cb.history["phase"] == "train"]) == N // BATCH
    assert loud(cb.report) == [], cb.report


def test_a_frozen_pretrained_embedding_seq2seq_is_quiet_over_256_steps():
    model, x, y = tiny_seq2seq(n=256)
    cb = lossguard.LossSanityCallback(action="record", internals=True)
    model.fit(x, y, batch_size=1, verbose=0, callbacks=[cb])
    assert loud(cb.report) == [], cb.report
