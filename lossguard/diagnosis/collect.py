"""One batch -> one row of named statistics (tensors), for every output.

The callback packs the row into a buffer inside the train step; `diagnose`
evaluates it in a compiled function. Both then hand the row to
`lossguard.diagnosis.faults.check_batch`.
"""

from __future__ import annotations

import inspect
import logging

import keras
from keras import ops

from lossguard import backends
from lossguard.diagnosis.specs import OutputSpec, output_specs, per_output
from lossguard.diagnosis.statistics import (
    AUX_TERM,
    GLOBAL_KEYS,
    NAN,
    OUTPUT_KEYS,
    OUTPUT_LOSS_STATS,
    f32,
    is_keras_softmax,
    output_statistics,
    stat_of,
)
from lossguard.keras_compat import layer_losses, never_adds_losses

logger = logging.getLogger("lossguard")


def _may_add_loss(layer) -> bool:
    """Layers whose `losses` can be non-empty: regularised, custom or nested."""
    if isinstance(layer, keras.Model):
        return True
    if any(
        name.endswith("regularizer") and value is not None
        for name, value in vars(layer).items()
    ):
        return True
    return not type(layer).__module__.startswith("keras")


def accepts_training(method) -> bool:
    """Whether a `compute_loss` method takes `training` (Keras 3's do; an
    override written for earlier versions, such as keras.io's masked
    language model, may not, and is still valid)."""
    try:
        return "training" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return True


def call_compute_loss(
    method, x, y, y_pred, sample_weight, training=False, takes_training=None
):
    """A model's `compute_loss` method, called with or without `training`
    (`takes_training`: what `accepts_training` said, if known)."""
    if takes_training is None:
        takes_training = accepts_training(method)
    if takes_training:
        return method(x, y, y_pred, sample_weight, training=training)
    return method(x, y, y_pred, sample_weight)


def _nonfinite_inputs(x):
    flags = [
        ops.logical_not(ops.all(ops.isfinite(t)))
        for t in keras.tree.flatten(x)
        if t is not None and "float" in str(getattr(t, "dtype", ""))
    ]
    if not flags:
        return ops.convert_to_tensor(0.0)
    if len(flags) == 1:
        return ops.cast(flags[0], "float32")
    return ops.cast(ops.any(ops.stack(flags)), "float32")


def replicas_in_sync() -> int:
    """Replicas of the distributed step this runs in (1 outside one)."""
    return backends.current().replicas_in_sync()


def combine_replicas(rows, keys):
    """One global-batch row from the replicas' rows (a (replicas, keys) tensor).

    Losses are the mean of the replicas' means (equal shares of the batch),
    counts add up, minima and maxima reduce (NaN where a replica saw no
    active row is ignored), shares are weighted by each replica's rows, and
    the first negative label row is offset by the rows of earlier replicas.
    """
    index = {k: i for i, k in enumerate(keys)}
    columns = []
    for key in keys:
        col = rows[:, index[key]]
        how = stat_of(key).replicas
        prefix = key[: -len(key.rsplit("/", 1)[-1])]
        if how == "mean":
            value = ops.mean(col)
        elif how == "sum":
            value = ops.sum(col)
        elif how == "first":
            value = col[0]
        elif how in ("min", "max"):
            finite = ops.logical_not(ops.isnan(col))
            fill = float("inf") if how == "min" else -float("inf")
            reduce = ops.min if how == "min" else ops.max
            value = ops.where(
                ops.any(finite), reduce(ops.where(finite, col, fill)), NAN
            )
        elif how == "first_row":
            counts = rows[:, index[prefix + "rows"]]
            offsets = ops.cumsum(counts) - counts
            found = ops.where(col >= 0, col + offsets, float("inf"))
            value = ops.where(ops.any(col >= 0), ops.min(found), -1.0)
        else:
            weight_key = prefix + ("rows" if how == "by_rows" else "active_rows")
            weights = rows[:, index[weight_key]]
            if how == "by_nonempty_rows":
                empty = rows[:, index[prefix + "label_empty_share"]]
                weights = weights * (1.0 - ops.where(ops.isnan(empty), 0.0, empty))
            ok = ops.logical_and(ops.logical_not(ops.isnan(col)), weights > 0)
            total = ops.sum(ops.where(ok, weights, 0.0))
            value = ops.where(
                total > 0,
                ops.sum(ops.where(ok, col * weights, 0.0)) / ops.maximum(total, 1.0),
                NAN,
            )
        columns.append(ops.cast(value, "float32"))
    return ops.stack(columns)


