"""In-graph statistics of one batch: labels, predictions, weights.

`output_statistics` is the single computation behind the callback, `diagnose`
and the stateful Keras metrics below: it runs inside the train step on the
exact batch (no extra forward pass) and returns a dict of float32 scalars.
Rows (one per token: every axis but the class axis) whose sample weight or
Keras mask is 0 are *inactive*: they cannot change the loss, so label and
prediction statistics ignore them.
"""

from __future__ import annotations

import keras
from keras import ops

from lossguard.diagnosis.specs import OutputSpec

NAN = float("nan")

#: The per-output statistics, in the order they are packed.
OUTPUT_KEYS = (
    "rows",
    "active_rows",
    "time_steps",
    "label_min",
    "label_max",
    "label_neg_share",
    "label_neg_row_share",
    "label_neg_first_row",
    "label_sum_min",
    "label_sum_max",
    "label_sum_mean",
    "label_sum_off_share",
    "label_empty_share",
    "label_out_of_range_share",
    "pred_min",
    "pred_max",
    "pred_sum_min",
    "pred_sum_max",
    "pred_saturated_share",
    "weight_min",
    "weight_neg_share",
    "y_nonfinite",
    "pred_nonfinite",
    "weight_nonfinite",
)

#: Tolerance on a row sum of 1 (float32 softmax rounding is ~1e-6).
SUM_TOLERANCE = 1e-3
#: Half-precision softmax rows are off 1 by a few of their epsilons.
HALF_SUM_TOLERANCE = {"float16": 1e-2, "bfloat16": 5e-2}


def sum_tolerance(dtype) -> float:
    """How far a probability row of this dtype may sum from 1."""
    return HALF_SUM_TOLERANCE.get(str(dtype), SUM_TOLERANCE)


_HALF = ("float16", "bfloat16")
_INF = float("inf")


def _f32(x):
    return ops.cast(x, "float32")


def _count(mask):
    return ops.sum(_f32(mask))


def _share(mask, total):
    return _count(mask) / ops.maximum(total, 1.0)


def _masked_min(x, mask, n):
    return ops.where(n > 0, ops.min(ops.where(mask, x, _INF)), NAN)


def _masked_max(x, mask, n):
    return ops.where(n > 0, ops.max(ops.where(mask, x, -_INF)), NAN)


def _at_zero_or_one(p):
    return ops.logical_or(ops.equal(p, 0.0), ops.equal(p, 1.0))


def _nonfinite(total):
    return _f32(ops.logical_not(ops.isfinite(total)))


def _token_weights(sample_weight, mask, token_shape, rank):
    """Sample weights times the Keras mask, broadcast to one value per token."""
    w = None
    if sample_weight is not None:
        w = _f32(ops.convert_to_tensor(sample_weight))
        while len(w.shape) > rank and w.shape[-1] == 1:
            w = ops.squeeze(w, axis=-1)
        while len(w.shape) < rank:
            w = ops.expand_dims(w, axis=-1)
        w = ops.broadcast_to(w, token_shape)
    if mask is not None:
        m = _f32(ops.reshape(mask, token_shape))
        w = m if w is None else w * m
    return w


def _labels_for(y_true, y_pred, spec):
    y_true = ops.convert_to_tensor(y_true)
    if spec.kind == "sparse":
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        return y_true
    if len(y_true.shape) == len(y_pred.shape) - 1 and y_pred.shape[-1] == 1:
        y_true = ops.expand_dims(y_true, -1)
    return y_true


def is_keras_softmax(y_pred) -> bool:
    """True for a float32 tensor made by a Keras softmax (it carries its logits).

    Such a tensor is a probability distribution by construction: every entry
    in [0, 1], rows summing to 1 within float32 rounding.
    """
    if getattr(y_pred, "_keras_logits", None) is None:  # softmax or sigmoid
        return False
    try:
        op = y_pred.op.type  # a graph tensor (inside the train step)
    except AttributeError:  # eager: nothing to tell softmax from sigmoid by
        return False
    return op == "Softmax" and keras.backend.standardize_dtype(y_pred.dtype) == (
        "float32"
    )


