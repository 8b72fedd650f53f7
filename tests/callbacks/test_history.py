"""The history (`lossguard/callbacks/history.py`): typed columns of batch
statistics, grown in chunks, bounded by `keep`, and the DataFrame the
callback's `history` shows (with model-level columns over several outputs)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lossguard.callbacks.history import CHUNK, LEADING, History, model_frame

pytestmark = pytest.mark.backends

KEYS = ["loss", "label_min"]


def append(store, n, phase="train", epoch=0, first_step=0, first_global=None):
    """Append `n` rows whose loss is their row number (label_min its negative)."""
    start = store.total
    stats = np.stack([np.arange(start, start + n), -np.arange(start, start + n)], 1)
    steps = np.arange(first_step, first_step + n)
    first_global = start if first_global is None else first_global
    global_steps = np.arange(first_global, first_global + n)
    running = np.full(n, np.nan)
    return store.append(stats, epoch, steps, phase, running, global_steps)


def test_append_returns_the_row_numbers_and_keeps_the_values():
    store = History(KEYS)
    assert len(store) == 0 and store.total == 0
    assert append(store, 3) == range(0, 3)
    assert append(store, 2, phase="validation", first_global=3) == range(3, 5)
    stats, meta = store.columns()
    np.testing.assert_array_equal(stats[:, 0], [0, 1, 2, 3, 4])
    assert stats.dtype == np.float32
    assert meta["phase"].tolist() == [0, 0, 0, 1, 1]
    assert meta["step"].tolist() == [0, 1, 2, 0, 1]


def test_rows_cross_chunks_and_columns_start_where_asked():
    store = History(KEYS)
    append(store, CHUNK - 3)
    append(store, 10)  # fills the first chunk and starts a second
    assert len(store) == store.total == CHUNK + 7
    stats, meta = store.columns(CHUNK - 5)
    np.testing.assert_array_equal(stats[:, 0], np.arange(CHUNK - 5, CHUNK + 7))
    assert meta["global_step"].tolist() == list(range(CHUNK - 5, CHUNK + 7))
    assert len(store.columns(CHUNK + 7)[0]) == 0  # nothing after the last row


def test_frame_has_the_leading_columns_first_and_typed_columns():
    store = History(KEYS)
    append(store, 2)
    store.findings[1] = "NEGATIVE_LABELS"
    frame = store.frame(("epoch", "step", "phase", "loss"), {"pred_dtype": "float16"})
    assert list(frame.columns[:4]) == ["epoch", "step", "phase", "loss"]
    assert set(frame.columns) == {
        "epoch",
        "step",
        "phase",
        "loss",
        "label_min",
        "running_loss",
        "global_step",
        "pred_dtype",
        "findings",
    }
    assert frame.epoch.dtype == np.int64 and frame.step.dtype == np.int32
    assert frame.loss.dtype == np.float32
    assert frame.phase.tolist() == ["train", "train"]
    assert frame.findings.tolist() == ["", "NEGATIVE_LABELS"]
    assert (frame.pred_dtype == "float16").all()
    assert frame.attrs == {"partial": False, "rows_dropped": 0}


def test_evaluate_rows_have_no_epoch():
    store = History(KEYS)
    append(store, 2, epoch=1)
    append(store, 1, phase="validation", epoch=None)  # model.evaluate
    frame = store.frame(("epoch",))
    assert frame.epoch.tolist()[:2] == [1.0, 1.0] and np.isnan(frame.epoch[2])


def test_frame_from_a_row_is_indexed_by_row_number():
    store = History(KEYS)
    append(store, 5)
    store.findings[3] = "NEGATIVE_WEIGHTS"
    frame = store.frame(("step",), start=3)
    assert frame.index.tolist() == [3, 4]
    assert frame.loss.tolist() == [3.0, 4.0]
    assert frame.findings.tolist() == ["NEGATIVE_WEIGHTS", ""]


def test_keep_bounds_memory_to_whole_chunks_already_written():
    store = History(KEYS, keep=100)
    append(store, 3 * CHUNK)
    store.findings[5] = "NEGATIVE_LABELS"
    store.findings[3 * CHUNK - 1] = "NEGATIVE_WEIGHTS"
    store.trim(written=CHUNK + 50)  # only the first chunk is in the log
    assert store.dropped == CHUNK and store.total == 3 * CHUNK
    assert store.findings == {3 * CHUNK - 1: "NEGATIVE_WEIGHTS"}
    store.trim(written=3 * CHUNK)
    # Memory holds whole chunks, and never fewer rows than `keep`.
    assert store.dropped == 2 * CHUNK and len(store) == CHUNK
    frame = store.frame(("step",))
    assert len(frame) == 100  # the view is what was asked for
    assert frame.index[0] == 3 * CHUNK - 100 and frame.index[-1] == 3 * CHUNK - 1
    assert frame.loss.iloc[-1] == 3 * CHUNK - 1
    assert frame.attrs == {"partial": True, "rows_dropped": 3 * CHUNK - 100}
    assert frame.findings.iloc[-1] == "NEGATIVE_WEIGHTS"
    # Rows appended after a trim are numbered on from the total.
    assert append(store, 1) == range(3 * CHUNK, 3 * CHUNK + 1)


def test_trim_keeps_at_least_keep_rows():
    store = History(KEYS, keep=1500)
    append(store, 3 * CHUNK)
    store.trim(written=3 * CHUNK)
    assert store.dropped == CHUNK and len(store) >= 1500
    assert len(store.frame(("step",))) == 1500


def test_without_keep_trim_drops_nothing():
    store = History(KEYS)
    append(store, 2 * CHUNK)
    store.trim(written=2 * CHUNK)
    assert store.dropped == 0 and len(store.frame(("step",))) == 2 * CHUNK


def spec(name, dtype="float32"):
    return SimpleNamespace(name=name, dtype=dtype)


def test_model_frame_combines_several_outputs_into_model_level_columns():
    keys = [
        "loss",
        "tags/label_min",
        "flag/label_min",
        "tags/pred_max",
        "flag/pred_max",
    ]
    store = History(keys)
    rows = [[1.0, -1.0, 0.0, 0.9, 0.7], [2.0, 0.0, np.nan, 0.4, 1.5]]
    store.append(rows, 0, [0, 1], "train", [np.nan, 1.5], [0, 1])
    specs = [spec("tags"), spec("flag", "float16")]
    columns = {"label_min": "min", "pred_max": "max"}
    frame = model_frame(store, specs, False, columns)
    assert frame.label_min.tolist() == [-1.0, 0.0]  # a NaN output is skipped
    assert frame.pred_max.tolist() == [pytest.approx(0.9), 1.5]
    lead = [c for c in LEADING if c in frame.columns]
    assert list(frame.columns[: len(lead) + 2]) == [*lead, "label_min", "pred_max"]
    assert (frame["flag/pred_dtype"] == "float16").all()
    assert (frame["tags/pred_dtype"] == "float32").all()


def test_model_frame_of_one_output_has_its_columns_unprefixed():
    store = History(["loss", "label_min"])
    store.append([[1.0, 0.0]], 0, [0], "train", [1.0], [0])
    frame = model_frame(store, [spec("out")], True, {"label_min": "min"})
    assert "pred_dtype" in frame.columns and "out/pred_dtype" not in frame.columns
    assert frame.label_min.tolist() == [0.0]


def test_model_frame_before_any_run_is_empty_with_the_leading_columns():
    frame = model_frame(None, (), True, {"label_min": "min"})
    assert isinstance(frame, pd.DataFrame) and frame.empty
    assert list(frame.columns) == [*LEADING, "label_min"]
