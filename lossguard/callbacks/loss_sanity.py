"""`LossSanityCallback`: every training batch's true loss, explained."""

from __future__ import annotations

import inspect
import logging
import math
import os
import warnings

import keras
import numpy as np
from keras import ops

from lossguard.diagnosis.checks import (
    check_batch,
    check_config,
    sparse_label_crash,
    weight_mask_crash,
)
from lossguard.diagnosis.collect import BatchCollector
from lossguard.diagnosis.embeddings import check_model_embeddings
from lossguard.diagnosis.findings import (
    Finding,
    LossSanityError,
    LossSanityWarning,
    Report,
)
from lossguard.diagnosis.specs import output_specs

logger = logging.getLogger("lossguard")

ACTIONS = ("warn", "raise", "stop", "record")
PREDICTIONS = ("auto", "all")
#: History columns first in order (SPEC); the rest follow as measured.
LEADING_COLUMNS = (
    "epoch",
    "step",
    "loss",
    "data_loss",
    "aux_loss",
    "running_loss",
    "label_min",
    "label_sum_min",
    "label_sum_max",
    "pred_min",
    "pred_max",
    "pred_sum_min",
    "pred_sum_max",
    "weight_min",
)
_AGGREGATE = {
    "label_min": min,
    "label_sum_min": min,
    "label_sum_max": max,
    "pred_min": min,
    "pred_max": max,
    "pred_sum_min": min,
    "pred_sum_max": max,
    "weight_min": min,
}


