"""What the labels are: ranges, row sums, negative and empty rows.

One function per way a loss reads its labels, chosen by its `LossKind`:
class ids (sparse), distributions (categorical, KL), targets (binary and
every other loss). Each returns a `Labels`: the statistics, whether the
labels fit the output on this batch (where they do not, those statistics are
NaN), and what the prediction and sequence statistics need from them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
from keras import ops

from lossguard import backends
from lossguard.kinds import LossKind

from .common import (
    NAN,
    SUM_TOLERANCE,
    ReplicaRule,
    Stat,
    at_zero_or_one,
    both,
    count,
    f32,
    fit_rows,
    masked_max,
    masked_min,
    nonfinite,
    share,
)
from .layout import OutputBatch

LABEL_STATS = (
    Stat("label_min", ReplicaRule.MIN, outputs="min", doc="the smallest label"),
    Stat("label_max", ReplicaRule.MAX, doc="the largest label (or id)"),
    Stat("label_neg_share", ReplicaRule.BY_ACTIVE_ROWS, doc="negative label entries"),
    Stat("label_neg_row_share", ReplicaRule.BY_ACTIVE_ROWS, doc="rows with one"),
    Stat("label_neg_first_row", ReplicaRule.FIRST_ROW, "int64", doc="the first"),
    Stat("label_sum_min", ReplicaRule.MIN, outputs="min", doc="smallest row sum"),
    Stat("label_sum_max", ReplicaRule.MAX, outputs="max", doc="largest row sum"),
    Stat("label_sum_mean", ReplicaRule.BY_NONEMPTY_ROWS, doc="mean non-empty row sum"),
    Stat("label_sum_off_share", ReplicaRule.BY_ACTIVE_ROWS, doc="rows off 1 by > 1e-3"),
    Stat("label_empty_share", ReplicaRule.BY_ACTIVE_ROWS, doc="all-zero label rows"),
    Stat(
        "label_out_of_range_share",
        ReplicaRule.BY_ACTIVE_ROWS,
        doc="ids outside [0, K) or targets outside [0, 1]",
    ),
    Stat("y_nonfinite", ReplicaRule.MAX, "bool", doc="NaN/Inf in the labels"),
)


@dataclasses.dataclass
class Labels:
    """What one output's labels showed on a batch."""

    #: Statistics that hold only where the labels fit the output.
    values: dict
    #: Whether they fit (a Python bool known while tracing, else a tensor).
    fits: Any = True
    #: Statistics that hold either way.
    certain: dict = dataclasses.field(default_factory=dict)
    #: One class id per row (one-hot rows and ids), for the sequence checks.
    ids: Any = None
    #: Per row: the prediction the loss reads is exactly 0 or 1.
    saturated: Any = None


def class_ids(batch: OutputBatch) -> Labels:
    """Sparse labels: ids in [0, K); the loss's `ignore_class` is inactive."""
    ids = batch.labels  # int32 and int64 ids are compared as they are
    if keras.backend.standardize_dtype(ids.dtype) not in ("int32", "int64"):
        ids = ops.cast(ids, "int32")
    ids, fits = fit_rows(ids, batch.rows)
    if batch.spec.ignore_class is not None:
        batch.keep_only(ops.not_equal(ids, batch.spec.ignore_class))
    active, n_active, k = batch.active, batch.n_active, batch.classes
    idf = f32(ids)
    outside = ops.logical_or(ops.less(ids, 0), ops.greater_equal(ids, k))
    bad = both(active, outside)
    labels = Labels(
        values={
            "label_min": masked_min(idf, active, n_active),
            "label_max": masked_max(idf, active, n_active),
            "label_out_of_range_share": share(bad, n_active),
        },
        fits=fits,
        certain={"y_nonfinite": ops.convert_to_tensor(0.0)},
        ids=ids,
    )
    if batch.full_predictions:
        # Every id outside [0, K) is read as 0 here, the ignored class too
        # (inactive, so never counted): no id can make the gather fail.
        safe = ops.expand_dims(ops.where(outside, 0, ids), -1)
        p_label = ops.squeeze(ops.take_along_axis(batch.probs, safe, axis=-1), -1)
        labels.saturated = at_zero_or_one(p_label)
    return labels


