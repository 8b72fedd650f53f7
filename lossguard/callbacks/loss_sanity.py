"""`LossSanityCallback`: every batch's true loss, explained."""

from __future__ import annotations

import logging
import math
import os
import threading
import time

import keras
import numpy as np
from keras import ops

from lossguard import backends
from lossguard.callbacks import state
from lossguard.callbacks.base import FindingsCallback
from lossguard.callbacks.history import History
from lossguard.callbacks.mlflow_sink import MlflowSink
from lossguard.diagnosis.collect import (
    BatchCollector,
    accepts_training,
    call_compute_loss,
)
from lossguard.diagnosis.crashes import weight_mask_crash
from lossguard.diagnosis.faults import check_block, check_crash, check_start
from lossguard.diagnosis.specs import output_specs, unseen_loss
from lossguard.diagnosis.statistics import MODEL_COLUMNS
from lossguard.keras_compat import get_mask, set_mask

logger = logging.getLogger("lossguard")

PREDICTIONS = ("auto", "all")
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
_PHASES = ("train", "validation")
#: With check_every="auto", the buffer is read about this often (seconds of
#: training): the most `action="raise"`/`"stop"` can lag behind a bad batch.
READ_EVERY_S = 0.5


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
        action: `"warn"` (one `LossSanityWarning` per code), `"raise"`
            (`LossSanityError` with the report on the first error finding),
            `"stop"` (warns, and sets `model.stop_training` on the first
            error finding), or `"record"`.
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
        if predictions not in PREDICTIONS:
            raise ValueError(
                f"`predictions` must be one of {PREDICTIONS}. "
                f"Received: predictions={predictions!r}."
            )
        if not isinstance(capacity, int) or capacity < 2:
            raise ValueError(
                "`capacity` must be an int of at least 2. "
                f"Received: capacity={capacity!r}."
            )
        if log_path is not None and not str(log_path).endswith((".csv", ".parquet")):
            raise ValueError(
                "`log_path` must end in .csv or .parquet. "
                f"Received: log_path={log_path!r}."
            )
        if log_path is not None:
            folder = os.path.dirname(os.path.abspath(os.fspath(log_path)))
            if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
                raise ValueError(
                    f"`log_path` must be in a folder that exists and can be "
                    f"written. Received: log_path={log_path!r} (folder "
                    f"{folder!r}). Create the folder first."
                )
        if str(log_path or "").endswith(".parquet") and not _has("pyarrow"):
            raise ImportError(
                "A .parquet `log_path` needs the pyarrow package, which is not "
                f"installed. Received: log_path={log_path!r}. Install it with "
                "pip install pyarrow, or log to a .csv path."
            )
        if not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(
                "`flush_every` must be a positive int (batches). "
                f"Received: flush_every={flush_every!r}."
            )
        if check_every != "auto" and not (
            isinstance(check_every, int) and check_every >= 1
        ):
            raise ValueError(
                "`check_every` must be 'auto' or a positive int (steps). "
                f"Received: check_every={check_every!r}."
            )
        if keep_in_memory is not None and not (
            isinstance(keep_in_memory, int) and keep_in_memory >= 1
        ):
            raise ValueError(
                "`keep_in_memory` must be None or a positive int (rows). "
                f"Received: keep_in_memory={keep_in_memory!r}."
            )
        if keep_in_memory is not None and not str(log_path or "").endswith(".csv"):
            raise ValueError(
                "`keep_in_memory` needs a .csv `log_path` that keeps every row. "
                f"Received: log_path={log_path!r}."
            )
        self.log_path = None if log_path is None else os.fspath(log_path)
        self.flush_every = flush_every
        self.capacity = capacity
        self.predictions = predictions
        self.check_every = check_every
        self.keep_in_memory = keep_in_memory
        if (vocabulary is None) != (vectors is None):
            raise ValueError(
                "Pass `vocabulary` and `vectors` together (the tokenizer's words "
                "by id and the GloveVectors the embedding came from). Received: "
                f"vocabulary={'None' if vocabulary is None else 'given'}, "
                f"vectors={'None' if vectors is None else 'given'}."
            )
        self.vocabulary = vocabulary
        self.vectors = vectors
        if mlflow and not _has("mlflow"):
            raise ImportError(
                "`mlflow=True` needs the mlflow package, which is not installed. "
                'Install it with pip install "lossguard[mlflow]", or leave '
                "mlflow=False."
            )
        self.mlflow = bool(mlflow)
        self._mlflow = MlflowSink() if mlflow else None
        if tensorboard_dir is not None and not _has("tensorboard"):
            raise ImportError(
                "`tensorboard_dir` needs the tensorboard package, which is not "
                f"installed. Received: tensorboard_dir={tensorboard_dir!r}. "
                'Install it with pip install "lossguard[tensorboard]", or leave '
                "tensorboard_dir=None."
            )
        self.tensorboard_dir = (
            None if tensorboard_dir is None else os.fspath(tensorboard_dir)
        )
        self._writer = None
        self._store = None
        self._flushed = 0
        self._train_rows = 0  # training batches recorded (the global step)
        self._finding_step = 0  # the global step of the finding being added
        self._installed = False
        self._in_step = False  # the hooks run right after their one step (TF)
        self._active = False
        self._graph = None  # the instrumented step functions, reused across fits
        self._traces = 0
        self._lock = threading.RLock()
        #: The batch index of the last begin hook, per phase (a crash's batch).
        self._begun = {"train": None, "validation": None}

    # ------------------------------------------------------------ results
    @property
    def history(self):
        """One row per batch watched (`phase` says which), as a DataFrame."""
        import pandas as pd

        if self._store is None:
            return pd.DataFrame(columns=list(LEADING_COLUMNS))
        return self._frame()

    def _frame(self, start=0):
        frame = self._store.frame(LEADING_COLUMNS, self._dtypes(), start=start)
        if not self._collector.single:
            for key, how in MODEL_COLUMNS.items():
                values = frame[[f"{s.name}/{key}" for s in self.specs]]
                frame[key] = values.min(axis=1) if how == "min" else values.max(axis=1)
            lead = [c for c in LEADING_COLUMNS if c in frame.columns]
            frame = frame[lead + [c for c in frame.columns if c not in lead]]
        return frame

    def _dtypes(self):
        prefix = "" if self._collector.single else "{}/"
        return {prefix.format(s.name) + "pred_dtype": s.dtype for s in self.specs}

    def _report_history(self):
        return self.history

    @property
    def specs(self):
        """What lossguard knows of each output (refined once a batch ran)."""
        return self._collector.specs

    # ------------------------------------------------------- installation
    def on_train_begin(self, logs=None):
        self._start(fit=True)

    def on_test_begin(self, logs=None):
        if self._active:  # validation inside fit
            self._steps["validation"] = 0
            self._hooks["validation"] = 0
            self._open = None
            return
        self._start(fit=False)  # model.evaluate(..., callbacks=[cb])

    def _start(self, fit):
        model = self._keras_model
        key = _compile_key(model)
        reuse = self._graph is not None and self._graph["key"] == key
        if not reuse:
            self._build(model, key)
        self._epoch = 0 if fit else None
        self._in_fit = fit
        self._steps = {"train": 0, "validation": 0}  # rows recorded per phase
        self._hooks = {"train": 0, "validation": 0}  # steps their hooks reported
        self._pending = 0
        self._unread = 0  # JAX: steps begun since the last read
        self._open = None  # JAX: the phase whose step the last begin hook opened
        # The step number the hooks so far account for: a read takes rows up
        # to it (on JAX and PyTorch the next step may already have written
        # its row when a hook runs in a thread; that row waits for its hook).
        self._expected = self._seen
        self._running = {"train": [], "validation": []}  # Keras' loss per hook
        self._logs = {"train": {}, "validation": {}}  # the last hook's logs
        self._blind = {}
        self._begun = {"train": None, "validation": None}
        self._every = 1 if self.check_every == "auto" else self.check_every
        self._last_read = None
        self._active = True
        self._fit_thread = threading.get_ident()
        unsupported = self._install()
        if unsupported is not None:
            self._unsupported(unsupported)
        self._sink("start")
        unseen = unseen_loss(self._keras_model)
        if unseen is not None and not reuse:
            self._warn(f"lossguard: {unseen}.")
        self._checked_specs = None
        self._check_start()

    def _unsupported(self, reason):
        """Watch what can be watched without the train step: say so once."""
        self._blind = {"train": reason, "validation": reason}
        self._warn(
            f"lossguard cannot see the batches on this backend: {reason}. It "
            "checks the compile configuration and the model, and records Keras' "
            "running-mean loss (history['running_loss']); training runs as "
            "without it."
        )

    def _build(self, model, key):
        """The collector, the buffer and the instrumented step functions."""
        self._collector = BatchCollector(model, output_specs(model))
        self._capacity = max(self.capacity, 2 * _steps_per_call(model))
        width = len(self._collector.keys) + len(state.HEADER)
        self._make_store()
        self._graph = {"key": key}
        # Under tf.distribute: mirrored, and only the first replica's write
        # counts (every replica holds the same, global-batch row).
        self._rows = state.rows_for(model, self._capacity, width, self._deferred_row)
        # The blocks are read between steps, from the begin hooks on the
        # loop's thread, where the end hooks lag the steps (JAX, PyTorch)
        # and reading needs that thread: JAX syncs its carried state, and
        # PyTorch computes the kept steps' rows (its ops in Keras' hook
        # thread would run beside the step, on the same cores).
        self._between_steps = state.needs_carried_state() or self._rows.deferred
        self._tracker = state.loss_tracker(model)
        self._seen = 0
        self._trace_error = None
        self._skip_logged = False
        self._custom_step = {
            phase: getattr(type(model), f"{phase}_step")
            is not getattr(keras.Model, f"{phase}_step")
            and f"{phase}_step" in _own_methods(type(model))
            for phase in ("train", "test")
        }

    def _make_store(self):
        """The history store (kept across fits of the same model)."""
        if self._store is None or self._store.keys != self._collector.keys:
            if self._store is not None:
                logger.info(
                    "lossguard starts a new history: this model's statistics "
                    "differ from the last one's."
                )
            self._store = History(self._collector.keys, keep=self.keep_in_memory)
            self._flushed, self._train_rows = 0, 0

    def _check_start(self):
        """The configuration checks, again once the specs are refined."""
        if self._checked_specs is self.specs:
            return
        self._checked_specs = self.specs
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
        self._start_codes = frozenset(f.code for f in start)
        self._add_all(start)

    def _install(self):
        """Wrap compute_loss and the step functions; why it cannot, or None."""
        model = self._keras_model
        self._host = None
        backend = backends.current()
        if not backend.watched:
            return (
                f"lossguard watches the {', '.join(state.WATCHED)} backends' "
                f"train steps, not {backends.name()}'s"
            )
        try:
            self._host = state.attach(model, self._rows.variables)
        except Exception as error:  # noqa: BLE001 - never break the user's fit
            if state.needs_carried_state():
                return (
                    "its statistics could not join the state Keras carries "
                    f"({type(error).__name__}: {error})"
                )
        if self._host is None and state.needs_carried_state():
            return (
                "its train step is a pure function of the state Keras carries, "
                "and this model has no compiled loss tracker to carry "
                "lossguard's statistics in"
            )
        had_own = "compute_loss" in vars(model)
        self._restore = (had_own, vars(model).get("compute_loss"))
        original = model.compute_loss
        takes_training = accepts_training(original)

        def compute_loss(
            x=None, y=None, y_pred=None, sample_weight=None, training=True
        ):
            loss = call_compute_loss(
                original, x, y, y_pred, sample_weight, training, takes_training
            )
            if loss is not None:
                self._record_in_graph(x, y, y_pred, sample_weight, loss, training)
            return loss

        model.compute_loss = compute_loss
        for phase in ("train", "test"):
            name = f"{phase}_function"
            if phase not in self._graph:
                getattr(model, f"make_{phase}_function")(force=True)
                self._graph[phase] = self._explained(
                    getattr(model, name), "train" if phase == "train" else "validation"
                )
            setattr(model, name, self._graph[phase])
        self._installed = True
        # TensorFlow runs every hook on the loop's thread, right after its
        # step: with one step a call, a batch hook needs no lock and counts 1.
        self._in_step = (
            backend.hooks_follow_each_step
            and not self._between_steps
            and _steps_per_call(model) == 1
        )
        return None

    def _explained(self, inner, phase):
        """The step function, explaining a crash before it reaches the user."""

        def step_function(*args):
            try:
                return inner(*args)
            except Exception as error:  # noqa: BLE001 - re-raised below
                if not _end_of_data(error):
                    self._on_crash(error, phase)
                raise

        return step_function

    def _uninstall(self):
        if not self._installed:
            return
        model = self._keras_model
        had_own, previous = self._restore
        if had_own:
            model.compute_loss = previous
        else:
            vars(model).pop("compute_loss", None)
        # Keras makes plain step functions again when it needs them; the
        # instrumented ones stay cached here for this callback's next fit.
        # From a hook Keras runs in a thread (action="raise" on PyTorch), the
        # loop is still running and calls train_function again before the
        # error reaches it: leave the functions (they call the restored
        # compute_loss) rather than pull them from under it.
        if threading.get_ident() == self._fit_thread:
            model.train_function = None
            model.test_function = None
        if self._host is not None:
            # JAX: write the carried state back while its list still matches
            # model.metrics_variables (Keras syncs again when fit ends, also
            # after a raise from a hook).
            try:
                state.sync(model)
            except Exception:  # noqa: BLE001 - a crashed step's state may be gone
                logger.debug("lossguard could not sync the state", exc_info=True)
            self._host.unbind()
        self._installed = False
        self._in_step = False

    def _record_in_graph(self, x, y, y_pred, sample_weight, loss, training):
        """Runs in the train or test step (while Keras traces it, or on every
        step where it is eager): the step's row, or what it is computed from."""
        self._traces += 1
        try:
            tracker = self._tracker
            if self._rows.deferred:  # eager PyTorch: computed in blocks
                self._collector.refine(y_pred)
                masks = [get_mask(t) for t in state.flatten(y_pred)]
                made = (y_pred, loss, masks, self._collector.extra_terms())
                self._rows.keep((x, y, sample_weight), made, training)
                return
            step = ops.convert_to_tensor(0.0)  # numbered at the read
            phase = ops.convert_to_tensor(0.0 if training else 1.0)
            loss_state = None
            if tracker is not None and state.needs_carried_state():
                loss_state = (tracker.total, tracker.count)
            running = self._running_loss(x, loss, loss_state)
            head = (step, phase, running)
            row = self._packed_row(x, y, y_pred, sample_weight, loss, head=head)
            self._rows.write(row)
        except Exception as error:  # noqa: BLE001 - never break the user's fit
            # Eager, this runs on every step: a failure here costs lossguard
            # its rows, never the user their step.
            self._trace_error = error
            logger.debug("lossguard could not build its statistics", exc_info=True)

    def _deferred_row(self, data, made):
        """A kept step's row after its step number and phase: Keras' running
        loss after the step, then the statistics (see `state.DeferredRows`)."""
        x, y, sample_weight = data
        y_pred, loss, masks, extra_terms, total, count = made
        loss_state = None if total is None else (total, count)
        running = self._running_loss(x, loss, loss_state)
        return self._packed_row(
            x, y, y_pred, sample_weight, loss, masks, extra_terms, head=(running,)
        )

    def _packed_row(
        self, x, y, y_pred, sample_weight, loss, masks=None, extra_terms=None, head=()
    ):
        """One step's statistics as one float32 vector after the scalars
        `head`; computed after the step, with the outputs' `masks` and the
        step's `extra_terms`."""
        if masks is not None:  # detached outputs lost theirs
            for output, mask in zip(state.flatten(y_pred), masks, strict=True):
                if mask is not None:
                    set_mask(output, mask)
        stats = self._collector.row(
            x,
            y,
            y_pred,
            sample_weight,
            loss,
            predictions=self.predictions,
            extra_terms=extra_terms,
        )
        if self._collector.skipped and not self._skip_logged:
            self._skip_logged = True
            logger.info(
                "lossguard skips the prediction range statistics of %s: a "
                "float32 Keras softmax is a distribution by construction "
                "(predictions='all' measures them anyway).",
                ", ".join(self._collector.skipped),
            )
        return self._collector.pack(stats, head)

    def _running_loss(self, x, loss, loss_state):
        """Keras' running-mean loss after this step, from its loss tracker's
        `(total, count)` before the step's update, where the hooks that
        carry it lag the steps; NaN without them (the hooks report it)."""
        nan = ops.convert_to_tensor(float("nan"))
        inputs = keras.tree.flatten(x) if x is not None else []
        if loss_state is None or not inputs:
            return nan
        total, count = loss_state
        try:  # Keras weighs each step's loss by its batch size
            n = ops.cast(ops.shape(inputs[0])[0], "float32")
            loss = ops.cast(loss, "float32")
            return (ops.cast(total, "float32") + loss * n) / (
                ops.cast(count, "float32") + n
            )
        except Exception:  # noqa: BLE001 - a statistic, never the step
            return nan

    # ------------------------------------------------------------- hooks
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._steps["train"] = 0
        self._hooks["train"] = 0
        self._open = None

    def on_train_batch_begin(self, batch, logs=None):
        self._begun["train"] = batch
        self._batch_begin("train")

    def on_test_batch_begin(self, batch, logs=None):
        self._begun["validation"] = batch
        self._batch_begin("validation")

    def on_train_batch_end(self, batch, logs=None):
        self._batch_end(batch, logs, "train")

    def on_test_batch_end(self, batch, logs=None):
        self._batch_end(batch, logs, "validation")

    def _batch_begin(self, phase):
        """Where the state is carried (JAX), a due block is read here: the
        begin hooks run on the loop's thread, between steps, so syncing the
        state cannot race it; the end hooks run in a thread and lag the
        steps (Keras dispatches them asynchronously), so the steps are
        counted here too."""
        if not self._between_steps:
            return
        with self._lock:
            if not self._installed or phase in self._blind:
                return
            if self._open == phase:  # the previous begin's step has run
                self._unread += _steps_per_call(self._keras_model)
            self._open = phase
            if self._unread >= self._every:
                pending, self._unread = self._unread, 0
                self._read(self._logs[phase] or {}, phase, pending=pending)

    def _batch_end(self, batch, logs, phase):
        """Count the step(s); read the buffer when a block is due."""
        if self._in_step and phase not in self._blind:  # no lock (`_install`)
            self._hooks[phase] += 1
            self._count_steps(logs, phase, 1)
            return
        with self._lock:
            self._hooks[phase] += 1
            if phase in self._blind:
                self._blind_row(logs, phase)
            elif self._installed:
                self._count_steps(logs, phase, _steps_per_call(self._keras_model))

    def _count_steps(self, logs, phase, steps):
        self._pending += steps
        self._expected += steps
        self._logs[phase] = logs or {}
        if self._between_steps:
            return  # read at the next begin hook, with the running loss
        self._running[phase].append(_scalar(logs, "loss"))
        if self._pending >= self._every:
            self._read(logs, phase)

    def on_epoch_end(self, epoch, logs=None):
        with self._lock:
            self._read(None, "train")
            self._flush()
            if self._writer is not None:
                self._writer.flush()

    def on_test_end(self, logs=None):
        with self._lock:
            self._read(None, "validation")
            if self._active and not self._in_fit:
                self._end()

    def on_train_end(self, logs=None):
        with self._lock:
            self._read(None, "train")
            self._end()

    def _end(self):
        self._flush()
        self._close_writer()
        self._uninstall()
        self._active = False
        self._sink("end", self.report)

    def _sink(self, what, *args):
        """Call the MLflow sink, if any; a failure there is said once and
        stops the sink, never the user's training."""
        if self._mlflow is None:
            return
        try:
            getattr(self._mlflow, what)(*args)
        except Exception as error:  # noqa: BLE001 - never break the user's fit
            self._mlflow = None
            self._warn(
                f"lossguard stopped logging to MLflow ({type(error).__name__}: "
                f"{error}); it watches the training as before."
            )

    # ------------------------------------------------------------ reading
    def _read(self, logs, phase, pending=None):
        """Record, as one block, the rows written since the last read.

        `logs` is None at the end of a phase (every row is taken); in the
        middle of one, the rows up to the steps the hooks accounted for, or
        every row where the read counted the steps itself (`pending`).
        """
        carried = pending is not None
        if pending is None:
            pending, self._pending = self._pending, 0
        if logs is None:
            self._unread = 0
        if not self._installed or (pending == 0 and logs is not None):
            return
        buffer = self._rows.numpy(self._keras_model)
        steps = buffer[:, 0]
        due = steps > self._seen
        if logs is not None and not carried:  # a block in the middle of a phase
            due &= steps <= self._expected
        fresh = np.flatnonzero(due)
        if fresh.size == 0:
            if pending and logs is not None:
                self._go_blind(phase, logs)
            return
        fresh = fresh[np.argsort(steps[fresh])]
        first_new = int(steps[fresh[0]])
        if first_new > self._seen + 1:
            logger.warning(
                "lossguard lost %d steps' statistics (more steps ran between "
                "reads than capacity=%d holds).",
                first_new - self._seen - 1,
                self._capacity,
            )
        self._seen = int(steps[fresh[-1]])
        self._expected = max(self._expected, self._seen)
        self._check_start()
        self._record_block(buffer[fresh])
        self._adapt(len(fresh))
        if self.log_path and self._store.total - self._flushed >= self.flush_every:
            self._flush()

    def _adapt(self, steps):
        """check_every="auto": read about every READ_EVERY_S of training."""
        now = time.perf_counter()
        if self.check_every == "auto" and self._last_read is not None and steps:
            per_step = (now - self._last_read) / steps
            limit = self._rows.read_every_max
            if self.log_path:  # the log is flushed at reads
                limit = min(limit, self.flush_every)
            self._every = int(min(limit, max(1, READ_EVERY_S / max(per_step, 1e-6))))
        self._last_read = now

    def _record_block(self, block):
        phases = block[:, 1].astype(int)
        values = block[:, len(state.HEADER) :]
        # A block holds train rows, or validation rows, or both (the reads at
        # the end of an epoch): in step order, each phase numbered on its own.
        for code in np.unique(phases):
            phase = _PHASES[code]
            rows = values[phases == code]
            n = len(rows)
            steps = self._steps[phase] + np.arange(n)
            self._steps[phase] += n
            running_col = (
                block[phases == code, 2]
                if self._between_steps
                else self._running_column(phase, n)
            )
            before = self._train_rows
            global_steps = (
                before + np.arange(n) if phase == "train" else np.full(n, before)
            )
            numbers = self._store.append(
                rows, self._epoch, steps, phase, running_col, global_steps
            )
            self._check_rows(rows, numbers, steps, phase, global_steps)
            self._summaries(rows, phase, global_steps)

    def _running_column(self, phase, n):
        """Keras' running loss of each batch hook, on the last row it covered
        (every row, unless steps_per_execution > 1)."""
        column = np.full(n, np.nan, "float32")
        seen, self._running[phase] = self._running[phase], []
        spe = _steps_per_call(self._keras_model)
        values = seen[-(n // spe or 1) :]
        column[np.minimum(n - 1, spe * np.arange(1, len(values) + 1) - 1)] = values
        return column

    def _check_rows(self, rows, numbers, steps, phase, global_steps):
        columns = {key: rows[:, i] for i, key in enumerate(self._collector.keys)}
        found = check_block(columns, self.specs, known=self._start_codes)
        if phase == "train":
            self._train_rows += len(rows)
        codes = {}
        for i, finding in found:
            codes.setdefault(numbers[i], []).append(finding.code)
        for number, listed in codes.items():
            self._store.findings[number] = ";".join(listed)
        by_batch = {}
        for i, finding in found:
            by_batch.setdefault(i, []).append(finding)
        for i, batch in by_batch.items():
            self._finding_step = int(global_steps[i])  # where TensorBoard shows it
            at = [_at(f, self._epoch, int(steps[i]), phase) for f in batch]
            self._add_all(at)

    # ------------------------------------------------------------ helpers
    def _summaries(self, rows, phase, global_steps):
        """TensorBoard scalars of a block (finite numbers only)."""
        writer = self._tensorboard()
        if writer is None:
            return
        import tensorflow as tf

        tag = "lossguard" if phase == "train" else "lossguard/validation"
        for values, step in zip(rows, global_steps, strict=True):
            with writer.as_default(step=int(step)):
                for key, value in zip(self._collector.keys, values, strict=True):
                    if math.isfinite(value):
                        tf.summary.scalar(f"{tag}/{key}", float(value))

    def _tensorboard(self):
        """The summary writer (chief only), created on first use."""
        if self.tensorboard_dir is None or not state.is_chief(self._keras_model):
            return None
        if self._writer is None:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(self.tensorboard_dir)
        return self._writer

    def _close_writer(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _on_finding(self, finding):
        self._sink("finding", finding, self.report, self._finding_step)
        writer = self._tensorboard()
        if writer is None:
            return
        import tensorflow as tf

        with writer.as_default(step=self._finding_step):
            tf.summary.text(
                "lossguard/findings",
                f"**{finding.code}** ({finding.severity}): "
                f"{finding.message}\n\nWhy: {finding.explanation}\n\n"
                f"Fix: {finding.fix}",
            )
        self._writer.flush()

    def _before_raise(self):
        self._flush()
        self._uninstall()
        self._close_writer()
        self._sink("end", self.report)

    def _go_blind(self, phase, logs):
        """A step never called compute_loss: say so once per phase."""
        step = "train" if phase == "train" else "test"
        error = self._trace_error or self._rows.error
        if error is not None:
            reason = f"building its statistics failed ({type(error).__name__}: {error})"
        elif self._custom_step[step]:
            reason = (
                f"{type(self._keras_model).__name__} overrides {step}_step and "
                "does not call compute_loss"
            )
        else:
            reason = f"the {step} step did not call model.compute_loss"
        self._blind[phase] = reason
        self._warn(
            f"lossguard cannot see the {phase} batches of this model: {reason}. "
            "It records only Keras' running-mean loss "
            "(history['running_loss']), so it cannot check labels, "
            "predictions or weights there."
        )
        # A row for each step whose hook has run and that has none (on JAX
        # the hooks lag: the later ones add theirs as they come).
        owed = self._hooks[phase] - self._steps[phase]
        for i in range(owed):
            self._blind_row(logs if i == owed - 1 else None, phase)

    def _blind_row(self, logs, phase):
        """A row with Keras' running loss only, for a batch lossguard cannot see."""
        nan = np.full((1, len(self._collector.keys)), np.nan, "float32")
        self._store.append(
            nan,
            self._epoch,
            [self._steps[phase]],
            phase,
            [_scalar(logs, "loss")],
            [self._train_rows],
        )
        self._steps[phase] += 1
        if phase == "train":
            self._train_rows += 1

    def _on_crash(self, error, phase):
        with self._lock:
            try:
                self._read(None, "train")
            except Exception:  # noqa: BLE001 - the step's state may be gone
                logger.debug("lossguard could not read the last rows", exc_info=True)
            self._flush()
            self._uninstall()
            self._close_writer()  # on_train_end will not come
        weights = weight_mask_crash(error)
        if weights is not None:
            logger.error("%s", weights)
            if hasattr(error, "add_note"):  # Python 3.11+
                error.add_note(f"lossguard: {weights}")
        # Raised from here, LossSanityError carries the crash as its context.
        # The batch whose step failed: the last one a begin hook announced
        # (the begin hooks run on the loop's thread, before their step).
        step = self._begun.get(phase)
        found = check_crash(error, self.specs, self._epoch, step, phase)
        self._add_all(found)
        self._sink("end", self.report)

    def _flush(self):
        if not self.log_path or self._store is None:
            return
        total = self._store.total
        if self._flushed == total:
            return
        if not state.is_chief(self._keras_model):
            self._flushed = total  # the chief writes the log
            return
        if self.log_path.endswith(".parquet"):
            self._frame().to_parquet(self.log_path, index=False)
        else:
            self._frame(start=self._flushed).to_csv(
                self.log_path,
                mode="a" if self._flushed else "w",
                header=self._flushed == 0,
                index=False,
            )
        self._flushed = total
        self._store.trim(self._flushed)


def _has(package) -> bool:
    """Whether an optional package is installed (found, not imported)."""
    import importlib.util

    return importlib.util.find_spec(package) is not None


def _at(finding, epoch, step, phase):
    import dataclasses

    return dataclasses.replace(finding, epoch=epoch, step=step, phase=phase)


def _compile_key(model):
    """What a traced train step depends on besides the data: re-compiling
    (a new optimizer or loss), steps_per_execution, jit_compile."""
    return (
        id(getattr(model, "optimizer", None)),
        id(getattr(model, "loss", None)),
        getattr(model, "steps_per_execution", 1),
        getattr(model, "jit_compile", None),
    )


def _steps_per_call(model) -> int:
    """Steps Keras runs per step-function call (one batch hook each)."""
    return int(getattr(model, "steps_per_execution", 1) or 1)


def _end_of_data(error) -> bool:
    """How a step ends an epoch of unknown length: not a crash."""
    return isinstance(error, StopIteration) or type(error).__name__ == (
        "OutOfRangeError"
    )


def _scalar(logs, key):
    value = (logs or {}).get(key, math.nan)
    if type(value) is float:  # Keras' logs, made Python numbers: every step
        return value
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return math.nan


def _own_methods(cls):
    names = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("keras"):
            break
        names.update(vars(klass))
    return names