def output_statistics(
    y_true, y_pred, sample_weight=None, spec=None, mask=None, predictions=True
):
    """The statistics of one output on one batch, as float32 scalar tensors.

    Args:
        y_true: The batch's labels.
        y_pred: The model's output for the batch (a Keras mask on it is used
            unless `mask` is given).
        sample_weight: Sample or class weights, any shape that broadcasts.
        spec: The output's `OutputSpec` (loss kind decides which statistics
            apply); default: categorical.
        mask: An explicit mask of the token shape.
        predictions: Whether to take the full-width prediction statistics
            (`pred_min`, `pred_max`, row sums, `pred_nonfinite`): three passes
            over the (rows, classes) output. Half-precision outputs always get
            them (saturation is their fault).

    Returns:
        A dict keyed by `OUTPUT_KEYS`; statistics that do not apply are NaN.
    """
    spec = spec or OutputSpec(name="output", loss_name="?", kind="categorical")
    if mask is None:
        mask = getattr(y_pred, "_keras_mask", None)
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = _labels_for(y_true, y_pred, spec)
    half = keras.backend.standardize_dtype(y_pred.dtype) in _HALF
    predictions = predictions or half
    p = _f32(y_pred)
    k = p.shape[-1] if p.shape[-1] is not None else ops.shape(p)[-1]
    token_shape = ops.shape(p)[:-1]
    rank = len(p.shape) - 1
    p2 = ops.reshape(p, (-1, k))
    weights = _token_weights(sample_weight, mask, token_shape, rank)
    out = dict.fromkeys(OUTPUT_KEYS, ops.convert_to_tensor(NAN))
    n_rows = _f32(ops.shape(p2)[0])
    active = ops.ones_like(p2[:, 0], dtype="bool")
    if weights is not None:
        w = ops.reshape(weights, (-1,))
        active = ops.not_equal(w, 0.0)
        out["weight_min"] = ops.min(w)
        out["weight_neg_share"] = _share(ops.less(w, 0.0), n_rows)
        out["weight_nonfinite"] = _nonfinite(ops.sum(w))
    out["rows"] = n_rows
    out["time_steps"] = (
        _f32(ops.shape(p)[1]) if rank >= 2 else ops.convert_to_tensor(1.0)
    )

    if spec.kind == "sparse":
        ids = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        if spec.ignore_class is not None:
            active = ops.logical_and(active, ops.not_equal(ids, spec.ignore_class))
        n_act = _count(active)
        idf = _f32(ids)
        out["label_min"] = _masked_min(idf, active, n_act)
        out["label_max"] = _masked_max(idf, active, n_act)
        bad = ops.logical_and(
            active, ops.logical_or(ops.less(ids, 0), ops.greater_equal(ids, k))
        )
        out["label_out_of_range_share"] = _share(bad, n_act)
        out["y_nonfinite"] = ops.convert_to_tensor(0.0)
        saturated = None
        if predictions:
            safe = ops.expand_dims(ops.where(bad, 0, ids), -1)
            saturated = _at_zero_or_one(
                ops.squeeze(ops.take_along_axis(p2, safe, axis=-1), -1)
            )
    else:
        y2 = ops.reshape(_f32(y_true), (-1, k))
        n_act = _count(active)
        label_min = _masked_min(ops.min(y2, axis=-1), active, n_act)
        out["label_min"] = label_min
        sums = ops.sum(y2, axis=-1)
        out["y_nonfinite"] = _nonfinite(ops.sum(sums))
        if spec.kind in ("categorical", "kl"):
            _dense_label_rows(out, y2, sums, active, n_act, label_min)
        else:
            out["label_max"] = _masked_max(ops.max(y2, axis=-1), active, n_act)
            if spec.kind == "binary":
                outside = ops.logical_and(
                    ops.expand_dims(active, -1),
                    ops.logical_or(ops.less(y2, 0.0), ops.greater(y2, 1.0)),
                )
                out["label_out_of_range_share"] = _share(outside, n_act * _f32(k))
        saturated = None
        if predictions and spec.kind in ("categorical", "kl"):
            saturated = _at_zero_or_one(ops.sum(y2 * p2, axis=-1))  # p of the label
        elif predictions and spec.kind == "binary":
            # A sigmoid output saturates on its own: any unit at exactly 0 or 1.
            saturated = ops.any(_at_zero_or_one(p2), axis=-1)

    out["active_rows"] = n_act
    if predictions:
        # Row-wise reductions first (plain passes), masks on the rows after.
        out["pred_min"] = _masked_min(ops.min(p2, axis=-1), active, n_act)
        out["pred_max"] = _masked_max(ops.max(p2, axis=-1), active, n_act)
        psums = ops.sum(p2, axis=-1)
        out["pred_nonfinite"] = _nonfinite(ops.sum(psums))
        if spec.kind in ("categorical", "sparse", "kl"):
            out["pred_sum_min"] = _masked_min(psums, active, n_act)
            out["pred_sum_max"] = _masked_max(psums, active, n_act)
    if saturated is not None:
        out["pred_saturated_share"] = _share(ops.logical_and(active, saturated), n_act)
    return {key: _f32(value) for key, value in out.items()}


