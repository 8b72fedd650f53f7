"""Label faults: labels that are not what the loss takes them for.

Cross-entropy -sum(y * log p) is a cross-entropy, and never negative, only
while every label row is a distribution (y >= 0, sum(y) = 1); sparse ids must
index a class, and binary targets lie in [0, 1]. Each check reads the label
statistics of one output on one batch (`lossguard.diagnosis.statistics`).
"""

from __future__ import annotations

import math

from lossguard import backends
from lossguard.diagnosis.crashes import label_out_of_range
from lossguard.diagnosis.faults.format import num, of_output, pct
from lossguard.diagnosis.registry import fault
from lossguard.diagnosis.specs import clip_ceiling
from lossguard.diagnosis.statistics import SUM_TOLERANCE

NEGATIVE_LABELS = fault(
    "NEGATIVE_LABELS",
    "error",
    "Negative labels",
    "Some y_true < 0 under a cross-entropy or KL loss: -y log p flips sign.",
)
LABEL_SUM_NOT_ONE = fault(
    "LABEL_SUM_NOT_ONE",
    "error",
    "Label rows do not sum to 1",
    "Categorical label rows are not distributions; the loss scales with the sum.",
)
EMPTY_LABEL_ROWS = fault(
    "EMPTY_LABEL_ROWS",
    "warning",
    "All-zero label rows",
    "Zero rows add no loss but count in the mean: the loss looks too good.",
)
LABELS_OUT_OF_RANGE = fault(
    "LABELS_OUT_OF_RANGE",
    "error",
    "Labels out of range",
    "Binary targets outside [0, 1], or sparse ids outside [0, K).",
)


def _sparse_ids(k):
    """Why a sparse id outside [0, K) breaks the loss, and the fix."""
    return (
        f"Sparse cross-entropy reads p[y]; an id outside [0, {k}) has no "
        "prediction to read, so TensorFlow raises on CPU (and returns NaN on GPU).",
        "Use ids in [0, vocab_size), or pass ignore_class=pad_id for a padding id.",
    )


