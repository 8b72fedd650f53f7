"""`LossSanityCallback`: every batch's true loss, explained.

The callback coordinates; the mechanism lives in its pieces, each an object
it owns and calls (none imports the callback back):

- `Instrumenter` (`instrument.py`): puts the statistics into Keras' train
  and test steps and takes them out; explains a step that fails;
- `StepLedger` (`ledger.py`): counts the steps the hooks saw and decides
  when a block of rows is due and which rows are new (plain Python);
- `BlockReader` (`reader.py`): reads a due block, numbers it, appends it to
  the `History` (`history.py`: the rows, as typed columns), checks it and
  hands it to the sinks;
- sinks (`sinks.py`, `mlflow_sink.py`): the log file, TensorBoard and
  MLflow, behind one interface (`write_block`, `finding`, ...).

A batch's way: the step writes its row; an end (or begin) hook counts it in
the ledger; when a block is due the reader reads the rows, numbers them,
appends them to the history and runs the checks over the block; the callback
records the findings (root causes first, `base.py`) and hands them to the
sinks.
"""

from __future__ import annotations

import dataclasses
import logging

from lossguard.callbacks import state
from lossguard.callbacks.base import FindingsCallback
from lossguard.callbacks.history import History, model_frame
from lossguard.callbacks.instrument import Instrumenter, compile_key
from lossguard.callbacks.ledger import PHASES, StepLedger
from lossguard.callbacks.mlflow_sink import MlflowSink
from lossguard.callbacks.options import Options
from lossguard.callbacks.reader import BlockReader
from lossguard.callbacks.sinks import LogFile, Sinks, TensorBoard
from lossguard.callbacks.start import StartChecks
from lossguard.diagnosis.crashes import annotate_weight_mask_crash
from lossguard.diagnosis.faults import check_crash
from lossguard.diagnosis.specs import unseen_loss
from lossguard.diagnosis.statistics import MODEL_COLUMNS

logger = logging.getLogger("lossguard")


