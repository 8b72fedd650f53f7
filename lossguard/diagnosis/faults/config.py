"""Configuration faults: a compile() setting that no data can make right.

These are proven by the compiled loss and the output layer alone, before any
batch runs: a categorical cross-entropy over one unit is always 0, and label
smoothing outside [0, 1] gives negative target weights.
"""

from __future__ import annotations

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


@SINGLE_UNIT_CATEGORICAL.check("config")
def single_unit_categorical(spec):
    if not (spec.kind == "categorical" and spec.units == 1):
        return None
    return SINGLE_UNIT_CATEGORICAL.finding(
        f"'{spec.loss_name}' on output '{spec.name}', which has 1 unit.",
        "Categorical cross-entropy normalises each prediction row to sum to 1; a "
        "row of one value always becomes 1, log 1 = 0, so the loss is exactly 0 "
        "whatever the model does and nothing is learned.",
        "For two classes use Dense(1, activation='sigmoid') with "
        "binary_crossentropy; for K classes use Dense(K, activation='softmax').",
        {"output": spec.name, "units": 1, "loss": spec.loss_name},
    )


@INVALID_LABEL_SMOOTHING.check("config")
def invalid_label_smoothing(spec):
    ls = spec.label_smoothing
    if 0.0 <= ls <= 1.0:
        return None
    # Binary losses smooth towards 1/2 (K = 2 for their one unit).
    k = 2 if spec.kind == "binary" or not spec.units or spec.units < 2 else spec.units
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
        f"label_smoothing={ls:g} on output '{spec.name}' is outside [0, 1].",
        f"Keras applies y * (1 - ls) + ls / K with no range check: with ls = "
        f"{ls:g} and K = {k} the true class's target is {true:.4g} and every "
        f"other class's is {other:.4g}, {effect}",
        "Use a label_smoothing in [0, 1), typically 0.1.",
        {
            "output": spec.name,
            "label_smoothing": ls,
            "true_target": true,
            "other_target": other,
        },
    )