def _position(s) -> dict:
    row = int(s["label_neg_first_row"])
    steps = max(int(s.get("time_steps") or 1), 1)
    return {"first_sample": row // steps, "first_position": row % steps}


@NEGATIVE_LABELS.check(
    "output",
    when=lambda ctx: (
        ctx.spec.label_rows_are_distributions and ctx.stats["label_min"] < 0
    ),
)
def negative_labels(ctx):
    ymin, ceiling = ctx.stats["label_min"], clip_ceiling()
    pos = _position(ctx.stats)
    return NEGATIVE_LABELS.finding(
        f"Labels{of_output(ctx.spec, ctx.single)} go down to {num(ymin)}: "
        f"{pct(ctx.stats['label_neg_share'])} of label entries and "
        f"{pct(ctx.stats['label_neg_row_share'])} of label rows are negative (first at "
        f"sample {pos['first_sample']}, position {pos['first_position']}); the "
        f"batch loss is {num(ctx.batch['loss'])}.",
        "Cross-entropy is -sum(y * log p), and -log p >= 0, so every term with "
        f"y >= 0 is >= 0. A label y = {num(ymin)} flips the sign: its term "
        "y * (-log p) is smallest when the model predicts p -> 0 for that class. "
        f"Where Keras clips p into [eps, 1 - eps], -log p <= -log eps = "
        f"{num(ceiling)} and the term lies in [{num(ymin * ceiling)}, 0]; on a "
        "Keras softmax output it uses the logits and the term has no lower "
        "bound. Either way the loss can fall "
        "below zero and the gradient pushes towards it. Negative labels come "
        "from embedding vectors (GloVe, word2vec) used as targets, a -1 padding "
        "row, or labels scaled to [-1, 1]; pre-trained embeddings used as inputs "
        "only change p and cannot do this.",
        "Predict token ids with Dense(vocab_size, activation='softmax') and a "
        "sparse cross-entropy (lossguard.losses.StableSparseCategoricalCrossentropy"
        "(ignore_class=pad_id)); to regress embedding vectors use cosine "
        "similarity or MSE instead; mask padding (mask_zero=True, ignore_class) "
        "instead of encoding it as -1.",
        {
            "output": ctx.spec.name,
            "label_min": ymin,
            "negative_entry_share": ctx.stats["label_neg_share"],
            "negative_row_share": ctx.stats["label_neg_row_share"],
            **pos,
            "batch_loss": ctx.batch["loss"],
        },
    )


@LABEL_SUM_NOT_ONE.check(
    "output",
    when=lambda ctx: ctx.spec.one_hot_labels and ctx.stats["label_sum_off_share"] > 0,
)
def label_sum_not_one(ctx):
    lo, hi, mean = (
        ctx.stats["label_sum_min"],
        ctx.stats["label_sum_max"],
        ctx.stats["label_sum_mean"],
    )
    worst = lo if abs(lo - 1) > abs(hi - 1) else hi
    k = ctx.spec.units or 0
    uniform = (
        f" (a uniform p over {k} classes costs {num(worst)} * log {k} = "
        f"{num(worst * math.log(k))} on such a row instead of {num(math.log(k))})"
        if k > 1
        else ""
    )
    return LABEL_SUM_NOT_ONE.finding(
        f"Label rows{of_output(ctx.spec, ctx.single)} sum to between {num(lo)} "
        f"and {num(hi)} "
        f"(mean {num(mean)}); {pct(ctx.stats['label_sum_off_share'])} of rows are off "
        f"1 by more than {SUM_TOLERANCE:g}.",
        "Categorical cross-entropy -sum(y * log p) is a cross-entropy only when "
        "each label row is a distribution. The loss scales with the row sum s"
        f"{uniform}; multi-hot rows ask p to be 1 on several classes at once, "
        "which a softmax cannot do, and a negative sum flips the loss's sign.",
        "Normalise each label row to sum to 1; for multi-label targets use "
        "sigmoid outputs with binary cross-entropy.",
        {
            "output": ctx.spec.name,
            "label_sum_min": lo,
            "label_sum_max": hi,
            "label_sum_mean": mean,
            "off_row_share": ctx.stats["label_sum_off_share"],
        },
    )


@EMPTY_LABEL_ROWS.check(
    "output",
    when=lambda ctx: ctx.spec.one_hot_labels and ctx.stats["label_empty_share"] > 0,
)
def empty_label_rows(ctx):
    share = ctx.stats["label_empty_share"]
    return EMPTY_LABEL_ROWS.finding(
        f"{pct(share)} of the unmasked label rows{of_output(ctx.spec, ctx.single)} are "
        "all zero.",
        "An all-zero row adds -sum(0 * log p) = 0 to the loss but still counts in "
        f"the mean, so the reported loss is {pct(share)} lower than the mean over "
        "real tokens (and accuracy is inflated the same way). This is usually "
        "padding one-hot encoded as zeros.",
        "Mask those positions: Embedding(mask_zero=True) on the decoder input, "
        "sparse labels with ignore_class=pad_id, or sample weights of 0.",
        {
            "output": ctx.spec.name,
            "empty_row_share": share,
            "active_rows": ctx.stats["active_rows"],
        },
    )


@LABELS_OUT_OF_RANGE.check(
    "output",
    when=lambda ctx: (
        ctx.spec.ranged_labels and ctx.stats["label_out_of_range_share"] > 0
    ),
)
def labels_out_of_range(ctx):
    share = ctx.stats["label_out_of_range_share"]
    lo, hi = ctx.stats["label_min"], ctx.stats["label_max"]
    if ctx.spec.binary_targets:
        why = (
            "Binary cross-entropy is -(y log p + (1 - y) log(1 - p)). For y > 1 "
            "the factor (1 - y) is negative and for y < 0 the factor y is, so the "
            "loss is no longer bounded below by 0 and rewards the wrong "
            "direction."
        )
        fix = (
            "Rescale the targets into [0, 1] (e.g. divide 0-255 masks by 255) "
            "or binarise them."
        )
        valid = "[0, 1]"
    else:
        why, fix = _sparse_ids(ctx.spec.units)
        valid = f"[0, {ctx.spec.units})"
    return LABELS_OUT_OF_RANGE.finding(
        f"Labels{of_output(ctx.spec, ctx.single)} range over [{num(lo)}, {num(hi)}]; "
        f"{pct(share)} are outside {valid}.",
        why,
        fix,
        {
            "output": ctx.spec.name,
            "label_min": lo,
            "label_max": hi,
            "out_of_range_share": share,
            "valid_range": valid,
        },
    )


@LABELS_OUT_OF_RANGE.check("crash")
def label_range_crash(ctx):
    """A sparse label outside [0, K) aborts the step: explain it from the
    error's own text (`label_out_of_range`), whatever loss called the op."""
    refused = label_out_of_range(ctx.error)
    if refused is None:
        return None
    k = refused.classes
    widths = [s for s in ctx.specs if s.units is not None and s.units > 1]
    # The output whose width is the K the error names; else the only one.
    spec = next((s for s in widths if s.units == k), None)
    if spec is None and len(ctx.specs) == 1:
        spec = ctx.specs[0]
    if k is None and spec is not None and spec.units:
        k = spec.units
    valid = f"[0, {k})" if k else "[0, K)"
    why, fix = _sparse_ids(k or "K")
    backend = backends.current().label
    name = spec.name if spec is not None else None
    of = f" of output '{name}'" if name and len(ctx.specs) > 1 else ""
    return LABELS_OUT_OF_RANGE.finding(
        f"A sparse label{of} is {refused.value}, outside {valid}; {backend} "
        f"stopped the step in {refused.op}: {refused.detail}",
        why,
        fix,
        {
            "output": name,
            "label": refused.value,
            "valid_range": valid,
            "op": refused.op,
            "error": refused.detail,
        },
        epoch=ctx.epoch,
        step=ctx.step,
        phase=ctx.phase,
    )
