"""Prediction faults: outputs that are not what the loss takes them for.

With from_logits=False a cross-entropy expects probabilities: entries in
[0, 1], rows summing to 1. Keras normalises and clips y_pred, so logits or
linear outputs collapse the loss to about 0 or -log(eps); probabilities
passed as logits get a second softmax; half precision rounds them to 0 or 1.
"""

from __future__ import annotations

import math

import numpy as np

from lossguard import backends
from lossguard.diagnosis.faults.format import measured, num, of_output, pct
from lossguard.diagnosis.registry import fault
from lossguard.diagnosis.specs import clip_ceiling
from lossguard.diagnosis.statistics import sum_tolerance

#: Share of saturated target probabilities that counts as saturation.
SATURATION_SHARE = 0.01

PREDICTIONS_NOT_PROBABILITIES = fault(
    "PREDICTIONS_NOT_PROBABILITIES",
    "error",
    "Predictions are not probabilities",
    "The loss expects probabilities but y_pred leaves [0, 1] or rows do not sum to 1.",
)
PROBABILITIES_AS_LOGITS = fault(
    "PROBABILITIES_AS_LOGITS",
    "warning",
    "Probabilities passed as logits",
    "from_logits=True on a softmax/sigmoid output: a double softmax.",
)
LOW_PRECISION_SATURATION = fault(
    "LOW_PRECISION_SATURATION",
    "warning",
    "Half-precision saturation",
    "float16/bfloat16 probabilities round to exactly 0 or 1.",
)


def _not_probabilities(ctx):
    if not ctx.spec.expects_probabilities:
        return False
    tol = sum_tolerance(ctx.spec.dtype)
    out_of_range = (ctx.stats["pred_min"] < 0) | (ctx.stats["pred_max"] > 1 + tol)
    if ctx.spec.binary_targets:
        return out_of_range
    sums = ctx.stats["pred_sum_min"], ctx.stats["pred_sum_max"]
    return out_of_range | (np.abs(sums[0] - 1) > tol) | (np.abs(sums[1] - 1) > tol)


def _why_not_probabilities(spec, sums):
    """The mechanism as the backend computes it, and the fix."""
    if (
        backends.current().reads_keras_logits
        and spec.activation == "sigmoid"
        and spec.categorical
        and not spec.identified
    ):
        return (
            "Keras' TensorFlow backend recognises its own sigmoid tensor and "
            "computes the softmax cross-entropy of the logits z behind it, so "
            "the loss trains softmax(z) while the model outputs sigmoid(z), "
            f"rows that do not sum to 1{sums}: predict() returns values the "
            "loss never measured (on JAX and PyTorch the same loss divides the "
            "sigmoid outputs by their row sum instead).",
            "For one class per sample end the model with a softmax; for "
            "independent (multi-label) classes keep the sigmoid and use "
            "binary_crossentropy.",
        )
    return (
        "With from_logits=False Keras divides y_pred by its row sum and clips it "
        f"into [eps, 1 - eps]: logits (or linear/ReLU outputs) then collapse each "
        f"token's loss to about 0 or about -log eps = {num(clip_ceiling())}, "
        "which measures nothing; a hand-written -sum(y log p) on outputs above 1 "
        "goes negative.",
        "Either set from_logits=True in the loss, or end the model with a "
        "softmax (sigmoid for binary) output layer.",
    )


@PREDICTIONS_NOT_PROBABILITIES.check("output", when=_not_probabilities)
def predictions_not_probabilities(ctx):
    pmin, pmax = ctx.stats["pred_min"], ctx.stats["pred_max"]
    smin, smax = ctx.stats["pred_sum_min"], ctx.stats["pred_sum_max"]
    sums = f", row sums in [{num(smin)}, {num(smax)}]" if measured(smin) else ""
    why, fix = _why_not_probabilities(ctx.spec, sums)
    return PREDICTIONS_NOT_PROBABILITIES.finding(
        f"The loss '{ctx.spec.loss_name}' expects probabilities (from_logits=False) "
        f"but predictions{of_output(ctx.spec, ctx.single)} range over [{num(pmin)}, "
        f"{num(pmax)}]{sums}; the output activation is "
        f"'{ctx.spec.activation}'.",
        why,
        fix,
        {
            "output": ctx.spec.name,
            "pred_min": pmin,
            "pred_max": pmax,
            "pred_sum_min": smin,
            "pred_sum_max": smax,
            "activation": ctx.spec.activation,
        },
    )


