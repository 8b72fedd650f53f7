"""The sinks (`lossguard/callbacks/sinks.py`): the log file, TensorBoard, and
`Sinks`, which calls them together and drops one that fails."""

import numpy as np
import pandas as pd
import pytest

from lossguard.callbacks.history import CHUNK, History
from lossguard.callbacks.sinks import Block, LogFile, Sink, Sinks, TensorBoard
from tests.helpers import RecordingSink

pytestmark = pytest.mark.backends

KEYS = ["loss", "label_min"]
CHIEF = object()  # a model on the process that writes
WORKER = object()  # a model on another process of the run


def is_chief(model):
    return model is CHIEF


class Run:
    """The callback's side of a log file: a history that may start over."""

    def __init__(self, keys=KEYS, keep=None):
        self.store = History(keys, keep=keep)

    def log(self, path, flush_every=3, model=CHIEF):
        log = LogFile(
            str(path),
            flush_every,
            frame=lambda start: self.store.frame(
                ("epoch", "step", "loss"), start=start
            ),
            total=lambda: self.store.total,
            trim=lambda written: self.store.trim(written),
            is_chief=is_chief,
        )
        log.start(model)
        return log

    def batches(self, log, n):
        """`n` one-row blocks, each handed to the log as the reader does."""
        for _ in range(n):
            row = self.store.total
            self.store.append([[row, -row]], 0, [row], "train", [np.nan], [row])
            log.write_block(None)


def test_a_csv_log_is_appended_every_flush_every_rows_and_every_epoch(tmp_path):
    path = tmp_path / "h.csv"
    run = Run()
    log = run.log(path, flush_every=3)
    run.batches(log, 2)
    assert not path.exists()  # fewer rows than flush_every: nothing yet
    run.batches(log, 1)
    assert pd.read_csv(path).step.tolist() == [0, 1, 2]
    run.batches(log, 2)
    assert len(pd.read_csv(path)) == 3
    log.flush()  # the epoch ended
    written = pd.read_csv(path)
    assert written.step.tolist() == [0, 1, 2, 3, 4]  # one header, no repeats
    assert written.loss.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert list(written.columns[:3]) == ["epoch", "step", "loss"]
    run.batches(log, 1)
    log.end(report=None)  # the run ended: the rest is written
    assert pd.read_csv(path).step.tolist() == [0, 1, 2, 3, 4, 5]


def test_a_parquet_log_is_rewritten_whole(tmp_path):
    path = tmp_path / "h.parquet"
    run = Run()
    log = run.log(path, flush_every=2)
    run.batches(log, 2)
    assert pd.read_parquet(path).step.tolist() == [0, 1]
    run.batches(log, 1)
    log.flush()
    written = pd.read_parquet(path)
    assert written.step.tolist() == [0, 1, 2]
    assert written.label_min.tolist() == [0.0, -1.0, -2.0]


def test_a_history_that_starts_over_starts_the_log_over(tmp_path):
    path = tmp_path / "h.csv"
    run = Run()
    log = run.log(path, flush_every=2)
    run.batches(log, 4)
    run.store = History(["loss", "pred_max"])  # another model's statistics
    log.restart()
    run.store.append([[9.0, 0.5]], 0, [0], "train", [np.nan], [0])
    log.flush()
    written = pd.read_csv(path)
    assert len(written) == 1 and written.pred_max.tolist() == [0.5]
    assert "label_min" not in written.columns


def test_only_the_chief_writes_the_log(tmp_path):
    path = tmp_path / "h.csv"
    run = Run()
    log = run.log(path, flush_every=2, model=WORKER)
    run.batches(log, 3)
    log.end(report=None)
    assert not path.exists()
    assert log.written == 3  # counted as written: the chief has them


def test_with_keep_in_memory_the_log_still_has_every_row(tmp_path):
    path = tmp_path / "h.csv"
    run = Run(keep=10)  # keep_in_memory=10, flush_every=100
    log = run.log(path, flush_every=100)
    run.batches(log, 150)
    log.flush()
    assert pd.read_csv(path).step.tolist() == list(range(150))