def _or_nan(what, spec, compute, *args):
    """`compute(*args)` as float32, or NaN (logged) where it cannot be built."""
    try:
        return ops.cast(compute(*args), "float32")
    except Exception as error:  # noqa: BLE001 - one statistic, not the row
        logger.info(
            "lossguard cannot measure %s for output '%s': %s: %s",
            what,
            spec.name,
            type(error).__name__,
            error,
        )
        return ops.convert_to_tensor(NAN)


def _loss_object(loss):
    """A callable loss `(y_true, y_pred, sample_weight) -> scalar`, or None."""
    if loss is None:
        return None
    if isinstance(loss, keras.losses.Loss):
        return loss
    try:
        fn = keras.losses.get(loss)
    except (ValueError, TypeError):
        return None
    return _FunctionLoss(fn) if callable(fn) else None


class _FunctionLoss(keras.losses.Loss):
    """A loss function with Keras' reduction, masks and sample weights."""

    def __init__(self, fn):
        super().__init__(name=getattr(fn, "__name__", "loss"))
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


def _terms(loss, y_true, y_pred):
    """A loss's unreduced values (one per sample or token)."""
    if isinstance(loss, keras.losses.Loss):
        return loss.call(y_true, y_pred)
    return keras.losses.get(loss)(y_true, y_pred)


def at_clip_share(loss, clip, y_true, y_pred):
    """Share of a clipped loss's terms that sit at one of its bounds (NaN when
    the loss reduces to one value itself)."""
    values = ops.cast(_terms(loss, y_true, y_pred), "float32")
    if len(values.shape) == 0:
        return ops.convert_to_tensor(NAN)
    at = ops.zeros_like(values, dtype="bool")
    for bound in clip:
        if bound is not None:
            near = ops.abs(values - bound) <= 1e-6 + 1e-4 * abs(bound)
            at = ops.logical_or(at, near)
    return ops.mean(ops.cast(at, "float32"))