def _dense_label_rows(out, y2, sums, active, n_act, label_min):
    """Row sums, empty rows, and (only when a label is negative) where."""
    n_entries = n_act * _f32(ops.shape(y2)[-1])

    def negatives():
        neg = ops.logical_and(ops.expand_dims(active, -1), ops.less(y2, 0.0))
        row_neg = ops.any(neg, axis=-1)
        first = ops.where(ops.any(row_neg), _f32(ops.argmax(_f32(row_neg))), -1.0)
        return ops.stack(
            [_share(neg, n_entries), _share(row_neg, n_act), first]
        ), row_neg

    def none():
        return ops.convert_to_tensor([0.0, 0.0, -1.0]), ops.zeros_like(active)

    packed, row_neg = ops.cond(label_min < 0, negatives, none)
    out["label_neg_share"] = packed[0]
    out["label_neg_row_share"] = packed[1]
    out["label_neg_first_row"] = packed[2]
    empty = ops.logical_and(
        ops.logical_and(active, ops.equal(sums, 0.0)), ops.logical_not(row_neg)
    )
    nonempty = ops.logical_and(active, ops.logical_not(empty))
    n_nonempty = _count(nonempty)
    out["label_empty_share"] = _share(empty, n_act)
    out["label_sum_min"] = _masked_min(sums, nonempty, n_nonempty)
    out["label_sum_max"] = _masked_max(sums, nonempty, n_nonempty)
    out["label_sum_mean"] = ops.where(
        n_nonempty > 0,
        ops.sum(ops.where(nonempty, sums, 0.0)) / ops.maximum(n_nonempty, 1.0),
        NAN,
    )
    off = ops.logical_and(nonempty, ops.greater(ops.abs(sums - 1.0), SUM_TOLERANCE))
    out["label_sum_off_share"] = _share(off, n_act)


