"""The block reader (`lossguard/callbacks/reader.py`): the steps counted by
the batch hooks, the rows read in blocks, numbered, recorded into the
history, checked, and handed to the sinks; and a phase whose steps write
no row, recorded from Keras' running loss alone."""

import logging
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from lossguard.callbacks import state
from lossguard.callbacks.history import History
from lossguard.callbacks.instrument import Instrumenter, compile_key
from lossguard.callbacks.ledger import StepLedger
from lossguard.callbacks.reader import BlockReader
from lossguard.callbacks.sinks import Sinks
from tests.helpers import RecordingSink, class_data


class Hooks(keras.callbacks.Callback):
    """Keras' hooks handed to a reader as `LossSanityCallback` hands them;
    keeps the running loss Keras showed at each training batch."""

    def __init__(self, reader):
        super().__init__()
        self.reader = reader
        self.shown = []

    def on_epoch_begin(self, epoch, logs=None):
        self.reader.ledger.epoch_begins(epoch)

    def on_train_batch_end(self, batch, logs=None):
        self.shown.append(logs["loss"])
        self.reader.batch_end(self.model, logs, "train")

    def on_test_begin(self, logs=None):
        self.reader.ledger.validation_begins()

    def on_test_batch_end(self, batch, logs=None):
        self.reader.batch_end(self.model, logs, "validation")

    def on_test_end(self, logs=None):
        self.reader.read(self.model, None, "validation")

    def on_epoch_end(self, epoch, logs=None):
        self.reader.read(self.model, None, "train")


class Watch:
    """A reader and everything it hands on: blocks to a sink, findings to
    `add`, words to `warn`, and the history's length at each `before_block`."""

    def __init__(self, instrumenter, check_every):
        self.sink = RecordingSink()
        self.said, self.added, self.before = [], [], []
        self.hooks = None
        self.reader = BlockReader(
            instrumenter,
            StepLedger(check_every),
            Sinks([self.sink], self.said.append),
            self.said.append,
            add=lambda findings, step: self.added.append((findings, step)),
            before_block=lambda: self.before.append(self.reader.store.total),
            flush_every=None,
        )
        self.reader.store = History(instrumenter.collector.keys)
        self.reader.ledger.start(fit=True)

    def fit(self, model, *args, **kwargs):
        """`model.fit` with the statistics installed and the hooks (`hooks`)
        handed to the reader."""
        instrumenter = self.reader.instrumenter
        assert instrumenter.install(model, on_crash=None) is None
        self.hooks = Hooks(self.reader)
        try:
            model.fit(*args, verbose=0, shuffle=False, callbacks=[self.hooks], **kwargs)
        finally:
            instrumenter.uninstall(model)

    @property
    def history(self):
        return self.reader.store.frame(("epoch", "step", "phase", "global_step"))


def built(model, capacity):
    instrumenter = Instrumenter()
    instrumenter.build(model, compile_key(model), capacity)
    return instrumenter


@pytest.fixture(scope="module")
def watched(model):
    """Two epochs of 5 batches (batch 2 has a -1 label row) and 2 validation
    batches, read every 2 steps."""
    x, y = class_data(n=40)
    y[16] = -y[16]
    validation = class_data(n=16, seed=1)
    watch = Watch(built(model, capacity=16), check_every=2)
    watch.fit(model, x, y, batch_size=8, epochs=2, validation_data=validation)
    return watch


def test_every_step_is_recorded_once_numbered_by_phase_and_training_step(watched):
    h = watched.history
    train, validation = h[h.phase == "train"], h[h.phase == "validation"]
    assert train.step.tolist() == [0, 1, 2, 3, 4] * 2
    assert train.epoch.tolist() == [0] * 5 + [1] * 5
    assert train.global_step.tolist() == list(range(10))
    assert validation.step.tolist() == [0, 1] * 2
    # Validation rows sit at the training step they follow.
    assert validation.global_step.tolist() == [5, 5, 10, 10]
    assert h.phase.tolist() == (["train"] * 5 + ["validation"] * 2) * 2


def test_the_running_loss_is_what_keras_showed_at_each_batch(watched):
    h = watched.history
    train = h[h.phase == "train"]
    np.testing.assert_allclose(train.running_loss, watched.hooks.shown, rtol=1e-6)


def test_findings_are_added_with_the_batch_they_were_seen_on(watched):
    assert watched.said == []
    seen = [
        ({f.code for f in findings}, {(f.epoch, f.step, f.phase) for f in findings}, at)
        for findings, at in watched.added
    ]
    codes = {"NEGATIVE_LABELS", "LABEL_SUM_NOT_ONE"}
    assert seen == [(codes, {(0, 2, "train")}, 2), (codes, {(1, 2, "train")}, 7)]
    store = watched.reader.store
    assert set(store.findings) == {2, 9}  # the rows of both epochs' batch 2
    assert set(store.findings[2].split(";")) == codes


