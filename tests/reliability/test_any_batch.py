"""No batch shape, dtype or label encoding can make the statistics fail.

A matrix of label encodings (one-hot, sparse ids with and without a trailing
1, float ids, ragged sequences padded per batch) and ranks, fed as arrays or
through `tf.data` pipelines with an unknown batch size, under the callback
and `diagnose`, with Keras' losses and with a custom loss lossguard cannot
place (which used to reshape sparse ids to one-hot rows and kill `fit`).
"""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import lossguard

K, T, N = 6, 5, 45


def any_labels_loss(y_true, y_pred):
    """A custom loss that takes labels of any layout (lossguard cannot place
    it): mean prediction, plus 0 times the labels."""
    return ops.mean(y_pred, axis=-1) + 0.0 * ops.mean(ops.cast(y_true, y_pred.dtype))


def model_for(rank):
    inp = keras.Input((T,) if rank == 3 else (4,), dtype="int32" if rank == 3 else None)
    if rank == 3:
        h = keras.layers.Embedding(K + 3, 8, mask_zero=True)(inp)
        h = keras.layers.LSTM(8, return_sequences=True)(h)
    else:
        h = keras.layers.Dense(8, activation="relu")(inp)
    return keras.Model(inp, keras.layers.Dense(K, activation="softmax")(h))


def labels(encoding, rank, rng):
    shape = (N, T) if rank == 3 else (N,)
    ids = rng.integers(1, K, shape)
    if encoding == "onehot":
        return np.eye(K, dtype="float32")[ids]
    if encoding == "sparse":
        return ids
    if encoding == "sparse_trailing_1":
        return ids[..., None]
    return ids.astype("float32")  # float ids


ENCODINGS = ["onehot", "sparse", "sparse_trailing_1", "float_ids"]
LOSSES = {
    "onehot": "categorical_crossentropy",
    "sparse": "sparse_categorical_crossentropy",
    "sparse_trailing_1": "sparse_categorical_crossentropy",
    "float_ids": "sparse_categorical_crossentropy",
}
#: Arrays, and a tf.data pipeline of unknown batch size and length (it ends
#: each epoch on OutOfRangeError).
PIPELINES = ["arrays", "tf.data"]


def data(x, y, pipeline):
    if pipeline == "arrays":
        return (x, y), {"batch_size": 16}
    ds = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: True)
    return (ds.batch(16),), {}


def run(model, args, kwargs):
    cb = lossguard.LossSanityCallback(action="record")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(*args, epochs=2, verbose=0, callbacks=[cb], **kwargs)
    return cb, history.history["loss"]


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("rank", [2, 3])
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("loss", ["keras", "custom"])
def test_statistics_never_fail_on_any_label_encoding(loss, encoding, rank, pipeline):
    rng = np.random.default_rng(0)
    x = rng.integers(1, K + 3, (N, T)) if rank == 3 else rng.normal(size=(N, 4))
    y = labels(encoding, rank, rng)
    model = model_for(rank)
    model.compile("adam", LOSSES[encoding] if loss == "keras" else any_labels_loss)
    args, kwargs = data(x, y, pipeline)
    cb, losses = run(model, args, kwargs)
    train = cb.history[cb.history.phase == "train"]
    assert len(train) == 2 * 3  # every batch of both epochs, the last partial
    assert train.groupby("epoch").size().tolist() == [3, 3]
    assert np.isfinite(losses).all()
    assert [f for f in cb.report if f.severity == "error"] == []
    if loss == "keras" and encoding != "onehot":
        assert train.label_max.notna().all()  # the ids were measured
    report = lossguard.diagnose(model, *args)
    assert [f for f in report if f.severity == "error"] == []


def test_ragged_sequences_padded_per_batch():
    """padded_batch: every batch has its own length; labels padded with 0."""
    rng = np.random.default_rng(1)
    lengths = rng.integers(2, 9, 40)
    rows = [
        (rng.integers(1, K, n).tolist(), rng.integers(1, K, n).tolist())
        for n in lengths
    ]
    ds = tf.data.Dataset.from_generator(
        lambda: iter(rows),
        output_signature=(
            tf.TensorSpec((None,), tf.int32),
            tf.TensorSpec((None,), tf.int32),
        ),
    ).padded_batch(16)
    inp = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(K, 8, mask_zero=True)(inp)
    out = keras.layers.Dense(K, activation="softmax")(h)
    for loss in ("sparse_categorical_crossentropy", any_labels_loss):
        model = keras.Model(inp, out)
        model.compile("adam", loss)
        cb, losses = run(model, (ds,), {})
        assert len(cb.history[cb.history.phase == "train"]) == 2 * 3
        assert np.isfinite(losses).all()
        lossguard.diagnose(model, ds)


def test_labels_whose_rank_differs_from_the_output():
    """Per-sample labels (N,) for a sequence output: Keras' own loss fails,
    a custom one takes them, and lossguard must not fail either."""
    rng = np.random.default_rng(2)
    x = rng.integers(1, K + 3, (N, T))
    model = model_for(3)
    model.compile("adam", any_labels_loss)
    ds = tf.data.Dataset.from_tensor_slices((x, rng.integers(0, K, (N,)))).batch(16)
    cb, losses = run(model, (ds,), {})
    assert len(cb.history) == 2 * 3 and np.isfinite(losses).all()
