"""Stateful Keras metrics over lossguard's in-graph batch statistics.

Each tracks one statistic of `lossguard.diagnosis.statistics` (label sums,
prediction ranges, the share of negative labels, ...) across batches, and can
be used on its own in `model.compile(metrics=[...])`.
"""

from __future__ import annotations

import keras
from keras import ops

from lossguard.diagnosis.specs import OutputSpec
from lossguard.diagnosis.statistics import OUTPUT_KEYS, output_statistics

__all__ = [
    "BatchStatistic",
    "EmptyLabelRowShare",
    "LabelMin",
    "LabelSumMax",
    "LabelSumMin",
    "NegativeLabelShare",
    "PredictionMax",
    "PredictionMin",
    "PredictionSumMax",
    "PredictionSumMin",
]

_INF = float("inf")


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