def test_each_block_goes_to_the_sinks_as_recorded(watched):
    blocks = watched.sink.blocks
    keys = watched.reader.instrumenter.collector.keys
    h = watched.history
    assert all(block.keys == keys for block in blocks)
    assert all(len(block.rows) <= 2 for block in blocks)  # check_every=2
    assert [p for b in blocks for p in [b.phase] * len(b.rows)] == h.phase.tolist()
    assert np.concatenate([b.steps for b in blocks]).tolist() == h.step.tolist()
    global_steps = np.concatenate([b.global_steps for b in blocks])
    assert global_steps.tolist() == h.global_step.tolist()
    stats = np.concatenate([b.rows for b in blocks])
    np.testing.assert_array_equal(stats, h[keys].to_numpy())
    # before_block comes before a block is recorded: at the row it starts.
    starts = np.cumsum([0] + [len(b.rows) for b in blocks])[:-1]
    assert watched.before[0] == 0 and set(watched.before) <= set(starts.tolist())


class ListHandler(logging.Handler):
    """Keeps the messages logged to it."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def overflowed(model):
    """One epoch of 10 batches (batch 8 has a -1 label row) read once, at the
    10th step, from a buffer of 4 rows: steps 1 to 6 are lost."""
    x, y = class_data(n=80)
    y[64] = -y[64]
    watch = Watch(built(model, capacity=4), check_every=10)
    handler = ListHandler()
    logger = logging.getLogger("lossguard")
    logger.addHandler(handler)
    try:
        watch.fit(model, x, y, batch_size=8, epochs=1)
    finally:
        logger.removeHandler(handler)
    watch.logged = handler.messages
    return watch


def test_steps_lost_between_reads_are_said_and_the_rest_recorded(overflowed):
    lost = [m for m in overflowed.logged if "lost" in m]
    assert lost == [
        "lossguard lost 6 steps' statistics (more steps ran between reads than "
        "capacity=4 holds)."
    ]
    assert len(overflowed.history) == 4


def test_rows_after_lost_steps_keep_their_own_step_numbers(overflowed):
    assert overflowed.history.step.tolist() == [6, 7, 8, 9]
    ((findings, at),) = overflowed.added
    assert {f.step for f in findings} == {8} and at == 8


# ------------------------------------------- a phase whose steps write no row
class Unseeing:
    """An instrumenter whose steps never wrote a row (a train step that does
    not call compute_loss): every row of its buffer is unwritten."""

    between_steps = in_step = False
    installed = True
    capacity = 4
    rows = SimpleNamespace(read_every_max=2)
    collector = SimpleNamespace(keys=["loss", "label_min"], specs=[])

    def read(self, model):
        return np.zeros((self.capacity, len(state.HEADER) + 2), "float32")

    def blind_reason(self, model, phase):
        return "OwnStep overrides train_step and does not call compute_loss"


def test_a_phase_without_rows_is_said_once_and_recorded_from_keras_logs():
    watch = Watch(Unseeing(), check_every=1)
    for loss in (0.9, 0.8, 0.7):
        watch.reader.batch_end(SimpleNamespace(), {"loss": loss}, "train")
    (message,) = watch.said
    assert message.startswith(
        "lossguard cannot see the train batches of this model: OwnStep "
        "overrides train_step and does not call compute_loss."
    )
    assert "history['running_loss']" in message
    h = watch.history
    assert h.step.tolist() == [0, 1, 2] and h.global_step.tolist() == [0, 1, 2]
    np.testing.assert_allclose(h.running_loss, [0.9, 0.8, 0.7])
    assert h.loss.isna().all() and h.label_min.isna().all()
    reason = Unseeing().blind_reason(None, "train")
    assert watch.reader.ledger.blind == {"train": reason}
    assert watch.sink.blocks == [] and watch.added == [] and watch.before == []


def test_a_row_is_owed_for_each_hook_before_the_phase_went_blind():
    watch = Watch(Unseeing(), check_every=3)
    for loss in (0.9, 0.8, 0.7):
        watch.reader.batch_end(SimpleNamespace(), {"loss": loss}, "train")
    h = watch.history
    assert h.step.tolist() == [0, 1, 2] and h.running_loss.iloc[-1] == 0.7
    assert len(watch.said) == 1


def test_a_failing_trend_check_is_said_once_and_the_batches_still_checked(
    model, monkeypatch
):
    def broken(*args):
        raise ValueError("no such column")

    monkeypatch.setattr("lossguard.callbacks.reader.check_trend", broken)
    x, y = class_data(n=40)
    y[16] = -y[16]
    watch = Watch(built(model, capacity=16), check_every=2)
    watch.fit(model, x, y, batch_size=8, epochs=2)
    assert len(watch.said) == 1 and "over many training steps failed" in watch.said[0]
    assert "ValueError: no such column" in watch.said[0]
    assert [at for _, at in watch.added] == [2, 7]  # each batch checked on
    assert len(watch.history) == 10
