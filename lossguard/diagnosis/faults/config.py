"""Configuration faults: a compile() setting that no data can make right.

These are proven by the compiled loss, the output layer and the optimizer
alone, before any batch runs: a categorical cross-entropy over one unit is
always 0, a softmax over one unit always outputs 1, label smoothing outside
[0, 1] gives negative target weights, and an optimizer epsilon that rounds
to 0 in the variables' dtype divides by zero.
"""

from __future__ import annotations

import keras
import numpy as np

from lossguard import backends
from lossguard.diagnosis.registry import fault

SINGLE_UNIT_CATEGORICAL = fault(
    "SINGLE_UNIT_CATEGORICAL",
    "error",
    "Categorical loss over one unit",
    "A 1-unit output normalises to 1: the loss is exactly 0.",
)
INVALID_LABEL_SMOOTHING = fault(
    "INVALID_LABEL_SMOOTHING",
    "error",
    "Label smoothing outside [0, 1]",
    "y (1 - ls) + ls / K gives negative target weights.",
)
SINGLE_UNIT_SOFTMAX = fault(
    "SINGLE_UNIT_SOFTMAX",
    "error",
    "Softmax over one unit",
    "exp(z) / exp(z) = 1: the output is the constant 1, whatever the input.",
)
OPTIMIZER_EPSILON_UNDERFLOW = fault(
    "OPTIMIZER_EPSILON_UNDERFLOW",
    "error",
    "Optimizer epsilon rounds to 0",
    "The optimizer's epsilon is 0 in the variables' dtype: its step divides by 0.",
)


@SINGLE_UNIT_CATEGORICAL.check("config")
def single_unit_categorical(ctx):
    if not (ctx.spec.one_hot_labels and ctx.spec.units == 1):
        return None
    return SINGLE_UNIT_CATEGORICAL.finding(
        f"'{ctx.spec.loss_name}' on output '{ctx.spec.name}', which has 1 unit.",
        "Categorical cross-entropy makes each prediction row a distribution: "
        "it divides the row by its sum (or, on TensorFlow, takes the softmax "
        "of the logits behind a Keras sigmoid or softmax output). A row of one "
        "value always becomes 1, log 1 = 0, so the loss is exactly 0 whatever "
        "the model does and nothing is learned.",
        "For two classes use Dense(1, activation='sigmoid') with "
        "binary_crossentropy; for K classes use Dense(K, activation='softmax').",
        {"output": ctx.spec.name, "units": 1, "loss": ctx.spec.loss_name},
    )


@INVALID_LABEL_SMOOTHING.check("config")
def invalid_label_smoothing(ctx):
    ls = ctx.spec.label_smoothing
    if 0.0 <= ls <= 1.0:
        return None
    # Binary losses smooth towards 1/2 (K = 2 for their one unit).
    k = (
        2
        if ctx.spec.binary_targets or not ctx.spec.units or ctx.spec.units < 2
        else ctx.spec.units
    )
    true, other = 1 - ls + ls / k, ls / k
    if min(true, other) < 0:
        effect = (
            "so a target weight is negative and the loss can go below zero "
            "(it rewards pushing that class's probability to 0)."
        )
    else:
        effect = (
            "so the true class's target is below the others': the smoothed "
            "labels point at the wrong classes and the loss rewards predicting "
            "them."
        )
    return INVALID_LABEL_SMOOTHING.finding(
        f"label_smoothing={ls:g} on output '{ctx.spec.name}' is outside [0, 1].",
        f"Keras applies y * (1 - ls) + ls / K with no range check: with ls = "
        f"{ls:g} and K = {k} the true class's target is {true:.4g} and every "
        f"other class's is {other:.4g}, {effect}",
        "Use a label_smoothing in [0, 1), typically 0.1.",
        {
            "output": ctx.spec.name,
            "label_smoothing": ls,
            "true_target": true,
            "other_target": other,
        },
    )


