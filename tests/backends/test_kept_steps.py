"""PyTorch's eager steps keep their inputs and have their rows computed in
blocks (`lossguard.callbacks.state.DeferredRows`): the history must be the
one the statistics computed inside each step give, whatever the data does.

Marked `backends`: under TensorFlow and JAX the same fits run through the
buffer written in the step, so each test also pins that both designs agree
with the data. The tests that compare the two designs on PyTorch say so
where they cannot run.
"""

import logging

import keras
import numpy as np
import pandas as pd
import pytest

import lossguard
from lossguard.callbacks import state
from tests.backends.aligned import misaligned

BACKEND = keras.backend.backend()
on_torch_only = pytest.mark.skipif(
    BACKEND != "torch", reason="only PyTorch's eager steps are kept"
)


def _model(classes=5, features=6, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((features,))
    hidden = keras.layers.Dense(8, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(classes, activation="softmax")(hidden))
    model.compile("adam", "categorical_crossentropy")
    return model


def _data(n=480, classes=5, features=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = np.eye(classes, dtype="float32")[rng.integers(0, classes, n)]
    return x, y


def _fit(x, y, **fit_kwargs):
    cb = lossguard.LossSanityCallback(action="record")
    model = _model(classes=y.shape[-1], features=x.shape[-1])
    model.fit(x, y, verbose=0, shuffle=False, callbacks=[cb], **fit_kwargs)
    return cb


def _in_the_step(monkeypatch):
    """Make the callback write every row inside the step, as on TF/JAX."""
    monkeypatch.setattr(
        state,
        "rows_for",
        lambda model, capacity, width, compute: state.BufferRows(
            model, capacity, width
        ),
    )


def _same_statistics(kept, written):
    """Every column but Keras' running loss, which the step writes only where
    the hooks lag (kept steps); where the hooks report it, Keras' thread
    pool may run them out of order."""
    columns = [c for c in kept.columns if c != "running_loss"]
    pd.testing.assert_frame_equal(
        kept[columns], written[columns], check_exact=False, rtol=1e-5, atol=1e-6
    )


def _keras_running_loss(history):
    """Keras' loss tracker after each batch: the batch-size weighted mean of
    the losses so far in the epoch (or in the evaluation)."""
    out = []
    for _, rows in history.groupby(["epoch", "phase"], sort=False):
        weights = rows["rows"].to_numpy()
        out.append(
            pd.Series(
                np.cumsum(rows["loss"].to_numpy() * weights) / np.cumsum(weights),
                index=rows.index,
            )
        )
    return pd.concat(out).sort_index()


@pytest.mark.backends
def test_every_row_matches_its_batch_with_validation_and_a_short_last_batch():
    """Rows of train and validation steps, of full and short batches (three
    shapes), each with its own numbers: a negative label in one known batch
    is found there and nowhere else, and Keras' running loss per batch is
    the weighted mean of the batch losses so far."""
    x, y = _data(n=470)  # 470 = 14 batches of 32 + one of 22
    y[5 * 32 + 3] = -y[5 * 32 + 3]  # batch 5
    cb = _fit(x, y, batch_size=32, epochs=2, validation_data=_data(n=100, seed=1))
    history = cb.history
    train = history[history.phase == "train"]
    assert len(train) == 2 * 15 and len(history) == 2 * 15 + 2 * 4
    assert (train.rows.to_numpy() == np.tile([32] * 14 + [22], 2)).all()
    negative = train[train.label_min < 0]
    assert negative.step.tolist() == [5, 5] and negative.epoch.tolist() == [0, 1]
    finding = cb.report.get("NEGATIVE_LABELS")
    assert (finding.epoch, finding.step, finding.phase) == (0, 5, "train")
    np.testing.assert_allclose(
        history.running_loss, _keras_running_loss(history), rtol=1e-5
    )


@pytest.mark.backends
def test_a_generator_that_reuses_its_arrays_is_seen_batch_by_batch():
    """A generator may fill the same arrays for every batch: each row still
    describes its own batch (kept inputs are copies), so the one bad batch
    is found at its step and the others are clean.

    The arrays sit 16 bytes past a 64-byte boundary: TensorFlow's tf.data
    shares a 64-byte-aligned array with the batch it prefetches instead of
    copying it, so there the model itself would train on refilled batches
    (`test_tensorflow_shares_a_generators_aligned_arrays`)."""
    x, y = _data(n=320)
    bx, by = misaligned((32, 6)), misaligned((32, 5))

    def batches():
        for _epoch in range(2):
            for i in range(10):
                bx[:] = x[32 * i : 32 * (i + 1)]
                by[:] = y[32 * i : 32 * (i + 1)]
                if i == 3:
                    by[0] *= 2.0  # a label row summing to 2
                yield bx, by

    cb = lossguard.LossSanityCallback(action="record")
    model = _model()
    model.fit(batches(), epochs=2, steps_per_epoch=10, verbose=0, callbacks=[cb])
    train = cb.history
    off = train[train.label_sum_max > 1.5]
    assert list(zip(off.epoch, off.step, strict=True)) == [(0, 3), (1, 3)]
    finding = cb.report.get("LABEL_SUM_NOT_ONE")
    assert (finding.epoch, finding.step) == (0, 3)


@pytest.mark.backends
def test_batches_of_many_shapes_each_get_their_row():
    """Sequences padded per batch to their own length: more shapes than
    lossguard keeps stacks for. Every batch still has its row, with its own
    time steps and padding share."""
    rng = np.random.default_rng(4)
    vocab, lengths = 12, [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 3, 4]
    keras.utils.set_random_seed(0)
    inp = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(vocab, 4, mask_zero=True)(inp)
    out = keras.layers.Dense(vocab, activation="softmax")(hidden)
    model = keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy")

    def batches():
        for length in lengths:
            ids = rng.integers(1, vocab, (8, length)).astype("int32")
            ids[:, -1] = 0  # one padded position per sequence
            yield ids, ids

    cb = lossguard.LossSanityCallback(action="record")
    model.fit(
        batches(), epochs=1, steps_per_epoch=len(lengths), verbose=0, callbacks=[cb]
    )
    history = cb.history
    assert history.time_steps.tolist() == lengths
    assert history.active_rows.tolist() == [8 * (n - 1) for n in lengths]
    assert np.isfinite(history.loss).all()


@pytest.mark.backends
@on_torch_only
def test_kept_steps_give_the_rows_the_step_writes(monkeypatch):
    """The same fit, with the rows computed in blocks and inside each step:
    the same statistics, row by row, and the same findings."""
    x, y = _data(n=470)
    y[40] = 0.5 * y[40]
    kwargs = {"batch_size": 32, "epochs": 2, "validation_data": _data(100, seed=1)}
    kept = _fit(x, y, **kwargs)
    _in_the_step(monkeypatch)
    written = _fit(x, y, **kwargs)
    _same_statistics(kept.history, written.history)
    assert kept.report.codes == written.report.codes


@pytest.mark.backends
@on_torch_only
def test_big_steps_are_computed_in_the_step(monkeypatch):
    """A step above STEP_BYTES is not kept: its row is computed right away,
    and it is the same row."""
    x, y = _data(n=200)
    y[70] = -y[70]
    small = _fit(x, y, batch_size=32, epochs=1)
    monkeypatch.setattr(state.DeferredRows, "STEP_BYTES", 100)
    big = _fit(x, y, batch_size=32, epochs=1)
    _same_statistics(small.history, big.history)
    assert big.report.get("NEGATIVE_LABELS").step == 2


@pytest.mark.backends
@on_torch_only
def test_without_vectorising_the_rows_are_computed_one_by_one(monkeypatch, caplog):
    """Where torch.func.vmap cannot batch the statistics, lossguard says so
    once and computes the rows step by step: the same rows."""
    import torch

    x, y = _data(n=200)
    y[70] = -y[70]
    vectorised = _fit(x, y, batch_size=32, epochs=1)

    def refuse(*args, **kwargs):
        raise RuntimeError("vmap refused")

    monkeypatch.setattr(torch.func, "vmap", refuse)
    with caplog.at_level(logging.INFO, logger="lossguard"):
        one_by_one = _fit(x, y, batch_size=32, epochs=1)
    said = [r.getMessage() for r in caplog.records if "step by step" in r.getMessage()]
    assert len(said) == 1 and "vmap refused" in said[0]
    _same_statistics(vectorised.history, one_by_one.history)
    assert one_by_one.report.get("NEGATIVE_LABELS").step == 2


@pytest.mark.backends
def test_a_small_capacity_loses_no_row(caplog):
    """Reads come at most every few steps with capacity=4 (validation steps
    included): every train and validation batch has its own row, and no
    step's statistics are lost."""
    x, y = _data(n=320)
    y[7 * 32] = -y[7 * 32]  # train batch 7
    cb = lossguard.LossSanityCallback(action="record", capacity=4)
    model = _model()
    with caplog.at_level(logging.WARNING, logger="lossguard"):
        model.fit(
            x,
            y,
            batch_size=32,
            epochs=2,
            verbose=0,
            shuffle=False,
            validation_data=_data(n=320, seed=1),
            callbacks=[cb],
        )
    assert not [r for r in caplog.records if "lost" in r.getMessage()]
    history = cb.history
    assert history.groupby(["epoch", "phase"]).size().tolist() == [10, 10, 10, 10]
    assert history.step.tolist() == 4 * list(range(10))
    negative = history[history.label_min < 0]
    assert list(zip(negative.epoch, negative.step, negative.phase, strict=True)) == [
        (0, 7, "train"),
        (1, 7, "train"),
    ]


@pytest.mark.backends
def test_a_step_whose_loss_fails_is_not_counted():
    """The rows in the buffer are numbered from the step counter: a step whose
    loss op fails (TensorFlow's and PyTorch's sparse cross-entropy refuse a
    label out of range; JAX's computes on) must not count, or its empty slot
    would be read as a batch of zeros (a false PREDICTIONS_NOT_PROBABILITIES)."""
    x, y = _data(n=96, classes=5)
    labels = y.argmax(-1)
    labels[70] = 5  # in the third batch of 32
    model = _model(classes=5, features=x.shape[-1])
    model.compile("adam", "sparse_categorical_crossentropy")
    cb = lossguard.LossSanityCallback(action="record")
    try:
        model.fit(x, labels, batch_size=32, verbose=0, shuffle=False, callbacks=[cb])
        crashed = False
    except Exception:  # noqa: BLE001 - the backend's own error
        crashed = True
    train = cb.history[cb.history.phase == "train"]
    assert train.step.tolist() == ([0, 1] if crashed else [0, 1, 2])
    assert train.label_max.tolist()[:2] == [
        float(labels[:32].max()),
        float(labels[32:64].max()),
    ]
    assert "LABELS_OUT_OF_RANGE" in cb.report.codes
    assert "PREDICTIONS_NOT_PROBABILITIES" not in cb.report.codes