class LossSanityCallback(keras.callbacks.Callback):
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
            `"stop"` (sets `model.stop_training`), or `"record"`.
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
        super().__init__()
        if predictions not in PREDICTIONS:
            raise ValueError(
                f"`predictions` must be one of {PREDICTIONS}. "
                f"Received: predictions={predictions!r}."
            )
        if action not in ACTIONS:
            raise ValueError(
                f"`action` must be one of {ACTIONS}. Received: action={action!r}."
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
        self.action = action
        self.log_path = None if log_path is None else os.fspath(log_path)
        self.flush_every = flush_every
        self.capacity = capacity
        self.predictions = predictions
        self.tensorboard_dir = (
            None if tensorboard_dir is None else os.fspath(tensorboard_dir)
        )
        self._writer = None
        self.findings: list[Finding] = []
        self._rows: list[dict] = []
        self._flushed = 0
        self._installed = False
        self._blind_reason = None

    # ------------------------------------------------------------ results
    @property
    def report(self) -> Report:
        return Report(self.findings)

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
        model = self.model
        self.specs = output_specs(model)
        self._collector = BatchCollector(model, self.specs)
        spe = int(getattr(model, "steps_per_execution", 1) or 1)
        self._capacity = max(self.capacity, 2 * spe)
        width = len(self._collector.keys) + 1
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
        self._epoch = 0
        self._epoch_start = 0
        self._blind_reason = None
        self._trace_error = None
        self._custom_train_step = type(model).train_step is not (
            keras.Model.train_step
        ) and "train_step" in _own_methods(type(model))
        self._install()
        for finding in check_config(self.specs) + check_model_embeddings(model):
            self._add(finding)

    def _install(self):
        model = self.model
        original = model.compute_loss
        takes_training = "training" in inspect.signature(original).parameters
        had_own = "compute_loss" in vars(model)
        self._restore = (had_own, vars(model).get("compute_loss"))

        def compute_loss(
            x=None, y=None, y_pred=None, sample_weight=None, training=True
        ):
            if takes_training:
                loss = original(x, y, y_pred, sample_weight, training=training)
            else:
                loss = original(x, y, y_pred, sample_weight)
            if training and loss is not None:
                self._record_in_graph(x, y, y_pred, sample_weight, loss)
            return loss

        model.compute_loss = compute_loss
        model.make_train_function(force=True)
        inner = model.train_function

        def train_function(iterator):
            try:
                return inner(iterator)
            except Exception as error:  # noqa: BLE001 - re-raised below
                self._on_crash(error)
                raise

        model.train_function = train_function
        self._installed = True

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
        self._installed = False

    def _record_in_graph(self, x, y, y_pred, sample_weight, loss):
        """Runs while Keras traces the train step: builds the stats ops."""
        try:
            stats = self._collector.row(
                x, y, y_pred, sample_weight, loss, predictions=self.predictions
            )
            if self._collector.skipped:
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
        step = self._counter + 1
        row = ops.concatenate([ops.expand_dims(ops.cast(step, "float32"), 0), packed])
        index = ops.expand_dims(ops.expand_dims(self._counter % self._capacity, 0), 0)
        self._buffer.assign(
            ops.scatter_update(self._buffer, index, ops.expand_dims(row, 0))
        )
        self._counter.assign_add(1)

    # ------------------------------------------------------------- hooks
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = int(self._counter.numpy()) if self._installed else 0

    def on_train_batch_end(self, batch, logs=None):
        if not self._installed:
            return
        buffer = self._buffer.numpy()
        steps = buffer[:, 0]
        fresh = np.flatnonzero(steps > self._seen)
        if fresh.size == 0:
            self._blind(batch, logs)
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
        global_step = int(values[0])
        row = self._collector.unpack(values[1:])
        step = global_step - self._epoch_start - 1
        if not self._collector.single:
            for key, reduce in _AGGREGATE.items():
                vals = [row[f"{s.name}/{key}"] for s in self.specs]
                vals = [v for v in vals if not math.isnan(v)]
                row[key] = reduce(vals) if vals else math.nan
        row.update(
            epoch=self._epoch,
            step=step,
            global_step=global_step - 1,
            running_loss=running,
        )
        for spec in self.specs:
            prefix = "" if self._collector.single else f"{spec.name}/"
            row[prefix + "pred_dtype"] = spec.dtype
        found = check_batch(row, self.specs, self._epoch, step)
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

        with writer.as_default(step=row["global_step"]):
            for key, value in row.items():
                if key in ("epoch", "step", "global_step"):
                    continue
                if isinstance(value, float) and math.isfinite(value):
                    tf.summary.scalar(f"lossguard/{key}", value)

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

    def _finding_summary(self, finding):
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

    def _add(self, finding: Finding):
        if any(f.code == finding.code for f in self.findings):
            return
        self.findings.append(finding)
        self._finding_summary(finding)
        log = (
            logger.error
            if finding.severity == "error"
            else (logger.warning if finding.severity == "warning" else logger.info)
        )
        log("%s", finding)
        if self.action == "warn" and finding.severity != "info":
            warnings.warn(str(finding), LossSanityWarning, stacklevel=2)
        elif finding.severity == "error" and self.action == "stop":
            self.model.stop_training = True
        elif finding.severity == "error" and self.action == "raise":
            self._flush()
            self._uninstall()
            self._close_writer()
            raise LossSanityError(self.report)

    def _blind(self, batch, logs):
        """The train step never called compute_loss: say so once, then log."""
        if self._blind_reason is None:
            if self._trace_error is not None:
                reason = (
                    f"building its statistics failed "
                    f"({type(self._trace_error).__name__}: {self._trace_error})"
                )
            elif self._custom_train_step:
                reason = (
                    f"{type(self.model).__name__} overrides train_step and "
                    "does not call compute_loss"
                )
            else:
                reason = "the train step did not call model.compute_loss"
            self._blind_reason = reason
            warnings.warn(
                f"lossguard cannot see the batches of this model: {reason}. It "
                "records only Keras' running-mean loss (history['running_loss']), "
                "so it cannot check labels, predictions or weights.",
                LossSanityWarning,
                stacklevel=2,
            )
        self._rows.append(
            {"epoch": self._epoch, "step": batch, "running_loss": _scalar(logs, "loss")}
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
        finding = sparse_label_crash(error, self.specs, self._epoch)
        if finding is None:
            return
        self._add_quietly(finding)
        if self.action == "raise":
            raise LossSanityError(self.report) from error

    def _add_quietly(self, finding):
        if all(f.code != finding.code for f in self.findings):
            self.findings.append(finding)
            logger.error("%s", finding)
            if self.action == "warn":
                warnings.warn(str(finding), LossSanityWarning, stacklevel=3)

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