def _single_unit_softmax_effect(spec) -> str:
    """What a constant output 1 does to this loss, on this backend."""
    reads_logits = backends.current().reads_keras_logits
    if spec.binary_targets and reads_logits and not spec.from_logits:
        return (
            "Under binary cross-entropy Keras' TensorFlow backend reads the "
            "logit z behind its own softmax tensor and computes sigmoid "
            "cross-entropy on it, so the loss falls while the model's output "
            "(and accuracy) stays fixed at 1: the loss trains a sigmoid that "
            "predict() never returns."
        )
    if spec.binary_targets:
        return (
            "Under binary cross-entropy every prediction is p = 1, clipped to "
            "1 - eps: each 0 label costs -log eps = 16.12 and each 1 label 0, "
            "so the loss is 16.12 times the share of 0 labels and never moves."
        )
    if spec.sparse_labels:
        return (
            "Under sparse cross-entropy one unit is one class, id 0: a label "
            "1 is out of range (TensorFlow and PyTorch stop the step)."
        )
    return "Its gradient is 0, so nothing before it learns through it."


@SINGLE_UNIT_SOFTMAX.check("config")
def single_unit_softmax(ctx):
    if not (ctx.spec.activation == "softmax" and ctx.spec.units == 1):
        return None
    return SINGLE_UNIT_SOFTMAX.finding(
        f"Output '{ctx.spec.name}' is a softmax over 1 unit, under "
        f"'{ctx.spec.loss_name}'.",
        "softmax(z) = exp(z) / sum(exp(z)); over one unit that is exp(z) / exp(z) "
        "= 1 for every input, so the model's output is the constant 1 and its "
        f"accuracy cannot change. {_single_unit_softmax_effect(ctx.spec)}",
        "For two classes use Dense(1, activation='sigmoid') with "
        "binary_crossentropy; for K classes use Dense(K, activation='softmax') "
        "with (sparse_)categorical_crossentropy.",
        {
            "output": ctx.spec.name,
            "units": 1,
            "activation": "softmax",
            "loss": ctx.spec.loss_name,
        },
    )


def _optimizer(model):
    """The optimizer that applies the updates (a loss-scale wrapper's inner)."""
    optimizer = getattr(model, "optimizer", None)
    return getattr(optimizer, "inner_optimizer", None) or optimizer


@OPTIMIZER_EPSILON_UNDERFLOW.check("model")
def optimizer_epsilon_underflow(ctx):
    optimizer = _optimizer(ctx.model)
    epsilon = getattr(optimizer, "epsilon", None)
    if not isinstance(epsilon, float | int) or epsilon <= 0:
        return None
    dtypes = sorted(
        {
            keras.backend.standardize_dtype(v.dtype)
            for v in getattr(ctx.model, "trainable_variables", [])
        }
    )
    vanished = [d for d in dtypes if "float" in d and np.asarray(epsilon, d) == 0]
    if not vanished:
        return None
    dtype = vanished[0]
    tiny = float(np.finfo(dtype).smallest_subnormal)
    name = type(optimizer).__name__
    return OPTIMIZER_EPSILON_UNDERFLOW.finding(
        f"{name}'s epsilon={epsilon:g} rounds to 0 in {dtype}, the dtype of "
        "the variables it updates.",
        f"{name} steps by m / (sqrt(v) + epsilon). In {dtype} the smallest "
        f"positive number is {tiny:.3g}, so epsilon = {epsilon:g} becomes 0. "
        f"Wherever the running mean of squared gradients v underflows to 0 "
        f"(its update, a squared gradient times 1 - beta_2, below {tiny:.3g}), "
        "the step is m / 0 = inf, or 0 / 0 = NaN: the weights become "
        "non-finite, and so does every loss after that step.",
        f"Keep the variables in float32 (keras.mixed_precision.set_global_policy"
        "('mixed_float16') computes in float16 with float32 variables), or use "
        f"an epsilon {dtype} can hold, e.g. {name}(epsilon=1e-4).",
        {"optimizer": name, "epsilon": epsilon, "dtype": dtype, "smallest": tiny},
    )