def distributions(batch: OutputBatch) -> Labels:
    """Label rows that must each be a distribution (y >= 0, sum 1)."""
    y2, labels = _dense(batch)
    active, n_active = batch.active, batch.n_active
    sums = ops.sum(y2, axis=-1)
    labels.values["y_nonfinite"] = nonfinite(ops.sum(sums))
    labels.values.update(
        _dense_label_rows(y2, sums, active, n_active, labels.values["label_min"])
    )
    if batch.spec.one_hot_labels:
        labels.ids = ops.argmax(y2, axis=-1)
    if batch.full_predictions:
        labels.saturated = at_zero_or_one(ops.sum(y2 * batch.probs, axis=-1))
    return labels


def targets(batch: OutputBatch) -> Labels:
    """Any other labels: their range ([0, 1] for binary targets)."""
    y2, labels = _dense(batch)
    active, n_active = batch.active, batch.n_active
    labels.values["y_nonfinite"] = nonfinite(ops.sum(ops.sum(y2, axis=-1)))
    labels.values["label_max"] = masked_max(ops.max(y2, axis=-1), active, n_active)
    if batch.spec.binary_targets:
        outside = ops.logical_or(ops.less(y2, 0.0), ops.greater(y2, 1.0))
        if active is not None:
            outside = ops.logical_and(ops.expand_dims(active, -1), outside)
        labels.values["label_out_of_range_share"] = share(
            outside, n_active * f32(batch.classes)
        )
        if batch.full_predictions:
            # A sigmoid output saturates on its own: any unit at exactly 0 or 1.
            labels.saturated = ops.any(at_zero_or_one(batch.probs), axis=-1)
    return labels


def _dense(batch):
    """Dense labels as (rows, classes), and their smallest entry."""
    y2, fits = fit_rows(f32(batch.labels), batch.rows, batch.classes)
    label_min = masked_min(ops.min(y2, axis=-1), batch.active, batch.n_active)
    return y2, Labels(values={"label_min": label_min}, fits=fits)


#: How each loss family reads its labels (any other: as targets).
BY_KIND = {
    LossKind.SPARSE: class_ids,
    LossKind.CATEGORICAL: distributions,
    LossKind.KL: distributions,
}


def label_statistics(batch: OutputBatch) -> Labels:
    """The labels' statistics, as the output's loss kind reads them (none for
    dense labels whose class count is unknown while tracing)."""
    measure = BY_KIND.get(batch.spec.kind, targets)
    if measure is not class_ids and not isinstance(batch.classes, int):
        return Labels(values={})
    return measure(batch)


def _dense_label_rows(y2, sums, active, n_act, label_min) -> dict:
    """Row sums, empty rows, and (only when a label is negative) where."""
    width = y2.shape[-1]
    if isinstance(n_act, float) and isinstance(width, int):
        n_entries = n_act * width
    else:
        n_entries = n_act * f32(ops.shape(y2)[-1])

    def negatives():
        neg = ops.less(y2, 0.0)
        if active is not None:
            neg = ops.logical_and(ops.expand_dims(active, -1), neg)
        row_neg = ops.any(neg, axis=-1)
        first = ops.where(ops.any(row_neg), f32(ops.argmax(f32(row_neg))), -1.0)
        return ops.stack([share(neg, n_entries), share(row_neg, n_act), first]), row_neg

    def none():
        return ops.convert_to_tensor([0.0, 0.0, -1.0]), ops.zeros_like(sums, "bool")

    if backends.current().branch_free_statistics:
        # Eager: a branch would cost a device sync, and it cannot be
        # vectorised over steps (torch.func.vmap); both give the same values.
        packed, row_neg = negatives()
    else:
        packed, row_neg = ops.cond(label_min < 0, negatives, none)
    empty = ops.logical_and(
        both(active, ops.equal(sums, 0.0)), ops.logical_not(row_neg)
    )
    nonempty = both(active, ops.logical_not(empty))
    n_nonempty = count(nonempty)
    off = ops.logical_and(nonempty, ops.greater(ops.abs(sums - 1.0), SUM_TOLERANCE))
    return {
        "label_neg_share": packed[0],
        "label_neg_row_share": packed[1],
        "label_neg_first_row": packed[2],
        "label_empty_share": share(empty, n_act),
        "label_sum_min": masked_min(sums, nonempty, n_nonempty),
        "label_sum_max": masked_max(sums, nonempty, n_nonempty),
        "label_sum_mean": ops.where(
            n_nonempty > 0,
            ops.sum(ops.where(nonempty, sums, 0.0)) / ops.maximum(n_nonempty, 1.0),
            NAN,
        ),
        "label_sum_off_share": share(off, n_act),
    }
