"""Where the statistics live (`lossguard/callbacks/state.py`): a buffer of
rows and a step counter, carried as metric state on the model's loss
tracker while watched, read back numbered by the step that wrote each row."""

import keras
import numpy as np
import pytest

from lossguard.callbacks import state
from tests.helpers import classifier


@pytest.fixture(scope="module")
def model():
    """A compiled classifier (its loss tracker exists once compiled)."""
    model = classifier()
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


@pytest.fixture
def rows(model):
    """A buffer of 4 rows of 3 values for `model`, attached while a test runs."""
    rows = state.rows_for(model, 4, 3, compute=None)
    host = state.attach(model, rows.variables)
    yield rows
    host.unbind()


def write(rows, *values):
    for value in values:
        rows.write(keras.ops.convert_to_tensor(np.full(3, value, "float32")))


def test_the_loss_tracker_is_the_compiled_running_mean():
    model = classifier()
    assert state.loss_tracker(model) is None  # not compiled: no tracker
    model.compile("adam", "sparse_categorical_crossentropy")
    tracker = state.loss_tracker(model)
    assert isinstance(tracker, keras.metrics.Mean) and tracker.name == "loss"


def test_attached_rows_are_state_keras_carries_until_unbound(model):
    rows = state.rows_for(model, 4, 3, compute=None)
    host = state.attach(model, rows.variables)
    assert isinstance(host, state.StepStats)
    assert getattr(state.loss_tracker(model), state.ATTRIBUTE) is host
    carried = {id(v) for v in model.metrics_variables}
    assert {id(v) for v in rows.variables} <= carried
    again = state.attach(model, rows.variables)
    assert again is host  # one host per tracker, bound again
    host.unbind()
    assert host.variables == []
    carried = {id(v) for v in model.metrics_variables}
    assert not {id(v) for v in rows.variables} & carried
    assert len(model.metrics_variables) == 2  # the tracker's total and count


def test_nothing_is_attached_without_variables_or_a_tracker():
    model = classifier()
    rows = state.rows_for(model, 4, 3, compute=None)
    assert state.attach(model, rows.variables) is None  # not compiled
    model.compile("adam", "sparse_categorical_crossentropy")
    assert state.attach(model, ()) is None


def test_the_host_reports_nothing_and_survives_metric_resets(model, rows):
    write(rows, 1.0, 2.0)
    host = getattr(state.loss_tracker(model), state.ATTRIBUTE)
    assert host.result() == {}  # no key added to Keras' logs
    model.reset_metrics()  # what Keras does every epoch and evaluation
    read = rows.numpy(model)
    assert read[:2, 0].tolist() == [1, 2]  # the rows outlive the reset
    np.testing.assert_array_equal(read[:2, 1:], [[1, 1], [2, 2]])


def test_rows_are_numbered_by_the_step_that_wrote_them(model, rows):
    assert rows.capacity == 4 and rows.read_every_max == 2
    read = rows.numpy(model)
    assert read.shape == (4, 3) and (read[:, 0] == 0).all()  # nothing written
    write(rows, 1.0, 2.0)
    assert rows.numpy(model)[:, 0].tolist() == [1, 2, 0, 0]
    write(rows, 3.0, 4.0, 5.0, 6.0)  # six steps in four slots: 5, 6 replace 1, 2
    read = rows.numpy(model)
    assert read[:, 0].tolist() == [5, 6, 3, 4]
    np.testing.assert_array_equal(read[:, 1], [5, 6, 3, 4])


def test_on_tensorflow_the_rows_need_no_carrying_and_one_process_is_chief(model):
    assert state.needs_carried_state() is False
    assert state.is_chief(model) is True
    assert state.rows_for(model, 4, 3, compute=None).deferred is False