class LossSanityCallback(FindingsCallback):
    """Watches every batch's true loss, labels, predictions and weights.

    While it watches, it wraps the model's `compute_loss`: the statistics are
    computed inside the train (and test) step on the exact batch, with no
    extra forward pass, into a small buffer read in blocks; the checks run
    over a whole block at once. Keras' batch `logs["loss"]` is the epoch's
    running mean; `history["loss"]` is the loss *of that batch*. Every
    finding names the batch (epoch, step, phase) it was first seen on. A
    second `fit` with the same callback, model and compile re-traces only
    when Keras itself would.

    Args:
        action: `"warn"` (one `LossSanityWarning` per root cause), `"raise"`
            (`LossSanityError` with the report, on the first batch with an
            error finding), `"stop"` (warns, and sets `model.stop_training`)
            or `"record"`. Raise and stop act when the batch's block is read.
        log_path: Optional `.csv` or `.parquet` path for the history, flushed
            every epoch and every `flush_every` batches (default 100).
        capacity: Rows the in-graph buffer holds between reads.
        predictions: `"auto"` (default) skips the three full-width passes
            over an output that is a float32 Keras softmax (a distribution by
            construction: `pred_min`, `pred_max` and the row sums are NaN
            there, and the callback logs which outputs it skipped); `"all"`
            measures every output.
        tensorboard_dir: Optional folder for TensorBoard scalars
            (`lossguard/<column>`) and findings (`lossguard/findings`), at
            the global step. Needs `pip install "lossguard[tensorboard]"`.
        check_every: `"auto"` (read about every half second of training, and
            at the end of every epoch and evaluation) or a number of steps;
            1 reads after every batch (for debugging).
        keep_in_memory: With a `.csv` `log_path`, keep only the last this
            many rows in `history` (`history.attrs["partial"]` says so).
        vocabulary, vectors: As in `lossguard.diagnose`: every `Embedding` of
            the vectors' width is checked against them when `fit` starts.
        mlflow: Log findings to the MLflow run open when `fit` starts (tags,
            counts; the report and plot as artifacts at the end). Needs
            `pip install "lossguard[mlflow]"`.
        internals: `True` also reads, inside each training step, the
            gradient norm of every layer as the optimizer is given it, and
            the share of each ReLU layer's units that output 0 on the whole
            batch (history columns `grad:<layer>`, `learning_rate`,
            `dead:<layer>`; `EXPLODING_GRADIENTS`, `VANISHING_GRADIENTS`,
            `DEAD_UNITS`). `False` (default) leaves the optimizer and the
            layers as they are: the reads cost about 7% of a 0.4 ms step
            (docs/performance.md), within the noise of a 49 ms one.

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
        internals=False,
    ):
        super().__init__(action)
        self.options = options = Options(
            log_path, flush_every, capacity, predictions, tensorboard_dir,
            check_every, keep_in_memory, vocabulary, vectors, mlflow, internals,
        )  # fmt: skip
        for field in dataclasses.fields(Options):  # each argument, as given
            setattr(self, field.name, getattr(options, field.name))
        self.instrumenter = Instrumenter(predictions, options.internals)
        self.ledger = StepLedger(check_every)
        self.store = None  # the History, made for the first model's keys
        self.log = None if log_path is None else self._log_file()
        sinks = [self.log] if self.log else []
        if tensorboard_dir is not None:
            sinks.append(TensorBoard(options.tensorboard_dir, state.is_chief))
        if mlflow:
            sinks.append(MlflowSink())
        self.sinks = Sinks(sinks, self._warn)
        self.reader = BlockReader(
            self.instrumenter, self.ledger, self.sinks, self._warn,
            add=self._add_batch, before_block=self._check_start,
            flush_every=flush_every if log_path else None,
        )  # fmt: skip
        self.start_checks = StartChecks(options.vocabulary, options.vectors, self._warn)
        self.active = False  # between a run's start and its end
        self.in_fit = False
        self.finding_step = 0  # the global step of the findings being added

    # ------------------------------------------------------------ results
    @property
    def history(self):
        """One row per batch watched (`phase` says which), as a DataFrame."""
        return self._frame()

    def _frame(self, start=None):
        collector = self.instrumenter.collector  # None before the first fit
        specs, single = (collector.specs, collector.single) if collector else ((), 1)
        return model_frame(self.store, specs, single, MODEL_COLUMNS, start)

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
        self.start_checks.reset()
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
            self.store = self.reader.store = History(keys, keep=self.keep_in_memory)
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
        found = self.start_checks.run(self._keras_model, self.specs)
        self.reader.known = self.start_checks.known
        self._add_all(found)

    def _end(self):
        self.sinks.call("end", self.report)
        self.instrumenter.uninstall(self._keras_model)
        self.active = False

    # -------------------------------------------------------------- hooks
    def on_epoch_begin(self, epoch, logs=None):
        self.ledger.epoch_begins(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        self.reader.batch_begin(self._keras_model, batch, "train")

    def on_test_batch_begin(self, batch, logs=None):
        self.reader.batch_begin(self._keras_model, batch, "validation")

    def on_train_batch_end(self, batch, logs=None):
        self.reader.batch_end(self._keras_model, logs, "train")

    def on_test_batch_end(self, batch, logs=None):
        self.reader.batch_end(self._keras_model, logs, "validation")

    def on_epoch_end(self, epoch, logs=None):
        with self.reader.lock:
            self._read(None, "train")
            self.sinks.call("flush")

    def on_test_end(self, logs=None):
        with self.reader.lock:
            self._read(None, "validation")
            if self.active and not self.in_fit:
                self._end()

    def on_train_end(self, logs=None):
        with self.reader.lock:
            self._read(None, "train")
            self._end()

    def _read(self, logs, phase, carried=0):
        """Read the rows written since the last read (see `BlockReader.read`)."""
        self.reader.read(self._keras_model, logs, phase, carried)

    # ------------------------------------------------- findings and crashes
    def _add_batch(self, findings, global_step):
        self.finding_step = global_step  # where the sinks show them
        self._add_all(findings)

    def _on_finding(self, finding):
        self.sinks.call("finding", finding, self.report, self.finding_step)

    def _before_raise(self):
        self._end()

    def _on_crash(self, error, phase):
        with self.reader.lock:
            try:
                self._read(None, "train")
            except Exception:  # noqa: BLE001 - the step's state may be gone
                logger.debug("lossguard could not read the last rows", exc_info=True)
            self.instrumenter.uninstall(self._keras_model)
        annotate_weight_mask_crash(error)
        # Raised from here, LossSanityError carries the crash as its context.
        # The batch whose step failed: the last one a begin hook announced
        # (the begin hooks run on the loop's thread, before their step).
        step = self.ledger.begun.get(phase)
        found = check_crash(error, self.specs, self.ledger.epoch, step, phase)
        self._add_all(found)
        self._end()  # on_train_end will not come
