"""Reliability: precision policies, crashes, save/resume, TensorBoard,
keras.distribution, and hypothesis-driven fuzzing of the statistics."""

import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lossguard
from lossguard.diagnosis.faults import check_batch
from lossguard.diagnosis.specs import OutputSpec
from lossguard.diagnosis.statistics import output_statistics
from tests.helpers import T, loud, onehot, seq2seq, token_data, watched_fit

HERE = os.path.dirname(__file__)


def fit(model, x, y, **options):
    return watched_fit(model, x, y, options=options)


# ------------------------------------------------------------------ precision
@pytest.fixture(params=["mixed_float16", "mixed_bfloat16"])
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


def test_mixed_precision_healthy_runs_are_quiet_and_float32(policy):
    x, ids = token_data(pad_tail=1)
    model = seq2seq()  # every layer, the softmax output too, in half precision
    assert model.output.dtype == policy.split("_")[1]
    model.compile("adam", lossguard.losses.StableSparseCategoricalCrossentropy())
    cb = fit(model, x, ids)
    assert loud(cb.report) == [], str(cb.report)
    h = cb.history
    assert np.isfinite(h.loss).all() and (h.loss > 0).all()
    assert h.pred_sum_min.notna().all()  # half outputs are always measured
    assert h.loss.dtype == np.float32 and (h.rows == 40 / 4 * T).all()


def test_mixed_float16_saturating_output_is_named_and_stable_loss_finite():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        x, ids = token_data()
        model = seq2seq()
        kernel = model.layers[-1].kernel
        signs = np.sign(np.random.default_rng(0).normal(size=kernel.shape))
        kernel.assign(3000.0 * signs)
        model.compile(
            keras.optimizers.SGD(0.0),
            lossguard.losses.StableSparseCategoricalCrossentropy(),
        )
        cb = fit(model, x, ids)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    f = cb.report.get("LOW_PRECISION_SATURATION")
    assert f.evidence["dtype"] == "float16" and f.evidence["saturated_share"] > 0.5
    assert np.isfinite(cb.history.loss).all()


# ------------------------------------------------------------- crash and kill
def test_sigkill_mid_epoch_leaves_every_flushed_batch(tmp_path):
    log = tmp_path / "history.csv"
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "killed_run.py"), str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "READY"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    frame = pd.read_csv(log)
    # flush_every=5: blocks are read (and flushed) at least every 5 batches;
    # batches 0-12 ran, so at least 0-9 are in the file, in order.
    assert 10 <= len(frame) <= 13
    assert frame.step.tolist() == list(range(len(frame)))
    assert np.isfinite(frame.loss).all() and (frame.epoch == 0).all()


def test_save_reload_and_resume_with_the_callback(tmp_path):
    x, ids = token_data(pad_tail=1)
    model = seq2seq()
    model.compile("adam", lossguard.losses.StableSparseCategoricalCrossentropy())
    cb = lossguard.LossSanityCallback(action="raise", log_path=tmp_path / "h.csv")
    model.fit(x, ids, batch_size=10, epochs=2, verbose=0, callbacks=[cb])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    loaded.fit(
        x, ids, batch_size=10, epochs=4, initial_epoch=2, verbose=0, callbacks=[cb]
    )
    h = cb.history
    assert len(h) == 8 + 8 and h.epoch.tolist()[-8:] == [2] * 4 + [3] * 4
    assert cb.findings == [] and (h.loss > 0).all()
    assert len(pd.read_csv(tmp_path / "h.csv")) == 16  # one log across both fits


# ------------------------------------------------------------------ TensorBoard
def test_tensorboard_scalars_and_findings_text(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    x, ids = token_data()
    y = onehot(ids)
    y[20:30, -1] = -1.0
    model = seq2seq()
    model.compile("adam", "categorical_crossentropy")
    cb = fit(model, x, y, tensorboard_dir=tmp_path / "tb")
    events = ea.EventAccumulator(str(tmp_path / "tb"), size_guidance={ea.TENSORS: 0})
    events.Reload()
    tags = events.Tags()["tensors"]
    assert {"lossguard/loss", "lossguard/label_min", "lossguard/findings"} <= set(tags)
    loss = [
        float(np.asarray(tensor_util.make_ndarray(e.tensor_proto)))
        for e in events.Tensors("lossguard/loss")
    ]
    np.testing.assert_allclose(loss, cb.history.loss, rtol=1e-6)
    (text,) = events.Tensors("lossguard/findings")[:1]
    assert text.step == 2
    body = tensor_util.make_ndarray(text.tensor_proto).item().decode()
    assert "NEGATIVE_LABELS" in body and "Fix:" in body


# -------------------------------------------------------- keras.distribution
def test_keras_distribution_data_parallel_on_tensorflow():
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    try:
        x, ids = token_data()
        y = onehot(ids)
        y[0, 0] = -1.0
        model = seq2seq()
        model.compile("adam", "categorical_crossentropy")
        cb = fit(model, x, y)
    finally:
        keras.distribution.set_distribution(None)
    assert "NEGATIVE_LABELS" in cb.report.codes
    assert (cb.history.rows == 10 * T).all()


# --------------------------------------------------------------------- fuzzing
SPEC = OutputSpec(name="out", loss_name="categorical_crossentropy", kind="categorical")
SPARSE = OutputSpec(
    name="out", loss_name="sparse_categorical_crossentropy", kind="sparse", units=5
)
floats = st.floats(allow_nan=True, allow_infinity=True, width=32)


def stats(y, p, spec, weights=None):
    row = output_statistics(y, p, weights, spec)
    return {k: float(np.asarray(v)) for k, v in row.items()}


@given(
    hnp.arrays("float32", (4, 3, 5), elements=floats),
    hnp.arrays("float32", (4, 3, 5), elements=floats),
    hnp.arrays("float32", (4,), elements=floats),
)
def test_arbitrary_arrays_never_crash_the_statistics_or_checks(y, p, w):
    row = stats(y, p, SPEC, w)
    row.update(loss=float(np.nansum(p)), data_loss=0.0, aux_loss=0.0)
    check_batch(row, [SPEC])  # must not raise


@given(hnp.arrays("int64", (4, 3), elements=st.integers(-10, 10)))
def test_arbitrary_sparse_ids_never_crash(ids):
    p = np.full((4, 3, 5), 0.2, "float32")
    row = stats(ids, p, SPARSE)
    row.update(loss=1.0, data_loss=1.0, aux_loss=0.0)
    codes = {f.code for f in check_batch(row, [SPARSE])}
    bad = ((ids < 0) | (ids >= 5)).any()
    assert ("LABELS_OUT_OF_RANGE" in codes) == bad


@given(
    hnp.arrays("int64", (4, 3), elements=st.integers(0, 4)),
    hnp.arrays("float32", (4, 3, 5), elements=st.floats(-30, 30, width=32)),
    st.floats(0.0, 0.9),
)
def test_valid_labels_and_softmax_outputs_never_raise_an_error(ids, logits, smooth):
    p = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    y = np.eye(5, dtype="float32")[ids] * (1 - smooth) + smooth / 5
    row = stats(y, p, SPEC)
    loss = float(np.mean(-np.sum(y * np.log(np.clip(p, 1e-7, 1)), -1)))
    row.update(loss=loss, data_loss=loss, aux_loss=0.0)
    assert [f.code for f in check_batch(row, [SPEC]) if f.severity == "error"] == []
