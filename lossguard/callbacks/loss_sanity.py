"""`LossSanityCallback`: every batch's true loss, explained.

The callback coordinates; the mechanism lives in its pieces, each an object
it owns and calls (none imports the callback back):

- `Instrumenter` (`instrument.py`): puts the statistics into Keras' train
  and test steps and takes them out; explains a step that fails;
- `StepLedger` (`ledger.py`): counts the steps the hooks saw and decides
  when a block of rows is due and which rows are new (plain Python);
- `History` (`history.py`): the rows, as typed columns;
- sinks (`sinks.py`, `mlflow_sink.py`): the log file, TensorBoard and
  MLflow, behind one interface (`write_block`, `finding`, ...).

A batch's way: the step writes its row; an end (or begin) hook counts it in
the ledger; when a block is due the callback reads the rows, numbers them,
appends them to the history, runs the checks over the block, records the
findings (root causes first) and hands the block and the findings to the
sinks.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import numpy as np

from lossguard.callbacks import state
from lossguard.callbacks.base import FindingsCallback
from lossguard.callbacks.history import History
from lossguard.callbacks.instrument import Instrumenter, compile_key, steps_per_call
from lossguard.callbacks.ledger import PHASES, StepLedger, logged_loss
from lossguard.callbacks.mlflow_sink import MlflowSink
from lossguard.callbacks.options import Options
from lossguard.callbacks.sinks import Block, LogFile, Sinks, TensorBoard
from lossguard.diagnosis.crashes import weight_mask_crash
from lossguard.diagnosis.faults import check_block, check_crash, check_start
from lossguard.diagnosis.specs import unseen_loss
from lossguard.diagnosis.statistics import MODEL_COLUMNS

logger = logging.getLogger("lossguard")

#: History columns first in order (SPEC), then the model-level statistics
#: (in the schema's order); the rest follow as measured.
LEADING_COLUMNS = (
    "epoch",
    "step",
    "phase",
    "loss",
    "data_loss",
    "aux_loss",
    "running_loss",
    *MODEL_COLUMNS,
)


class LossSanityCallback(FindingsCallback):
    """Watches every batch's true loss, labels, predictions and weights.

    It wraps the model's `compute_loss` while it watches, so the statistics
    are computed inside the train (and test) step on the exact batch, with no
    extra forward pass, and written to a small buffer variable. The buffer is
    read in blocks, and the checks run over a whole block at once: a batch
    hook only counts steps, so the cost per step does not depend on how short
    the step is. Keras' batch `logs["loss"]` is the epoch's running mean;
    `history["loss"]` is the loss *of that batch*.

    Every finding names the exact batch (epoch, step, phase) it was first
    seen on; `action="raise"`/`"stop"` act when its block is read: at most
    `check_every` steps, or about half a second of training (`"auto"`),
    after it. `check_every=1` reads after every batch (for debugging).

    A second `fit` with the same callback, model and compile reuses the
    instrumented train function: it re-traces only when Keras itself would.

    Args:
        action: `"warn"` (one `LossSanityWarning` per root cause), `"raise"`
            (`LossSanityError` with the report, on the first batch with an
            error finding, naming every root cause of that batch), `"stop"`
            (warns, and sets `model.stop_training` there), or `"record"`.
        log_path: Optional `.csv` or `.parquet` path; the history is written
            there as training runs, flushed every epoch (and every
            `flush_every` batches).
        flush_every: Batches between flushes of `log_path` (default 100).
        capacity: Rows the in-graph buffer holds between reads.
        tensorboard_dir: Optional folder: every batch's statistics are also
            written there as TensorBoard scalars (`lossguard/<column>`, at
            the global step), and each finding as text (`lossguard/findings`)
            at the step it was first seen. Open it with
            `tensorboard --logdir DIR` (beside keras.callbacks.TensorBoard's
            own logs, if you like: give it a subfolder such as `logs/lossguard`).
            Needs the tensorboard package (`pip install "lossguard[tensorboard]"`):
            without it the constructor raises `ImportError`, not `fit`.
        predictions: `"auto"` (default) skips the three full-width passes
            over an output that is a float32 Keras softmax: it is a
            probability distribution by construction, so `pred_min`,
            `pred_max` and the row sums can only confirm it (the history
            holds NaN there, and the callback logs once which outputs it
            skipped). Every other output (logits, linear, ReLU, custom
            activations, float16/bfloat16) is measured in full. `"all"`
            measures every output, at the cost of those passes.
        check_every: `"auto"` (read the buffer about every half second of
            training, at most every `capacity // 2` steps, and at the end
            of every epoch and evaluation), or a number of steps.
        vocabulary, vectors: As in `lossguard.diagnose`: the tokenizer's
            words by id and the pre-trained `GloveVectors`; every `Embedding`
            of the vectors' width is checked against them when `fit` starts
            (EMBEDDING_OOV_ROWS, EMBEDDING_MISALIGNED). Layers made by
            `lossguard.glove.glove_embedding` are checked without them.
        mlflow: Log findings to MLflow: each one as a run tag
            `lossguard.<CODE>` and counts as metrics when it is found, the
            report and the plot as artifacts when training ends, in the run
            open when `fit` starts (lossguard starts and ends one where none
            is). Needs `pip install "lossguard[mlflow]"`.
        keep_in_memory: With a `.csv` `log_path`, keep the last this many
            rows in `history` (the file has them all);
            `history.attrs["partial"]` then says rows were left out.

    Example:

    >>> cb = LossSanityCallback(action="record")
    >>> cb.findings
    []
    >>> # model.fit(x, y, callbacks=[cb]); print(cb.report); cb.history
    """

    #: Keras may run the batch hooks in a thread (JAX, PyTorch): they only
    #: count steps and read under a lock.
    async_safe = True

    def __init__(
        self,
        action="warn",
        *,
        log_path=None,
        flush_every=100,
        capacity=1024,
        predictions="auto",
        tensorboard_dir=None,
        check_every="auto",
        keep_in_memory=None,
        vocabulary=None,
        vectors=None,
        mlflow=False,
    ):
        super().__init__(action)
        self.options = options = Options(
            log_path, flush_every, capacity, predictions, tensorboard_dir,
            check_every, keep_in_memory, vocabulary, vectors, mlflow,
        )  # fmt: skip
        for field in dataclasses.fields(Options):  # each argument, as given
            setattr(self, field.name, getattr(options, field.name))
        self.instrumenter = Instrumenter(predictions)
        self.ledger = StepLedger(check_every)
        self.store = None  # the History, made for the first model's keys
        self.log = None if log_path is None else self._log_file()
        sinks = [self.log] if self.log else []
        if tensorboard_dir is not None:
            sinks.append(TensorBoard(options.tensorboard_dir, state.is_chief))
        if mlflow:
            sinks.append(MlflowSink())
        self.sinks = Sinks(sinks, self._warn)
        self.start_codes = frozenset()  # what the configuration showed
        self.checked_specs = None  # the specs the configuration was checked on
        self.active = False  # between a run's start and its end
        self.in_fit = False
        self.finding_step = 0  # the global step of the findings being added
        self.lock = threading.RLock()

    # ------------------------------------------------------------ results
    @property
    def history(self):
        """One row per batch watched (`phase` says which), as a DataFrame."""
        import pandas as pd

        if self.store is None:
            return pd.DataFrame(columns=list(LEADING_COLUMNS))
        return self._frame()

    def _frame(self, start=0):
        collector = self.instrumenter.collector
        prefix = "" if collector.single else "{}/"
        dtypes = {prefix.format(s.name) + "pred_dtype": s.dtype for s in self.specs}
        frame = self.store.frame(LEADING_COLUMNS, dtypes, start=start)
        if not collector.single:
            for key, how in MODEL_COLUMNS.items():
                values = frame[[f"{s.name}/{key}" for s in self.specs]]
                frame[key] = values.min(axis=1) if how == "min" else values.max(axis=1)
            lead = [c for c in LEADING_COLUMNS if c in frame.columns]
            frame = frame[lead + [c for c in frame.columns if c not in lead]]
        return frame

    def _log_file(self):
        return LogFile(
            self.options.log_path,
            self.options.flush_every,
            frame=self._frame,
            total=lambda: self.store.total,
            trim=lambda written: self.store.trim(written),
            is_chief=state.is_chief,
        )

    def _report_history(self):
        return self.history

    @property
    def specs(self):
        """What lossguard knows of each output (refined once a batch ran)."""
        return self.instrumenter.collector.specs

    # ---------------------------------------------------------- a run
    def on_train_begin(self, logs=None):
        self._start(fit=True)

    def on_test_begin(self, logs=None):
        if self.active:  # validation inside fit
            self.ledger.validation_begins()
            return
        self._start(fit=False)  # model.evaluate(..., callbacks=[cb])

    def _start(self, fit):
        model = self._keras_model
        built = self.instrumenter.build(model, compile_key(model), self.capacity)
        if built:
            self.ledger.seen = 0  # a new buffer numbers its steps from 1
            self._make_store()
        self.ledger.start(fit)
        self.in_fit, self.active = fit, True
        unsupported = self.instrumenter.install(model, self._on_crash)
        if unsupported is not None:
            self._unsupported(unsupported)
        self.sinks.call("start", model)
        unseen = unseen_loss(model)
        if unseen is not None and built:
            self._warn(f"lossguard: {unseen}.")
        self.checked_specs = None
        self._check_start()

    def _make_store(self):
        """The history store (kept across fits of the same model)."""
        keys = self.instrumenter.collector.keys
        if self.store is None or self.store.keys != keys:
            if self.store is not None:
                logger.info(
                    "lossguard starts a new history: this model's statistics "
                    "differ from the last one's."
                )
            self.store = History(keys, keep=self.keep_in_memory)
            self.ledger.new_history()
            if self.log is not None:
                self.log.restart()

    def _unsupported(self, reason):
        """Watch what can be watched without the train step: say so once."""
        self.ledger.blind = dict.fromkeys(PHASES, reason)
        self._warn(
            f"lossguard cannot see the batches on this backend: {reason}. It "
            "checks the compile configuration and the model, and records Keras' "
            "running-mean loss (history['running_loss']); training runs as "
            "without it."
        )

    def _check_start(self):
        """The configuration checks, again once the specs are refined."""
        if self.checked_specs is self.specs:
            return
        self.checked_specs = self.specs
        try:
            start = check_start(
                self._keras_model, self.specs, self.vocabulary, self.vectors
            )
        except ValueError as error:  # vocabulary/vectors that do not fit
            self._warn(
                f"lossguard could not check the embeddings against the given "
                f"vocabulary and vectors ({error}); it checks the rest."
            )
            self.vocabulary = self.vectors = None
            start = check_start(self._keras_model, self.specs)
        self.start_codes = frozenset(f.code for f in start)
        self._add_all(start)

    def _end(self):
        self.sinks.call("end", self.report)
        self.instrumenter.uninstall(self._keras_model)
        self.active = False

    # -------------------------------------------------------------- hooks
    def on_epoch_begin(self, epoch, logs=None):
        self.ledger.epoch_begins(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_begin(batch, "train")

    def on_test_batch_begin(self, batch, logs=None):
        self._batch_begin(batch, "validation")

    def on_train_batch_end(self, batch, logs=None):
        self._batch_end(logs, "train")

    def on_test_batch_end(self, batch, logs=None):
        self._batch_end(logs, "validation")

    def _batch_begin(self, batch, phase):
        """Where the end hooks lag the steps (JAX, PyTorch), a due block is
        read here: the begin hooks run on the loop's thread, between steps,
        so reading cannot race a step."""
        self.ledger.begun[phase] = batch
        if not self.instrumenter.between_steps:
            return
        with self.lock:
            if not self.instrumenter.installed or phase in self.ledger.blind:
                return
            pending = self.ledger.begin(phase, steps_per_call(self._keras_model))
            if pending:
                self._read(self.ledger.last_logs[phase] or {}, phase, pending)

    def _batch_end(self, logs, phase):
        """Count the step(s); read when a block is due."""
        ledger = self.ledger
        if self.instrumenter.in_step and phase not in ledger.blind:  # no lock
            ledger.hooks[phase] += 1
            if ledger.count(phase, logs, 1, logged_loss(logs)):
                self._read(logs, phase)
            return
        with self.lock:
            ledger.hooks[phase] += 1
            if phase in ledger.blind:
                self._blind_row(logs, phase)
            elif self.instrumenter.installed:
                lagging = self.instrumenter.between_steps
                running = None if lagging else logged_loss(logs)
                steps = steps_per_call(self._keras_model)
                if ledger.count(phase, logs, steps, running):
                    self._read(logs, phase)

    def on_epoch_end(self, epoch, logs=None):
        with self.lock:
            self._read(None, "train")
            self.sinks.call("flush")

    def on_test_end(self, logs=None):
        with self.lock:
            self._read(None, "validation")
            if self.active and not self.in_fit:
                self._end()

    def on_train_end(self, logs=None):
        with self.lock:
            self._read(None, "train")
            self._end()

    # ------------------------------------------------------------ reading
    def _read(self, logs, phase, carried=0):
        """Record, as one block, the rows written since the last read.

        `logs` is None at the end of a phase (every row is taken); in the
        middle of one, the rows up to the steps the hooks accounted for, or
        every row where a begin hook counted the steps itself (`carried`).
        """
        pending = carried or self.ledger.take_pending(at_end=logs is None)
        if carried and logs is None:
            self.ledger.unread = 0
        if not self.instrumenter.installed or (pending == 0 and logs is not None):
            return
        buffer = self.instrumenter.read(self._keras_model)
        steps = buffer[:, 0]
        fresh = self.ledger.fresh(steps, middle=logs is not None, carried=carried)
        if fresh.size == 0:
            if pending and logs is not None:
                self._go_blind(phase, logs)
            return
        lost = self.ledger.read(int(steps[fresh[0]]), int(steps[fresh[-1]]))
        if lost:
            logger.warning(
                "lossguard lost %d steps' statistics (more steps ran between "
                "reads than capacity=%d holds).",
                lost,
                self.instrumenter.capacity,
            )
        self._check_start()
        self._record_block(buffer[fresh])
        limit = self.instrumenter.rows.read_every_max
        if self.log_path:  # the log is flushed at reads
            limit = min(limit, self.flush_every)
        self.ledger.adapt(len(fresh), time.perf_counter(), limit)

    def _record_block(self, block):
        """Append a read block to the history, phase by phase (a block at the
        end of an epoch holds both, in step order), check it, and hand it to
        the sinks."""
        phases = block[:, 1].astype(int)
        values = block[:, len(state.HEADER) :]
        lagging = self.instrumenter.between_steps
        spe = steps_per_call(self._keras_model)
        for code in np.unique(phases):
            phase = PHASES[code]
            rows = values[phases == code]
            n = len(rows)
            if lagging:
                running = block[phases == code, 2]
            else:
                running = self.ledger.running_column(phase, n, spe)
            steps, global_steps = self.ledger.number(phase, n)
            numbers = self.store.append(
                rows, self.ledger.epoch, steps, phase, running, global_steps
            )
            self._check_rows(rows, numbers, steps, phase, global_steps)
            keys = self.instrumenter.collector.keys
            self.sinks.call(
                "write_block", Block(rows, keys, phase, steps, global_steps)
            )

    def _check_rows(self, rows, numbers, steps, phase, global_steps):
        keys = self.instrumenter.collector.keys
        columns = {key: rows[:, i] for i, key in enumerate(keys)}
        found = check_block(columns, self.specs, known=self.start_codes)
        by_batch = {}
        for i, finding in found:
            by_batch.setdefault(i, []).append(finding)
        for i, batch in by_batch.items():
            self.store.findings[numbers[i]] = ";".join(f.code for f in batch)
            self.finding_step = int(global_steps[i])  # where the sinks show it
            where = {"epoch": self.ledger.epoch, "step": int(steps[i]), "phase": phase}
            self._add_all([dataclasses.replace(f, **where) for f in batch])

    # --------------------------------------------------- what it cannot see
    def _go_blind(self, phase, logs):
        """A step never called compute_loss: say so once per phase."""
        reason = self.instrumenter.blind_reason(self._keras_model, phase)
        self._warn(
            f"lossguard cannot see the {phase} batches of this model: {reason}. "
            "It records only Keras' running-mean loss "
            "(history['running_loss']), so it cannot check labels, "
            "predictions or weights there."
        )
        # A row for each step whose hook has run and that has none (on JAX
        # the hooks lag: the later ones add theirs as they come).
        owed = self.ledger.go_blind(phase, reason)
        for i in range(owed):
            self._blind_row(logs if i == owed - 1 else None, phase)

    def _blind_row(self, logs, phase):
        """A row with Keras' running loss only, for a batch lossguard cannot see."""
        nan = np.full((1, len(self.store.keys)), np.nan, "float32")
        steps, global_steps = self.ledger.number(phase, 1)
        self.store.append(
            nan, self.ledger.epoch, steps, phase, [logged_loss(logs)], global_steps
        )

    # ------------------------------------------------- findings and crashes
    def _on_finding(self, finding):
        self.sinks.call("finding", finding, self.report, self.finding_step)

    def _before_raise(self):
        self._end()

    def _on_crash(self, error, phase):
        with self.lock:
            try:
                self._read(None, "train")
            except Exception:  # noqa: BLE001 - the step's state may be gone
                logger.debug("lossguard could not read the last rows", exc_info=True)
            self.instrumenter.uninstall(self._keras_model)
        weights = weight_mask_crash(error)
        if weights is not None:
            logger.error("%s", weights)
            if hasattr(error, "add_note"):  # Python 3.11+
                error.add_note(f"lossguard: {weights}")
        # Raised from here, LossSanityError carries the crash as its context.
        # The batch whose step failed: the last one a begin hook announced
        # (the begin hooks run on the loop's thread, before their step).
        step = self.ledger.begun.get(phase)
        found = check_crash(error, self.specs, self.ledger.epoch, step, phase)
        self._add_all(found)
        self._end()  # on_train_end will not come
