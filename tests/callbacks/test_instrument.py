"""The instrumenter (`lossguard/callbacks/instrument.py`): the statistics put
into Keras' train and test steps for a run, and taken out after it."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lossguard.callbacks import state
from lossguard.callbacks.instrument import Instrumenter, compile_key, steps_per_call
from tests.helpers import class_data, classifier


@pytest.fixture(scope="module")
def data():
    """Five batches of 8 for `model`."""
    return class_data(n=40)


def installed(model, capacity=16, **kwargs):
    """An Instrumenter built for and installed into `model`, and the crashes
    it reported as (error, phase)."""
    crashes = []
    instrumenter = Instrumenter(**kwargs)
    assert instrumenter.build(model, compile_key(model), capacity)
    reason = instrumenter.install(model, lambda e, phase: crashes.append((e, phase)))
    assert reason is None
    return instrumenter, crashes


def column(instrumenter, key):
    return len(state.HEADER) + instrumenter.collector.keys.index(key)


def test_each_step_writes_its_batchs_row_and_uninstall_restores_the_model(model, data):
    x, y = data
    instrumenter, crashes = installed(model)
    assert "compute_loss" in vars(model)
    assert model.train_function is instrumenter.functions["train"]
    assert model.test_function is instrumenter.functions["test"]
    assert instrumenter.installed and instrumenter.in_step  # TensorFlow, 1 a call
    try:
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        model.evaluate(x[:16], y[:16], batch_size=8, verbose=0)
    finally:
        instrumenter.uninstall(model)
    rows = instrumenter.read(model)
    assert rows[:7, 0].tolist() == [1, 2, 3, 4, 5, 6, 7]  # numbered by step
    assert rows[:7, 1].tolist() == [0] * 5 + [1] * 2  # train, then test
    assert (rows[7:, 0] == 0).all()
    # A test row's loss is its batch's loss (the weights no longer move).
    loss = keras.losses.CategoricalCrossentropy()
    for i, row in enumerate(rows[5:7]):
        batch = slice(8 * i, 8 * i + 8)
        expected = float(loss(y[batch], model.predict(x[batch], verbose=0)))
        assert row[column(instrumenter, "loss")] == pytest.approx(expected, rel=1e-5)
    assert crashes == []
    # Restored: Keras' own compute_loss and step functions, no more rows.
    assert "compute_loss" not in vars(model)
    assert model.train_function is None and model.test_function is None
    assert not instrumenter.installed and not instrumenter.in_step
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert instrumenter.read(model)[:, 0].max() == 7


def test_a_model_with_its_own_compute_loss_keeps_it(data):
    """An override without `training` (written for Keras 2) is called as it
    is, its loss is the row's, and it is put back after the run."""
    x, y = data
    model = classifier()
    model.compile("adam", "categorical_crossentropy")
    keras_loss = model.compute_loss
    called = []

    def compute_loss(x=None, y=None, y_pred=None, sample_weight=None):
        called.append(True)
        return 2.0 * keras_loss(x, y, y_pred, sample_weight)

    model.compute_loss = compute_loss
    instrumenter, _ = installed(model)
    try:
        loss = model.compute_loss(x[:8], y[:8], model(x[:8]), None)  # eagerly
    finally:
        instrumenter.uninstall(model)
    assert called == [True]
    assert vars(model)["compute_loss"] is compute_loss
    (row,) = instrumenter.read(model)[:1]
    assert row[0] == 1 and row[column(instrumenter, "loss")] == pytest.approx(
        float(loss)
    )


def test_the_build_serves_until_the_compile_changes():
    model = classifier()
    model.compile("adam", "categorical_crossentropy")
    key = compile_key(model)
    instrumenter = Instrumenter()
    assert instrumenter.build(model, key, 16) is True
    collector = instrumenter.collector
    assert instrumenter.build(model, compile_key(model), 16) is False
    assert instrumenter.collector is collector
    model.compile("adam", "categorical_crossentropy", steps_per_execution=4)
    assert compile_key(model) != key and steps_per_call(model) == 4
    assert instrumenter.build(model, compile_key(model), 2) is True
    assert instrumenter.capacity == 8  # room for two calls of 4 steps
    assert instrumenter.install(model, on_crash=None) is None
    try:
        assert instrumenter.installed and not instrumenter.in_step  # 4 a hook
    finally:
        instrumenter.uninstall(model)


def test_a_step_that_fails_is_explained_before_the_error_reaches_the_user(model, data):
    x, _ = data
    wrong = np.eye(5, dtype="float32")[np.arange(40) % 5]  # 5 classes for 3 units
    instrumenter, crashes = installed(model)
    try:
        with pytest.raises(ValueError) as caught:
            model.fit(x, wrong, batch_size=8, epochs=1, verbose=0)
    finally:
        instrumenter.uninstall(model)
    assert [(error, phase) for error, phase in crashes] == [(caught.value, "train")]


def test_the_end_of_an_epoch_of_unknown_length_is_not_a_crash(model, data):
    x, y = data
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda *_: True)
    assert dataset.cardinality() == tf.data.UNKNOWN_CARDINALITY
    instrumenter, crashes = installed(model)
    try:
        model.fit(dataset.batch(8), epochs=1, verbose=0)
    finally:
        instrumenter.uninstall(model)
    assert crashes == []
    assert instrumenter.read(model)[:, 0].max() == 5


class OwnStep(keras.Model):
    """A model whose train step computes its loss without compute_loss."""

    def train_step(self, data):
        return {}


def test_blind_reason_says_why_a_step_wrote_no_row():
    inp = keras.Input((4,))
    model = OwnStep(inp, keras.layers.Dense(3, activation="softmax")(inp))
    model.compile("adam", "categorical_crossentropy")
    instrumenter = Instrumenter()
    instrumenter.build(model, compile_key(model), 16)
    assert instrumenter.custom_step == {"train": True, "test": False}
    assert instrumenter.blind_reason(model, "train") == (
        "OwnStep overrides train_step and does not call compute_loss"
    )
    assert instrumenter.blind_reason(model, "validation") == (
        "the test step did not call model.compute_loss"
    )
    instrumenter.trace_error = TypeError("no such op")
    assert instrumenter.blind_reason(model, "train") == (
        "building its statistics failed (TypeError: no such op)"
    )
