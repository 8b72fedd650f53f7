"""Which fault explains which: the catalogue's causes and their consequences.

Declared in one place, after every family declared its codes. A cause found
on an output (or on the whole model) explains its declared consequences on
the same output: they are reported under it, with its fix, and never warn,
stop or raise on their own (`lossguard.diagnosis.causes`). The catch-all
`NEGATIVE_LOSS` is not reported at all on a batch that one of its
explainers shows.

Each reason is the mathematics of the link, in one sentence; it is added to
the consequence's explanation. `tests/diagnosis/test_registry.py` injects
each cause alone and checks that the report leads with it and that every
other error or warning names it.
"""

from __future__ import annotations

from lossguard.diagnosis.faults.config import (
    INVALID_LABEL_SMOOTHING,
    OPTIMIZER_EPSILON_UNDERFLOW,
    SINGLE_UNIT_CATEGORICAL,
    SINGLE_UNIT_SOFTMAX,
)
from lossguard.diagnosis.faults.embeddings import (
    EMBEDDING_MISALIGNED,
    EMBEDDING_OOV_ROWS,
)
from lossguard.diagnosis.faults.internals import (
    DEAD_UNITS,
    EXPLODING_GRADIENTS,
    VANISHING_GRADIENTS,
)
from lossguard.diagnosis.faults.labels import (
    EMPTY_LABEL_ROWS,
    LABEL_SUM_NOT_ONE,
    LABELS_OUT_OF_RANGE,
    NEGATIVE_LABELS,
)
from lossguard.diagnosis.faults.loss_terms import (
    LOSS_UNBOUNDED_BELOW,
    NEGATIVE_AUX_LOSS,
    NEGATIVE_LOSS,
    NEGATIVE_WEIGHTS,
    NONFINITE_LOSS,
)
from lossguard.diagnosis.faults.predictions import (
    LOW_PRECISION_SATURATION,
    PREDICTIONS_NOT_PROBABILITIES,
)
from lossguard.diagnosis.faults.seq2seq import PADDING_NOT_MASKED
from lossguard.diagnosis.faults.telltales import (
    LOSS_AT_UNIFORM,
    SATURATED_PREDICTIONS,
)

# ------------------------------------------------------- one unit, one class
SINGLE_UNIT_CATEGORICAL.explains(
    SINGLE_UNIT_SOFTMAX,
    "over one unit the categorical loss is 0 whatever the activation, and its "
    "fix (a sigmoid with binary cross-entropy, or K softmax units) replaces "
    "the softmax too.",
)
SINGLE_UNIT_CATEGORICAL.explains(
    EMPTY_LABEL_ROWS,
    "with one unit a label row is one value, so every label 0 is an all-zero "
    "row: these rows are the 0 class of a binary problem, not padding.",
)
SINGLE_UNIT_CATEGORICAL.explains(
    LABEL_SUM_NOT_ONE,
    "with one unit a label row's sum is the label itself (a class id or a "
    "value), not a distribution over classes.",
)
SINGLE_UNIT_CATEGORICAL.explains(
    PREDICTIONS_NOT_PROBABILITIES,
    "a one-unit prediction row is a single value whose row sum is that value; "
    "the categorical loss divides it by itself, so it reads 1 either way.",
)
SINGLE_UNIT_CATEGORICAL.explains(
    PADDING_NOT_MASKED,
    "the argmax of a one-unit label row is always 0, which the padding check "
    "reads as the padding id 0.",
)
SINGLE_UNIT_SOFTMAX.explains(
    LABELS_OUT_OF_RANGE,
    "a softmax over one unit has one class, id 0: every other id is out of range.",
)

# ------------------------------------------------------------ label encoding
NEGATIVE_LABELS.explains(
    LABEL_SUM_NOT_ONE,
    "label rows with negative entries (vectors such as GloVe's) are not "
    "distributions, so their sums are not 1 either.",
)
EMPTY_LABEL_ROWS.explains(
    PADDING_NOT_MASKED,
    "an all-zero label row reads as id 0 (its argmax), the padding id, so the "
    "same unmasked rows are counted twice.",
)

# --------------------------------------------------------------- embeddings
EMBEDDING_MISALIGNED.explains(
    EMBEDDING_OOV_ROWS,
    "rows shifted from their words hold other words' vectors (or zeros), "
    "which reads as words without a vector.",
)

