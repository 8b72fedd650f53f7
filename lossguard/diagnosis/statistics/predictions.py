"""What the predictions are: ranges, row sums, saturation, and whether they
are a Keras softmax (a distribution by construction)."""

from __future__ import annotations

import keras
from keras import ops

from .common import ReplicaRule, Stat, both, masked_max, masked_min, nonfinite, share
from .layout import OutputBatch

PREDICTION_STATS = (
    Stat("pred_min", ReplicaRule.MIN, outputs="min", doc="the smallest prediction"),
    Stat("pred_max", ReplicaRule.MAX, outputs="max", doc="the largest prediction"),
    Stat("pred_sum_min", ReplicaRule.MIN, outputs="min", doc="smallest row sum"),
    Stat("pred_sum_max", ReplicaRule.MAX, outputs="max", doc="largest row sum"),
    Stat("pred_saturated_share", ReplicaRule.BY_ACTIVE_ROWS, doc="p exactly 0 or 1"),
    Stat("pred_nonfinite", ReplicaRule.MAX, "bool", doc="NaN/Inf in the output"),
    Stat("pred_softmax", ReplicaRule.MAX, "bool", doc="y_pred is a Keras softmax"),
    Stat("pred_spread", ReplicaRule.MAX, doc="output's spread over the first rows"),
)

#: Rows the spread of the output is measured over (cheap at any width).
SPREAD_ROWS = 16


def prediction_statistics(batch: OutputBatch) -> dict:
    """Ranges and row sums over the full (rows, classes) output: three passes,
    taken where `batch.full_predictions`."""
    if not batch.full_predictions:
        return {}
    probs, active, n_active = batch.probs, batch.active, batch.n_active
    # Row-wise reductions first (plain passes), masks on the rows after.
    psums = ops.sum(probs, axis=-1)
    out = {
        "pred_min": masked_min(ops.min(probs, axis=-1), active, n_active),
        "pred_max": masked_max(ops.max(probs, axis=-1), active, n_active),
        "pred_nonfinite": nonfinite(ops.sum(psums)),
    }
    if batch.spec.prediction_rows_sum_to_one:
        out["pred_sum_min"] = masked_min(psums, active, n_active)
        out["pred_sum_max"] = masked_max(psums, active, n_active)
    return out


def spread_statistics(batch: OutputBatch) -> dict:
    """How much the output differs between inputs: the largest distance (over
    classes) of one of the first `SPREAD_ROWS` rows from their mean. 0 where
    the output does not depend on the input; masked rows count too (they
    only add spread). Taken with the full-width prediction statistics
    (`predictions="all"`): on a Keras softmax the loss reads the logits, and
    touching the probabilities makes the step compute the softmax it
    otherwise skips (0.1 ms on a 0.5 ms step). NaN for a batch known to
    hold one row."""
    if not (batch.spec.categorical and batch.full_predictions):
        return {}
    if isinstance(batch.rows, int) and batch.rows < 2:
        return {}
    head = batch.probs[:SPREAD_ROWS]
    return {"pred_spread": ops.max(ops.abs(head - ops.mean(head, axis=0)))}


def saturation_statistics(batch: OutputBatch, saturated) -> dict:
    """The share of active rows whose prediction the loss reads is exactly 0
    or 1 (`saturated`, per row, as the labels found it)."""
    if saturated is None:
        return {}
    return {
        "pred_saturated_share": share(both(batch.active, saturated), batch.n_active)
    }


def softmax_statistics(y_pred, spec) -> dict:
    return {
        "pred_softmax": ops.convert_to_tensor(
            float(is_keras_softmax(y_pred, spec.activation))
        )
    }


def is_keras_softmax(y_pred, activation=None) -> bool:
    """True for a float32 tensor made by a Keras softmax over its last axis.

    Such a tensor is a probability distribution by construction: every entry
    in [0, 1], rows summing to 1 within float32 rounding. Known on every
    backend from the output layer's `activation` ("softmax"); on TensorFlow
    also from the graph (the tensor carries its logits, made by a Softmax op).
    """
    float32 = keras.backend.standardize_dtype(y_pred.dtype) == "float32"
    if activation == "softmax" and float32:
        return True
    if getattr(y_pred, "_keras_logits", None) is None:  # softmax or sigmoid
        return False
    try:
        op = y_pred.op.type  # a graph tensor (inside the train step)
    except AttributeError:  # eager: nothing to tell softmax from sigmoid by
        return False
    return op == "Softmax" and float32
