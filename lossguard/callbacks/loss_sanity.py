"""`LossSanityCallback`: every training batch's true loss, explained."""

from __future__ import annotations

import logging
import math
import os
import warnings

import keras
import numpy as np
from keras import ops

from lossguard.callbacks.base import FindingsCallback
from lossguard.diagnosis.collect import BatchCollector, call_compute_loss
from lossguard.diagnosis.crashes import weight_mask_crash
from lossguard.diagnosis.faults import check_batch, check_crash, check_start
from lossguard.diagnosis.findings import LossSanityWarning
from lossguard.diagnosis.specs import output_specs
from lossguard.diagnosis.statistics import MODEL_COLUMNS

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
_REDUCE = {"min": min, "max": max}
#: Each buffer row starts with the step's number and its phase.
_HEADER = ("step", "phase")
_PHASES = ("train", "validation")


class LossSanityCallback(FindingsCallback):
    """Watches every training batch's true loss, labels, predictions and weights.

    It wraps the model's `compute_loss` for the duration of `fit`, so the
    statistics are computed inside the train step on the exact batch (no extra
    forward pass) and written to a small buffer that is read once per batch.
    Keras' batch `logs["loss"]` is the epoch's running mean; `history["loss"]`
    is the loss *of that batch*.

    With `steps_per_execution=N`, Keras calls batch hooks once per N steps;
    every step is still recorded (the buffer keeps them all), and findings
    carry the exact step, but `action="raise"`/`"stop"` acts at the end of
    the N-step chunk.

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
        predictions: `"auto"` (default) skips the three full-width passes
            over an output that is a float32 Keras softmax: it is a
            probability distribution by construction, so `pred_min`,
            `pred_max` and the row sums can only confirm it (the history
            holds NaN there, and the callback logs once which outputs it
            skipped). Every other output (logits, linear, ReLU, custom
            activations, float16/bfloat16) is measured in full. `"all"`
            measures every output, at the cost of those passes.

    Example:

    >>> cb = LossSanityCallback(action="record")
    >>> cb.findings
    []
    >>> # model.fit(x, y, callbacks=[cb]); print(cb.report); cb.history
    """

    def __init__(
        self,
        action="warn",
        *,
        log_path=None,
        flush_every=100,
        capacity=256,
        predictions="auto",
        tensorboard_dir=None,
    ):
        super().__init__(action)
        if predictions not in PREDICTIONS:
            raise ValueError(
                f"`predictions` must be one of {PREDICTIONS}. "
                f"Received: predictions={predictions!r}."
            )
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(
                f"`capacity` must be a positive int. Received: capacity={capacity!r}."
            )
        if log_path is not None and not str(log_path).endswith((".csv", ".parquet")):
            raise ValueError(
                "`log_path` must end in .csv or .parquet. "
                f"Received: log_path={log_path!r}."
            )
        self.log_path = None if log_path is None else os.fspath(log_path)
        self.flush_every = flush_every
        self.capacity = capacity
        self.predictions = predictions
        self.tensorboard_dir = (
            None if tensorboard_dir is None else os.fspath(tensorboard_dir)
        )
        self._writer = None
        self._rows: list[dict] = []
        self._flushed = 0
        self._installed = False
        self._blind_reasons = {}

    # ------------------------------------------------------------ results
    @property
    def history(self):
        import pandas as pd

        frame = pd.DataFrame(self._rows)
        if frame.empty:
            return pd.DataFrame(columns=list(LEADING_COLUMNS))
        lead = [c for c in LEADING_COLUMNS if c in frame.columns]
        return frame[lead + [c for c in frame.columns if c not in lead]]

    # ------------------------------------------------------- installation
    def on_train_begin(self, logs=None):
        self._start(fit=True)

    def on_test_begin(self, logs=None):
        if self._installed:  # validation inside fit
            self._steps["validation"] = 0
            return
        self._start(fit=False)  # model.evaluate(..., callbacks=[cb])

    def _start(self, fit):
        model = self.model
        self._collector = BatchCollector(model, output_specs(model))
        spe = int(getattr(model, "steps_per_execution", 1) or 1)
        self._capacity = max(self.capacity, 2 * spe)
        width = len(self._collector.keys) + len(_HEADER)
        # Under tf.distribute: mirrored, and only the first replica's write
        # counts (every replica holds the same, global-batch row).
        with _strategy_scope(model):
            self._buffer = keras.Variable(
                np.full((self._capacity, width), np.nan, "float32"),
                trainable=False,
                name="lossguard_batch_stats",
                aggregation="only_first_replica",
            )
            self._counter = keras.Variable(
                0,
                dtype="int32",
                trainable=False,
                name="lossguard_steps",
                aggregation="only_first_replica",
            )
        self._seen = 0
        self._epoch = 0 if fit else None
        self._in_fit = fit
        self._steps = {"train": 0, "validation": 0}
        self._train_rows = 0
        self._blind_reasons = {}
        self._trace_error = None
        self._skip_logged = False
        self._custom_step = {
            phase: getattr(type(model), f"{phase}_step")
            is not getattr(keras.Model, f"{phase}_step")
            and f"{phase}_step" in _own_methods(type(model))
            for phase in ("train", "test")
        }
        self._install()
        self._checked_specs = None
        self._check_start()

    @property
    def specs(self):
        """What lossguard knows of each output (refined once a batch ran)."""
        return self._collector.specs

    def _check_start(self):
        """The configuration checks, again once the specs are refined."""
        if self._checked_specs is self.specs:
            return
        self._checked_specs = self.specs
        start = check_start(self.model, self.specs)
        self._start_codes = frozenset(f.code for f in start)
        for finding in start:
            self._add(finding)

    def _install(self):
        model = self.model
        had_own = "compute_loss" in vars(model)
        self._restore = (had_own, vars(model).get("compute_loss"))
        original = model.compute_loss

        def compute_loss(
            x=None, y=None, y_pred=None, sample_weight=None, training=True
        ):
            loss = call_compute_loss(original, x, y, y_pred, sample_weight, training)
            if loss is not None:
                self._record_in_graph(x, y, y_pred, sample_weight, loss, training)
            return loss

        model.compute_loss = compute_loss
        for phase in ("train", "test"):
            getattr(model, f"make_{phase}_function")(force=True)
            setattr(
                model,
                f"{phase}_function",
                self._explained(getattr(model, f"{phase}_function")),
            )
        self._installed = True

    def _explained(self, inner):
        """The step function, explaining a crash before it reaches the user."""

        def step_function(*args):
            try:
                return inner(*args)
            except Exception as error:  # noqa: BLE001 - re-raised below
                if not _end_of_data(error):
                    self._on_crash(error)
                raise

        return step_function

    def _uninstall(self):
        if not self._installed:
            return
        model = self.model
        had_own, previous = self._restore
        if had_own:
            model.compute_loss = previous
        else:
            vars(model).pop("compute_loss", None)
        model.make_train_function(force=True)
        model.make_test_function(force=True)
        self._installed = False

    def _record_in_graph(self, x, y, y_pred, sample_weight, loss, training):
        """Runs while Keras traces a train or test step: builds the stats ops."""
        try:
            stats = self._collector.row(
                x, y, y_pred, sample_weight, loss, predictions=self.predictions
            )
            if self._collector.skipped and not self._skip_logged:
                self._skip_logged = True
                logger.info(
                    "lossguard skips the prediction range statistics of %s: a "
                    "float32 Keras softmax is a distribution by construction "
                    "(predictions='all' measures them anyway).",
                    ", ".join(self._collector.skipped),
                )
            packed = self._collector.pack(stats)
        except Exception as error:  # noqa: BLE001 - never break the user's fit
            self._trace_error = error
            logger.debug("lossguard could not build its statistics", exc_info=True)
            return
        step = ops.cast(self._counter + 1, "float32")
        phase = ops.convert_to_tensor(0.0 if training else 1.0)
        row = ops.concatenate([ops.stack([step, phase]), packed])
        index = ops.expand_dims(ops.expand_dims(self._counter % self._capacity, 0), 0)
        self._buffer.assign(
            ops.scatter_update(self._buffer, index, ops.expand_dims(row, 0))
        )
        self._counter.assign_add(1)

    # ------------------------------------------------------------- hooks
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._steps["train"] = 0

    def on_train_batch_end(self, batch, logs=None):
        self._read(batch, logs, "train")

    def on_test_batch_end(self, batch, logs=None):
        self._read(batch, logs, "validation")

    def on_test_end(self, logs=None):
        if self._installed and not self._in_fit:
            self._flush()
            self._close_writer()
            self._uninstall()

    def _read(self, batch, logs, phase):
        """Record the rows the step(s) since the last read wrote."""
        if not self._installed:
            return
        buffer = self._buffer.numpy()
        steps = buffer[:, 0]
        fresh = np.flatnonzero(steps > self._seen)
        if fresh.size == 0:
            self._blind(batch, logs, phase)
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
        self._check_start()
        running = _scalar(logs, "loss")
        for i in fresh:
            self._record(buffer[i], running if i == fresh[-1] else math.nan)
        self._seen = int(steps[fresh[-1]])
        if self.log_path and len(self._rows) - self._flushed >= self.flush_every:
            self._flush()

    def on_epoch_end(self, epoch, logs=None):
        self._flush()
        if self._writer is not None:
            self._writer.flush()

    def on_train_end(self, logs=None):
        self._flush()
        self._close_writer()
        self._uninstall()

    # ------------------------------------------------------------ helpers
    def _record(self, values, running):
        phase = _PHASES[int(values[1])]
        row = self._collector.unpack(values[len(_HEADER) :])
        step = self._steps[phase]
        self._steps[phase] += 1
        if not self._collector.single:
            for key, how in MODEL_COLUMNS.items():
                vals = [row[f"{s.name}/{key}"] for s in self.specs]
                vals = [v for v in vals if not math.isnan(v)]
                row[key] = _REDUCE[how](vals) if vals else math.nan
        row.update(
            epoch=self._epoch,
            step=step,
            phase=phase,
            global_step=self._train_rows,
            running_loss=running,
        )
        if phase == "train":
            self._train_rows += 1
        for spec in self.specs:
            prefix = "" if self._collector.single else f"{spec.name}/"
            row[prefix + "pred_dtype"] = spec.dtype
        found = check_batch(
            row, self.specs, self._epoch, step, phase=phase, known=self._start_codes
        )
        row["findings"] = ";".join(f.code for f in found)
        self._rows.append(row)
        self._summaries(row)
        for finding in found:
            self._add(finding)

    def _summaries(self, row):
        """TensorBoard scalars of one batch (finite numbers only)."""
        writer = self._tensorboard()
        if writer is None:
            return
        import tensorflow as tf

        tag = "lossguard" if row["phase"] == "train" else "lossguard/validation"
        with writer.as_default(step=row["global_step"]):
            for key, value in row.items():
                if key in ("epoch", "step", "global_step"):
                    continue
                if isinstance(value, float) and math.isfinite(value):
                    tf.summary.scalar(f"{tag}/{key}", value)

    def _tensorboard(self):
        """The summary writer (chief only), created on first use."""
        if self.tensorboard_dir is None or not _is_chief(self.model):
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
        writer = self._tensorboard()
        if writer is None:
            return
        import tensorflow as tf

        step = self._rows[-1].get("global_step", 0) if self._rows else 0
        with writer.as_default(step=step):
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

    def _blind(self, batch, logs, phase):
        """A step never called compute_loss: say so once per phase, then log."""
        if phase not in self._blind_reasons:
            step = "train" if phase == "train" else "test"
            if self._trace_error is not None:
                reason = (
                    f"building its statistics failed "
                    f"({type(self._trace_error).__name__}: {self._trace_error})"
                )
            elif self._custom_step[step]:
                reason = (
                    f"{type(self.model).__name__} overrides {step}_step and "
                    "does not call compute_loss"
                )
            else:
                reason = f"the {step} step did not call model.compute_loss"
            self._blind_reasons[phase] = reason
            warnings.warn(
                f"lossguard cannot see the {phase} batches of this model: {reason}. "
                "It records only Keras' running-mean loss "
                "(history['running_loss']), so it cannot check labels, "
                "predictions or weights there.",
                LossSanityWarning,
                stacklevel=3,
            )
        self._rows.append(
            {
                "epoch": self._epoch,
                "step": batch,
                "phase": phase,
                "running_loss": _scalar(logs, "loss"),
            }
        )

    def _on_crash(self, error):
        self._flush()
        self._uninstall()
        self._close_writer()  # on_train_end will not come
        weights = weight_mask_crash(error)
        if weights is not None:
            logger.error("%s", weights)
            if hasattr(error, "add_note"):  # Python 3.11+
                error.add_note(f"lossguard: {weights}")
        # Raised from here, LossSanityError carries the crash as its context.
        for finding in check_crash(error, self.specs, self._epoch):
            self._add(finding, stacklevel=4)

    def _flush(self):
        if not self.log_path or self._flushed == len(self._rows):
            return
        if not _is_chief(self.model):
            self._flushed = len(self._rows)  # the chief writes the log
            return
        frame = self.history
        if self.log_path.endswith(".parquet"):
            frame.to_parquet(self.log_path, index=False)
        else:
            new = frame.iloc[self._flushed :]
            new.to_csv(
                self.log_path,
                mode="a" if self._flushed else "w",
                header=self._flushed == 0,
                index=False,
            )
        self._flushed = len(self._rows)


def _is_chief(model) -> bool:
    """False only on a non-chief worker of a multi-worker strategy."""
    strategy = getattr(model, "distribute_strategy", None)
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return True
    cluster = resolver.cluster_spec().as_dict()
    if not cluster or resolver.task_type in (None, "chief"):
        return True
    return (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and ("chief" not in cluster)
    )


def _strategy_scope(model):
    import contextlib

    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None or keras.backend.backend() != "tensorflow":
        return contextlib.nullcontext()
    return strategy.scope()


def _end_of_data(error) -> bool:
    """How a step ends an epoch of unknown length: not a crash."""
    return isinstance(error, StopIteration) or type(error).__name__ == (
        "OutOfRangeError"
    )


def _scalar(logs, key):
    try:
        return float(np.asarray((logs or {}).get(key, math.nan)))
    except (TypeError, ValueError):
        return math.nan


def _own_methods(cls):
    names = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("keras"):
            break
        names.update(vars(klass))
    return names