# --------------------------------------------------------------------------
# stateful Keras metrics over the same statistics
# --------------------------------------------------------------------------
class BatchStatistic(keras.metrics.Metric):
    """Tracks one of `OUTPUT_KEYS` across batches: its min, max or mean.

    Args:
        statistic: A key of `OUTPUT_KEYS`, e.g. `"label_sum_max"`.
        reduce: `"min"`, `"max"` or `"mean"` over the batches seen.
        kind: The loss family whose labels these are (`"categorical"`,
            `"sparse"`, `"binary"`, ...).
        name, dtype: As any Keras metric.

    Example:

    >>> import numpy as np
    >>> m = BatchStatistic("label_min", reduce="min")
    >>> m.update_state(np.array([[0.0, 1.0], [-1.0, 2.0]]), np.full((2, 2), 0.5))
    >>> float(m.result())
    -1.0
    """

    _INITIAL = {"min": _INF, "max": -_INF, "mean": 0.0}

    def __init__(
        self, statistic, reduce="max", kind="categorical", name=None, dtype=None
    ):
        if statistic not in OUTPUT_KEYS:
            raise ValueError(
                f"`statistic` must be one of {OUTPUT_KEYS}. "
                f"Received: statistic={statistic!r}."
            )
        if reduce not in self._INITIAL:
            raise ValueError(
                f"`reduce` must be 'min', 'max' or 'mean'. Received: reduce={reduce!r}."
            )
        super().__init__(name=name or f"{statistic}_{reduce}", dtype=dtype)
        self.statistic, self.reduce, self.kind = statistic, reduce, kind
        self._spec = OutputSpec(name="output", loss_name="metric", kind=kind)
        self.value = self.add_variable((), initializer="zeros", name="value")
        self.batches = self.add_variable((), initializer="zeros", name="batches")
        self.reset_state()

    def update_state(self, y_true, y_pred, sample_weight=None):
        v = output_statistics(y_true, y_pred, sample_weight, self._spec)[self.statistic]
        v = ops.where(ops.isnan(v), self._INITIAL[self.reduce], v)
        if self.reduce == "min":
            self.value.assign(ops.minimum(self.value, v))
        elif self.reduce == "max":
            self.value.assign(ops.maximum(self.value, v))
        else:
            self.value.assign_add(v)
        self.batches.assign_add(1.0)

    def result(self):
        if self.reduce == "mean":
            return self.value / ops.maximum(self.batches, 1.0)
        return self.value

    def reset_state(self):
        self.value.assign(self._INITIAL[self.reduce])
        self.batches.assign(0.0)

    def get_config(self):
        return {
            **super().get_config(),
            "statistic": self.statistic,
            "reduce": self.reduce,
            "kind": self.kind,
        }


_register = keras.saving.register_keras_serializable(package="lossguard")
BatchStatistic = _register(BatchStatistic)


def _metric_class(class_name, statistic, reduce, doc):
    """A registered `BatchStatistic` with its statistic and reduction fixed."""

    def __init__(self, name=None, dtype=None, kind="categorical"):
        BatchStatistic.__init__(self, statistic, reduce, kind, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "kind": self.kind}

    cls = type(
        class_name,
        (BatchStatistic,),
        {
            "__init__": __init__,
            "get_config": get_config,
            "__doc__": doc,
            "__module__": __name__,
        },
    )
    return _register(cls)


LabelMin = _metric_class(
    "LabelMin",
    "label_min",
    "min",
    "Smallest label seen (a negative one lets -y log p go below zero).",
)
LabelSumMin = _metric_class(
    "LabelSumMin",
    "label_sum_min",
    "min",
    "Smallest non-empty label row sum (1 for one-hot or soft labels).",
)
LabelSumMax = _metric_class(
    "LabelSumMax",
    "label_sum_max",
    "max",
    "Largest label row sum (1 for one-hot or soft labels).",
)
NegativeLabelShare = _metric_class(
    "NegativeLabelShare",
    "label_neg_share",
    "mean",
    "Mean share of negative label entries.",
)
EmptyLabelRowShare = _metric_class(
    "EmptyLabelRowShare",
    "label_empty_share",
    "mean",
    "Mean share of all-zero label rows.",
)
PredictionMin = _metric_class(
    "PredictionMin",
    "pred_min",
    "min",
    "Smallest prediction (below 0: these are not probabilities).",
)
PredictionMax = _metric_class(
    "PredictionMax",
    "pred_max",
    "max",
    "Largest prediction (above 1: these are not probabilities).",
)
PredictionSumMin = _metric_class(
    "PredictionSumMin", "pred_sum_min", "min", "Smallest prediction row sum."
)
PredictionSumMax = _metric_class(
    "PredictionSumMax", "pred_sum_max", "max", "Largest prediction row sum."
)