EMBEDDING_MISALIGNED.explains_crashes(
    "an id past the rows of a layer built for another vocabulary stops the "
    "embedding lookup."
)

# ----------------------------------------------------------- non-finite loss
OPTIMIZER_EPSILON_UNDERFLOW.explains(
    NONFINITE_LOSS,
    "the optimizer's step divides by sqrt(v) + epsilon = 0 where v underflows, "
    "so the weights, and then the predictions and the loss, become "
    "non-finite.",
)
PREDICTIONS_NOT_PROBABILITIES.explains(
    NONFINITE_LOSS,
    "a loss that takes log(p) of a prediction p <= 0 (a logit, a linear or "
    "ReLU output) without clipping gets log 0 = -inf or log(p < 0) = NaN.",
)
LABELS_OUT_OF_RANGE.explains(
    NONFINITE_LOSS,
    "a sparse id outside [0, K) reads no probability (NaN on a GPU), and a "
    "target outside [0, 1] makes log(1 - p) or log(p) unbounded.",
)

EXPLODING_GRADIENTS.explains(
    NONFINITE_LOSS,
    "each step moves the weights by the learning rate times a gradient that "
    "grows geometrically, until the weights, the predictions and the loss "
    "overflow float32 (inf, then inf - inf = NaN).",
)

# ------------------------------------------------------------ inside the model
EXPLODING_GRADIENTS.explains(
    DEAD_UNITS,
    "a step of the learning rate times a gradient orders larger than before "
    "moves a ReLU layer's weights and biases so far that its pre-activations "
    "fall below 0 for every input, where ReLU's gradient is 0 and nothing "
    "brings them back.",
)
DEAD_UNITS.explains(
    LOSS_AT_UNIFORM,
    "a layer whose units are all 0 gives the layers after it the same input "
    "for every sample, so the output is the same for every sample, and "
    "without a bias after it the logits are 0: p = 1/K.",
)
DEAD_UNITS.explains(
    VANISHING_GRADIENTS,
    "ReLU's derivative is 0 below 0, so the gradient reaching the layers "
    "below a dead layer passes only through its few live units.",
)

# ------------------------------------------------- a loss at the clip's ceiling
EXPLODING_GRADIENTS.explains(
    SATURATED_PREDICTIONS,
    "steps that grow with the gradient push the logits apart by far more "
    "than 104, where float32's softmax rounds the true class's p to 0 and "
    "the clip sets its term to -ln(eps).",
)
LOW_PRECISION_SATURATION.explains(
    SATURATED_PREDICTIONS,
    "a true-class probability that rounds to 0 in float16 is clipped to eps, "
    "and its term is -ln(eps) = 16.12.",
)
PREDICTIONS_NOT_PROBABILITIES.explains(
    SATURATED_PREDICTIONS,
    "an output entry <= 0 (a logit, a linear or ReLU output) is clipped to "
    "eps once Keras normalises the row, so its term is -ln(eps) = 16.12.",
)
LABEL_SUM_NOT_ONE.explains(
    SATURATED_PREDICTIONS,
    "-sum(y log p) scales with the label row's sum, so rows summing to more "
    "than 1 multiply the loss past ln K.",
)

# --------------------------------------------- what explains a negative loss
for cause, why in (
    (NEGATIVE_LABELS, "a label y < 0 flips the sign of its term -y log p."),
    (
        LABEL_SUM_NOT_ONE,
        "-sum(y log p) scales with the label row's sum, and a negative sum "
        "flips its sign.",
    ),
    (
        LABELS_OUT_OF_RANGE,
        "a target y > 1 makes (1 - y) log(1 - p) negative, and y < 0 makes "
        "y log p negative.",
    ),
    (NEGATIVE_WEIGHTS, "a negative weight multiplies a loss >= 0."),
    (NEGATIVE_AUX_LOSS, "a negative extra term is added to a data loss >= 0."),
    (LOSS_UNBOUNDED_BELOW, "the loss is negative by design."),
    (NONFINITE_LOSS, "a loss of -inf is below zero, and NaN compares as nothing."),
    (
        PREDICTIONS_NOT_PROBABILITIES,
        "a hand-written -sum(y log p) on outputs p > 1 is negative (log p > 0).",
    ),
    (
        INVALID_LABEL_SMOOTHING,
        "label smoothing outside [0, 1] gives negative target weights.",
    ),
):
    cause.explains(NEGATIVE_LOSS, why)