def _squashed_logits(ctx):
    if not (ctx.spec.from_logits and ctx.spec.cross_entropy):
        return False
    if ctx.spec.activation in ("softmax", "sigmoid"):
        return True
    tol = sum_tolerance(ctx.spec.dtype)
    looks = (
        (ctx.stats["pred_min"] >= 0)
        & (ctx.stats["pred_max"] <= 1)
        & (np.abs(ctx.stats["pred_sum_min"] - 1) <= tol)
        & (np.abs(ctx.stats["pred_sum_max"] - 1) <= tol)
    )
    return (ctx.stats["pred_softmax"] == 1) | (
        False if ctx.spec.binary_targets else looks
    )


@PROBABILITIES_AS_LOGITS.check("output", when=_squashed_logits)
def probabilities_as_logits(ctx):
    k = ctx.spec.units or 2
    floor = math.log(1 + (k - 1) / math.e)
    activation = ctx.spec.activation or (
        "softmax" if ctx.stats["pred_softmax"] == 1 else None
    )
    seen = (
        f"predictions range over [{num(ctx.stats['pred_min'])}, "
        f"{num(ctx.stats['pred_max'])}]"
        if measured(ctx.stats["pred_min"])
        else "it is a Keras softmax tensor, each row a distribution"
    )
    return PROBABILITIES_AS_LOGITS.finding(
        f"from_logits=True, but the output{of_output(ctx.spec, ctx.single)} "
        "already went "
        f"through '{activation}': {seen}.",
        "A second softmax over probabilities in [0, 1] can never become "
        f"confident: with p_y = 1 the loss is ln(1 + (K - 1)/e) = {num(floor)} "
        f"for K = {k}, so it floors there and learning stalls. Keras' TensorFlow "
        "backend recognises its own softmax/sigmoid tensors and uses their "
        "logits (it warns 'Was this intended?'), but any cast, custom loss or "
        "other backend gets the double softmax.",
        "Drop the output activation (keep from_logits=True), or keep it and set "
        "from_logits=False.",
        {
            "output": ctx.spec.name,
            "activation": activation,
            "classes": k,
            "loss_floor": floor,
            "pred_sum_min": ctx.stats["pred_sum_min"],
            "pred_sum_max": ctx.stats["pred_sum_max"],
        },
    )


@LOW_PRECISION_SATURATION.check(
    "output",
    when=lambda ctx: (
        ctx.spec.dtype in ("float16", "bfloat16")
        and ctx.stats["pred_saturated_share"] > SATURATION_SHARE
    ),
)
def low_precision_saturation(ctx):
    share = ctx.stats["pred_saturated_share"]
    return LOW_PRECISION_SATURATION.finding(
        f"The output{of_output(ctx.spec, ctx.single)} is {ctx.spec.dtype} and "
        "the true class's "
        f"probability is exactly 0 or 1 for {pct(share)} of tokens.",
        f"{ctx.spec.dtype} cannot represent probabilities close to 0 or 1 (float16's "
        "smallest step below 1 is 4.9e-4, and values under about 3e-8 round to "
        "0), so "
        f"tokens lose exactly -log eps = {num(clip_ceiling())} or exactly 0 and "
        "their gradient is cut.",
        "Keep the output layer in float32: Dense(..., dtype='float32') or "
        "Activation('softmax', dtype='float32') under a mixed-precision policy.",
        {"output": ctx.spec.name, "dtype": ctx.spec.dtype, "saturated_share": share},
    )