def test_with_keep_in_memory_written_rows_leave_memory(tmp_path):
    run = Run(keep=10)
    log = run.log(tmp_path / "h.csv", flush_every=CHUNK)
    run.batches(log, 3 * CHUNK)
    assert run.store.dropped == 2 * CHUNK and len(run.store) == CHUNK
    assert len(pd.read_csv(tmp_path / "h.csv")) >= 2 * CHUNK


def test_with_keep_in_memory_a_worker_holds_no_more_than_the_chief(tmp_path):
    run = Run(keep=10)
    log = run.log(tmp_path / "h.csv", flush_every=CHUNK, model=WORKER)
    run.batches(log, 3 * CHUNK)
    assert len(run.store) == CHUNK


# ---------------------------------------------------------------- Sinks
def test_a_sink_that_fails_is_said_once_and_dropped():
    first, broken, last = RecordingSink(), RecordingSink("write_block"), RecordingSink()
    said = []
    sinks = Sinks([first, broken, last], said.append)
    sinks.call("start", CHIEF)
    sinks.call("write_block", "block 1")
    sinks.call("write_block", "block 2")
    sinks.call("flush")
    assert len(said) == 1
    assert said[0].startswith("lossguard stopped writing to RecordingSink")
    assert "(RuntimeError: write_block failed)" in said[0]
    assert "watches the training as before" in said[0]
    assert broken.calls == [("start", CHIEF), ("write_block", "block 1")]
    # The others get every call, the failing one's included.
    for sink in (first, last):
        names = [call[0] for call in sink.calls]
        assert names == ["start", "write_block", "write_block", "flush"]
        assert sink.blocks == ["block 1", "block 2"]
    assert sinks.sinks == [first, last]


def test_the_interface_does_nothing_by_default():
    said = []
    sinks = Sinks([Sink()], said.append)
    for call, args in [
        ("start", (CHIEF,)),
        ("write_block", (None,)),
        ("finding", (None, None, 0)),
        ("flush", ()),
        ("end", (None,)),
    ]:
        sinks.call(call, *args)
    assert said == [] and len(sinks.sinks) == 1


def test_find_returns_the_first_sink_of_a_kind():
    log = LogFile("h.csv", 1, None, None, None, is_chief)
    sinks = Sinks([RecordingSink(), log], warn=None)
    assert sinks.find(LogFile) is log
    assert sinks.find(TensorBoard) is None


# ----------------------------------------------------------- TensorBoard
def block(phase, rows, global_steps, keys=KEYS):
    rows = np.asarray(rows, "float32")
    return Block(rows, keys, phase, np.arange(len(rows)), np.asarray(global_steps))


def test_tensorboard_on_a_worker_writes_nothing(tmp_path):
    folder = tmp_path / "tb"
    board = TensorBoard(str(folder), is_chief)
    board.write_block(block("train", [[1.0, 0.0]], [0]))  # before a run: no model
    board.start(WORKER)
    board.write_block(block("train", [[1.0, 0.0]], [0]))
    board.finding(None, None, 0)
    board.flush()
    board.end(None)
    assert not folder.exists() and board.writer is None


def scalars(folder):
    """{tag: [(step, value)]} of every scalar TensorFlow wrote in `folder`."""
    import tensorflow as tf

    found = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor))
                found.setdefault(value.tag, []).append((event.step, number))
    return found


def test_tensorboard_writes_each_finite_statistic_at_its_global_step(tmp_path):
    folder = tmp_path / "tb"
    board = TensorBoard(str(folder), is_chief)
    board.start(CHIEF)
    board.write_block(block("train", [[1.5, -1.0], [0.5, np.nan]], [7, 8]))
    board.write_block(block("validation", [[0.25, 0.0]], [9]))
    board.end(None)
    assert board.writer is None  # closed
    found = scalars(folder)
    assert found["lossguard/loss"] == [(7, 1.5), (8, 0.5)]
    assert found["lossguard/label_min"] == [(7, -1.0)]  # NaN is not drawn
    assert found["lossguard/validation/loss"] == [(9, 0.25)]
    assert found["lossguard/validation/label_min"] == [(9, 0.0)]
