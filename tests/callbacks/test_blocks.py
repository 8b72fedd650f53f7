"""The block-read, columnar data path: exact steps, no re-trace, bounded memory."""

import tracemalloc

import keras
import numpy as np
import pandas as pd
import pytest

import lossguard
from lossguard.callbacks.history import History


def fast_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    h = keras.layers.Dense(8, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h))
    model.compile("adam", "categorical_crossentropy")
    return model


def data(n=640, bad_batch=None, batch_size=8):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, n)]
    if bad_batch is not None:
        y[bad_batch * batch_size] = -1.0  # one -1 row in that batch
    return x, y


def test_raise_names_the_exact_step_of_a_bad_batch_inside_a_block():
    model = fast_model()
    x, y = data(bad_batch=37)
    cb = lossguard.LossSanityCallback(action="raise", check_every=50)
    with pytest.raises(lossguard.LossSanityError) as info:
        model.fit(
            x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[cb]
        )
    f = info.value.report.get("NEGATIVE_LABELS")
    assert (f.epoch, f.step, f.phase) == (0, 37, "train")
    h = cb.history
    assert len(h) == 50  # it acted when the block of 50 steps was read
    assert h.findings[37] == "NEGATIVE_LABELS;LABEL_SUM_NOT_ONE"
    assert (h.drop(index=37).findings == "").all()
    assert "compute_loss" not in vars(model)  # restored before raising


def test_auto_reads_in_blocks_and_check_every_1_after_each_batch():
    x, y = data()
    model = fast_model()
    auto = lossguard.LossSanityCallback(action="record")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[auto])
    assert auto.ledger.every > 1  # a fast step: many steps per read
    assert len(auto.history) == 160 and auto.history.running_loss.notna().all()
    each = lossguard.LossSanityCallback(action="record", check_every=1)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[each])
    assert each.ledger.every == 1 and len(each.history) == 80


def test_a_second_fit_does_not_retrace():
    x, y = data()
    model = fast_model()
    cb = lossguard.LossSanityCallback(action="record")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[cb])
    traces = cb.instrumenter.traces
    assert traces >= 1
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[cb])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[cb])
    assert (
        cb.instrumenter.traces == traces
    )  # the instrumented train function was reused
    h = cb.history
    assert len(h) == 240 and h.global_step.tolist() == list(range(240))
    assert "compute_loss" not in vars(model)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # plain Keras still trains
    model.compile("adam", "categorical_crossentropy")  # Keras re-traces: so do we
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[cb])
    assert cb.instrumenter.traces > traces


def test_history_is_typed_columns_under_200_bytes_a_row():
    keys = [f"s{i}" for i in range(39)]  # a single-output model's statistics
    store = History(keys)
    block = np.random.default_rng(0).normal(size=(128, len(keys))).astype("float32")
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for start in range(0, 20_480, 128):
        store.append(
            block,
            0,
            np.arange(start, start + 128),
            "train",
            np.zeros(128),
            np.arange(start, start + 128),
        )
    per_row = (tracemalloc.get_traced_memory()[0] - before) / len(store)
    tracemalloc.stop()
    assert per_row <= 200, per_row
    frame = store.frame(("epoch", "step"))
    assert frame.s0.dtype == np.float32 and frame.step.dtype == np.int32
    np.testing.assert_array_equal(frame.s3.to_numpy()[:128], block[:, 3])


def test_keep_in_memory_bounds_history_while_the_log_has_every_row(tmp_path):
    x, y = data(n=8 * 2500)
    model = fast_model()
    log = tmp_path / "h.csv"
    cb = lossguard.LossSanityCallback(
        action="record", log_path=log, keep_in_memory=1000, flush_every=100
    )
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[cb])
    h = cb.history
    assert h.attrs["partial"] and 1000 <= len(h) < 1000 + 1024 + 100
    assert h.index[-1] == 2499 and h.step.iloc[-1] == 2499
    written = pd.read_csv(log)
    assert written.step.tolist() == list(range(2500))
    np.testing.assert_allclose(written.loss.iloc[-len(h) :], h.loss, rtol=1e-6)
    assert len(h) == 1000  # exactly what was asked for, not whole chunks
    with pytest.raises(ValueError, match="keep_in_memory"):
        lossguard.LossSanityCallback(keep_in_memory=10)
    with pytest.raises(ValueError, match="check_every"):
        lossguard.LossSanityCallback(check_every=0)


@pytest.mark.backends
@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_running_loss_is_what_keras_showed_at_each_batch(steps_per_execution):
    """The history's running_loss is Keras' logs["loss"] at the batch hook of
    each row (the last row a hook covered, with several steps a call), read
    in blocks (check_every=7) that do not line up with the epochs; and it is
    the mean of the epoch's batch losses so far (equal batches)."""
    backend = keras.backend.backend()
    if backend == "torch" and steps_per_execution > 1:
        pytest.skip("Keras' PyTorch trainer runs one step a call")
    x, y = data(n=160)
    model = fast_model()
    model.compile(
        "adam", "categorical_crossentropy", steps_per_execution=steps_per_execution
    )
    shown = []
    keras_logs = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: shown.append(logs["loss"])
    )
    cb = lossguard.LossSanityCallback(action="record", check_every=7)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[cb, keras_logs])
    h = cb.history
    assert len(h) == 2 * 20
    every = steps_per_execution
    running = h.running_loss.to_numpy()
    np.testing.assert_allclose(running[every - 1 :: every], shown, rtol=1e-6)
    others = np.delete(running, np.s_[every - 1 :: every])
    if backend == "tensorflow":  # from the hooks: one value a call
        assert np.isnan(others).all()
    else:  # JAX: from the loss tracker inside the step, every step's
        assert np.isfinite(others).all()
    so_far = h.groupby("epoch").loss.transform(lambda s: s.expanding().mean())
    has = np.isfinite(running)
    np.testing.assert_allclose(running[has], so_far.to_numpy()[has], rtol=1e-5)
