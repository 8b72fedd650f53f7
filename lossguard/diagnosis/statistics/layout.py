"""One output on one batch, laid out as rows: every axis but the class axis.

Rows whose sample weight or Keras mask is 0 (or whose label is the loss's
`ignore_class`) are *inactive*: they cannot change the loss, so the label and
prediction statistics ignore them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
from keras import ops

from lossguard.diagnosis.specs import OutputSpec

from .common import HALF, ReplicaRule, Stat, both, count, f32
from .weights import token_weights

LAYOUT_STATS = (
    Stat("rows", ReplicaRule.SUM, "int64", doc="token rows (every axis but classes)"),
    Stat("active_rows", ReplicaRule.SUM, "int64", doc="rows with weight and mask != 0"),
    Stat("time_steps", ReplicaRule.FIRST, "int64", doc="the output's second axis"),
    Stat("masked", ReplicaRule.MAX, "bool", doc="the output carries a Keras mask"),
    Stat("weighted", ReplicaRule.MAX, "bool", doc="sample weights were given"),
)


@dataclasses.dataclass
class OutputBatch:
    """What every statistic of one output reads. Sizes are Python numbers
    where the shapes are known while tracing, else scalar tensors."""

    spec: OutputSpec
    #: The labels, shaped for the loss kind (ids squeezed, targets expanded).
    labels: Any
    #: The output as float32, as shaped, and as (rows, classes).
    output: Any
    probs: Any
    classes: Any
    #: Token axes of the output (1 for (batch, classes), 2 for sequences).
    rank: int
    rows: Any
    n_rows: Any
    #: Sample weights times the mask, one per row (None: no weights, no mask),
    #: and the weights as given.
    weights: Any
    raw_weights: Any
    #: The rows the loss counts (None: every row) and how many.
    active: Any
    n_active: Any
    masked: bool
    weighted: bool
    #: Whether the full-width prediction statistics are taken.
    full_predictions: bool

    def keep_only(self, keep) -> None:
        """Count only the rows where `keep` holds from now on."""
        self.active = both(self.active, keep)
        self.n_active = count(self.active)


def lay_out(y_true, y_pred, sample_weight, spec, mask, predictions) -> OutputBatch:
    """The batch of one output as rows (`y_pred` already a tensor)."""
    half = keras.backend.standardize_dtype(y_pred.dtype) in HALF
    p = f32(y_pred)
    k = p.shape[-1] if p.shape[-1] is not None else ops.shape(p)[-1]
    probs = ops.reshape(p, (-1, k))
    rows = probs.shape[0] if probs.shape[0] is not None else ops.shape(probs)[0]
    weights, raw_weights = token_weights(sample_weight, mask, p, rows)
    n_rows = float(rows) if isinstance(rows, int) else f32(rows)
    active = None if weights is None else ops.not_equal(weights, 0.0)
    return OutputBatch(
        spec=spec,
        labels=labels_for(y_true, y_pred, spec),
        output=p,
        probs=probs,
        classes=k,
        rank=len(p.shape) - 1,
        rows=rows,
        n_rows=n_rows,
        weights=weights,
        raw_weights=raw_weights,
        active=active,
        n_active=n_rows if active is None else count(active),
        masked=mask is not None,
        weighted=sample_weight is not None,
        full_predictions=bool(predictions or half),  # saturation is half's fault
    )


def labels_for(y_true, y_pred, spec):
    """The labels shaped as the loss kind reads them."""
    y_true = ops.convert_to_tensor(y_true)
    if spec.sparse_labels:
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        return y_true
    if len(y_true.shape) == len(y_pred.shape) - 1 and y_pred.shape[-1] == 1:
        y_true = ops.expand_dims(y_true, -1)
    return y_true


def layout_statistics(batch: OutputBatch) -> dict:
    """`LAYOUT_STATS` (active rows once the labels have had their say)."""
    steps = f32(ops.shape(batch.output)[1]) if batch.rank >= 2 else 1.0
    return {
        "rows": batch.n_rows,
        "active_rows": batch.n_active,
        "time_steps": ops.convert_to_tensor(steps),
        "masked": ops.convert_to_tensor(float(batch.masked)),
        "weighted": ops.convert_to_tensor(float(batch.weighted)),
    }