class BatchCollector:
    """Knows a model's outputs and extra-loss layers; builds a batch's row."""

    def __init__(self, model, specs: list[OutputSpec] | None = None):
        self.model = model
        self.specs = specs if specs is not None else output_specs(model)
        self.names = [s.name for s in self.specs]
        self.single = len(self.specs) == 1
        self.aux_layers = [
            layer for layer in getattr(model, "layers", []) if _may_add_loss(layer)
        ]
        self._never_adds_losses = None
        self.keys = list(GLOBAL_KEYS)
        self.keys += [AUX_TERM.name + layer.name for layer in self.aux_layers]
        self.keys.append(AUX_TERM.name + "other")
        for spec in self.specs:
            prefix = "" if self.single else f"{spec.name}/"
            self.keys += [prefix + key for key in OUTPUT_KEYS]
        # Several outputs: each one's unweighted data loss and its loss_weight,
        # recomputed with the compiled loss (Keras logs only running means).
        self.output_losses = [None] * len(self.specs)
        self.losses = per_output(getattr(model, "loss", None), self.names, "loss")
        if not self.single:
            self.output_losses = [_loss_object(loss) for loss in self.losses]
            for spec in self.specs:
                self.keys += [f"{spec.name}/{s.name}" for s in OUTPUT_LOSS_STATS]

    def refine(self, y_pred) -> bool:
        """Learn the specs of outputs whose shape was unknown before a batch
        ran (a subclassed model, built on its first call). True if they
        changed."""
        if all(spec.units is not None for spec in self.specs) or y_pred is None:
            return False
        refined = output_specs(self.model, y_pred)
        changed = refined != self.specs
        self.specs = refined
        return changed

    def extra_terms(self):
        """This step's extra loss terms: `model.losses`, and each watched
        layer's own (read while the step runs)."""
        if self._never_adds_losses is None and getattr(self.model, "built", False):
            self._never_adds_losses = never_adds_losses(self.model)  # once
        if self._never_adds_losses:  # an eager step pays for the walk
            return [], [[] for _ in self.aux_layers]
        model_losses = list(self.model.losses)
        by_layer = [layer_losses(layer, model_losses) for layer in self.aux_layers]
        return model_losses, by_layer

    def row(
        self, x, y, y_pred, sample_weight, loss, predictions="all", extra_terms=None
    ):
        """The batch's statistics as a dict of float32 scalar tensors.

        `predictions="auto"` skips the full-width prediction statistics of
        outputs that are a float32 Keras softmax (a distribution by
        construction; see `skipped`); `"all"` takes them everywhere.
        `extra_terms`: what `extra_terms()` returned during the step, where
        the row is computed after it (default: read now).
        """
        self.skipped = []
        self.refine(y_pred)
        stats = dict.fromkeys(self.keys, ops.convert_to_tensor(NAN))
        replicas = replicas_in_sync()
        model_losses, by_layer = extra_terms or self.extra_terms()
        terms = [ops.cast(ops.sum(t), "float32") for t in model_losses]
        aux = ops.sum(ops.stack(terms)) if terms else ops.convert_to_tensor(0.0)
        stats["aux_loss"] = aux
        stats["aux_nonfinite"] = ops.cast(ops.logical_not(ops.isfinite(aux)), "float32")
        # Under tf.distribute Keras scales each replica's data loss by
        # 1/replicas (not the extra terms); undo it: this replica's own mean.
        loss = ops.cast(loss, "float32")
        if terms:
            stats["data_loss"] = (loss - aux) * replicas
            stats["loss"] = stats["data_loss"] + aux
        else:  # the same values, with no operation on the step
            stats["data_loss"] = loss * replicas if replicas > 1 else loss
            stats["loss"] = stats["data_loss"]
        stats["x_nonfinite"] = _nonfinite_inputs(x)
        attributed = ops.convert_to_tensor(0.0)
        for layer, layer_terms in zip(self.aux_layers, by_layer, strict=True):
            own = [ops.cast(ops.sum(t), "float32") for t in layer_terms]
            value = ops.sum(ops.stack(own)) if own else ops.convert_to_tensor(0.0)
            stats[AUX_TERM.name + layer.name] = value
            attributed = attributed + value
        stats[AUX_TERM.name + "other"] = aux - attributed
        ys = per_output(y, self.names)
        preds = per_output(y_pred, self.names)
        weights = per_output(sample_weight, self.names)
        for spec, yt, yp, sw, loss_fn, compiled in zip(
            self.specs,
            ys,
            preds,
            weights,
            self.output_losses,
            self.losses,
            strict=True,
        ):
            if yt is None or yp is None:
                continue
            prefix = "" if self.single else f"{spec.name}/"
            if loss_fn is not None:
                value = _or_nan("its loss", spec, loss_fn, yt, yp, sw)
                stats[prefix + "data_loss"] = value * replicas
                stats[prefix + "loss_weight"] = ops.convert_to_tensor(
                    spec.loss_weight, "float32"
                )
            softmax = is_keras_softmax(yp, spec.activation)
            full = predictions == "all" or not softmax
            if not full:
                self.skipped.append(spec.name)
            for key, value in output_statistics(
                yt, yp, sw, spec, predictions=full, inputs=x
            ).items():
                stats[prefix + key] = value
            stats[prefix + "pred_softmax"] = ops.convert_to_tensor(float(softmax))
            if spec.clip is not None:
                stats[prefix + "loss_at_clip_share"] = _or_nan(
                    "the share of clipped terms",
                    spec,
                    at_clip_share,
                    compiled,
                    spec.clip,
                    yt,
                    yp,
                )
        return stats

    def pack(self, stats, head=()):
        """The row as one float32 vector, after the float32 scalars `head`;
        under `tf.distribute` with several replicas, the global batch's row
        (gathered from every replica)."""
        values = [f32(stats[k]) for k in self.keys]
        if replicas_in_sync() == 1:
            return ops.stack([*head, *values])  # one op for the whole row
        gathered = backends.current().gather(ops.stack(values))
        packed = combine_replicas(gathered, self.keys)
        return ops.concatenate([ops.stack(head), packed]) if head else packed

    def unpack(self, values) -> dict:
        return {k: float(v) for k, v in zip(self.keys, values, strict=True)}
