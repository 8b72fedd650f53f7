"""Loss-term faults: the weights and extra terms of Keras' total loss.

Keras reports sum_outputs(loss_weight * reduce(sample_weight * loss)) +
sum(model.losses). With labels and predictions in order each data term is
>= 0, so a negative or non-finite total comes from a weight, an extra term,
or a loss that is not a cross-entropy. Each check reads one batch's
statistics, or the compile configuration.
"""

from __future__ import annotations

import numpy as np

from lossguard.diagnosis.faults.format import measured, num, of_output, pct
from lossguard.diagnosis.registry import explainers, fault
from lossguard.diagnosis.specs import UNBOUNDED_RANGES, name_key
from lossguard.diagnosis.statistics import AUX_TERM

NEGATIVE_WEIGHTS = fault(
    "NEGATIVE_WEIGHTS",
    "error",
    "Negative weights",
    "A negative sample_weight, class_weight or loss_weights entry.",
)
NEGATIVE_AUX_LOSS = fault(
    "NEGATIVE_AUX_LOSS",
    "error",
    "Negative extra loss term",
    "A term of model.losses (add_loss, a regulariser) pulls the total below 0.",
)
LOSS_UNBOUNDED_BELOW = fault(
    "LOSS_UNBOUNDED_BELOW",
    "info",
    "Loss negative by design",
    "The loss is not a cross-entropy and is negative at its best (e.g. cosine).",
)
NONFINITE_LOSS = fault(
    "NONFINITE_LOSS",
    "error",
    "Non-finite loss",
    "NaN or Inf in the loss, traced to its first non-finite source.",
)
NEGATIVE_LOSS = fault(
    "NEGATIVE_LOSS",
    "warning",
    "Negative loss, unexplained",
    "A batch loss below zero that no specific code explains.",
)

#: Below this a loss is negative, not float rounding around 0.
NEGATIVE_BELOW = -1e-6


@NONFINITE_LOSS.check("batch", when=lambda ctx: ~np.isfinite(ctx.batch["loss"]))
def nonfinite_loss(ctx):
    sources = [("inputs", ctx.batch.get("x_nonfinite", 0))]
    for spec, s in zip(ctx.specs, ctx.outputs, strict=True):
        sources += [
            (f"labels ({spec.name})", s["y_nonfinite"]),
            (f"sample weights ({spec.name})", s["weight_nonfinite"]),
            (f"predictions ({spec.name})", s["pred_nonfinite"]),
        ]
    sources.append(
        ("an extra loss term (model.losses)", ctx.batch.get("aux_nonfinite", 0))
    )
    first = next((name for name, flag in sources if measured(flag) and flag), None)
    unmeasured = [
        f"predictions ({spec.name})"
        for spec, s in zip(ctx.specs, ctx.outputs, strict=True)
        if not measured(s["pred_nonfinite"])
    ]
    # A skipped prediction pass (a Keras softmax: the loss reads its logits)
    # leaves the model itself as the only source left once the rest is finite.
    source = first or (unmeasured[0] if unmeasured else None)
    source = source or _diverged(ctx.specs, ctx.outputs)
    source = source or "overflow in the loss computation itself"
    kind = source.split()[0]
    why = {
        "inputs": "NaN or Inf in the input batch propagates through every layer.",
        "labels": "a NaN or Inf label makes its term y * log p non-finite.",
        "sample": "a NaN or Inf weight multiplies the token's loss.",
        "predictions": "the inputs and labels are finite, so the model itself "
        "overflowed (exploding activations or weights, often a learning rate "
        "too high) or already holds NaN weights from an earlier step.",
        "an": "an add_loss term or regulariser is non-finite.",
        "diverged": "the predictions are finite but so large that the loss "
        "overflows float32 (its largest number is 3.4e38, and a squared error "
        "overflows from about 1.8e19): the model diverged, typically a "
        "learning rate too high for unscaled inputs or targets.",
        "overflow": "inputs, labels, weights and predictions are finite, so the "
        "loss's own arithmetic overflowed (e.g. log of 0 in a hand-written loss).",
    }[kind]
    fix = _NONFINITE_FIX[kind]
    if kind in ("predictions", "diverged") and not _reads_gradients(ctx.batch):
        fix += (
            " To see whether the gradient norm exploded before it (and in "
            "which layer), train with LossSanityCallback(internals=True): "
            "EXPLODING_GRADIENTS."
        )
    return NONFINITE_LOSS.finding(
        f"The batch loss is {ctx.batch['loss']}; the first non-finite source is "
        f"{source}.",
        f"A single NaN or Inf anywhere in the sum makes the loss non-finite: {why}",
        fix,
        {"loss": ctx.batch["loss"], "source": source},
    )


def _reads_gradients(batch) -> bool:
    """Whether the run records gradient norms (`internals=True`)."""
    return any(key.startswith("grad:") for key in batch)


_CLEAN = (
    "Clean the data: find the non-finite values with np.isfinite (a division "
    "by a zero norm or standard deviation, a missing value) and fix or drop "
    "them before training."
)
_DIVERGENCE = (
    "Lower the learning rate (by 10x), clip gradients (optimizer "
    "clipnorm=1.0), and standardise unscaled inputs and targets."
)
#: The fix, by the first non-finite source.
_NONFINITE_FIX = {
    "inputs": _CLEAN,
    "labels": _CLEAN,
    "sample": _CLEAN,
    "predictions": _DIVERGENCE,
    "diverged": _DIVERGENCE,
    "an": "Bound the extra term (a log of a variance or a KL needs a floor, "
    "e.g. ops.log(x + 1e-7)), or lower the learning rate.",
    "overflow": "Use a stable loss (Keras' own, or lossguard.losses): clip "
    "probabilities into [eps, 1 - eps] before any log, or pass logits with "
    "from_logits=True.",
}


@NEGATIVE_AUX_LOSS.check("batch", when=lambda ctx: ctx.batch["aux_loss"] < 0)
def negative_aux_loss(ctx):
    aux, data = ctx.batch["aux_loss"], ctx.batch["data_loss"]
    n = len(AUX_TERM.name)
    terms = {
        k[n:]: v for k, v in ctx.batch.items() if k.startswith(AUX_TERM.name) and v != 0
    }
    listed = ", ".join(f"{name} = {num(v)}" for name, v in terms.items())
    return NEGATIVE_AUX_LOSS.finding(
        f"The extra loss terms (model.losses) sum to {num(aux)} while the data "
        f"loss is {num(data)}: {listed or 'no per-layer breakdown available'}.",
        "Keras' total loss is the compiled loss plus sum(model.losses) "
        "(add_loss terms, activity and weight regularisers). A negative term, "
        "such as an entropy bonus or a sign-flipped KL, pulls the total below "
        f"zero: {num(data)} + ({num(aux)}) = {num(ctx.batch['loss'])}, and the "
        "optimiser can keep lowering it without bound.",
        "Fix the sign of the term or bound it (e.g. add_loss(weight * "
        "ops.maximum(term, 0))); a KL divergence must be added, not subtracted.",
        {"aux_loss": aux, "data_loss": data, "terms": terms, "loss": ctx.batch["loss"]},
    )


@NEGATIVE_WEIGHTS.check("output", when=lambda ctx: ctx.stats["weight_min"] < 0)
def negative_weights(ctx):
    return NEGATIVE_WEIGHTS.finding(
        f"Sample weights{of_output(ctx.spec, ctx.single)} go down to "
        f"{num(ctx.stats['weight_min'])}; "
        f"{pct(ctx.stats['weight_neg_share'])} of them are negative.",
        "Keras multiplies each token's loss (>= 0) by its sample weight (class "
        "weights become sample weights) without a sign check, so a negative "
        "weight turns that token's loss negative and the optimiser maximises "
        "the loss on it.",
        "Fix the sign of the weights (or class_weight); validate them, e.g. "
        "assert (w >= 0).all().",
        {
            "output": ctx.spec.name,
            "weight": "sample_weight/class_weight",
            "weight_min": ctx.stats["weight_min"],
            "negative_share": ctx.stats["weight_neg_share"],
        },
    )


@NEGATIVE_WEIGHTS.check("config")
def negative_loss_weight(ctx):
    if ctx.spec.loss_weight >= 0:
        return None
    return NEGATIVE_WEIGHTS.finding(
        f"loss_weights gives output '{ctx.spec.name}' the weight "
        f"{ctx.spec.loss_weight:g}.",
        "Keras' total is sum(loss_weight * output_loss); a negative weight "
        "turns a non-negative loss negative and the optimiser maximises "
        "that output's error.",
        "Use non-negative loss_weights.",
        {
            "output": ctx.spec.name,
            "weight": "loss_weights",
            "weight_min": ctx.spec.loss_weight,
        },
    )


@LOSS_UNBOUNDED_BELOW.check("config")
def unbounded_loss(ctx):
    if ctx.spec.floor != "below":
        return None
    known = UNBOUNDED_RANGES.get(name_key(ctx.spec.loss_name))
    if known is not None:
        seen = f"its range is {known}"
        why = (
            "This loss is not a cross-entropy: its best value is below zero "
            "(cosine similarity is -1 for identical directions; Keras' Poisson "
            "drops the constant log(y!)), so a negative loss is expected, not a "
            "bug."
        )
    else:
        seen = f"probed on valid labels and predictions it gives {ctx.spec.floor_how}"
        why = (
            "Called on labels in [0, 1] and predictions the output can produce, "
            "the loss itself goes below zero: it is not a cross-entropy over "
            "probabilities but, for example, a negative log-likelihood of a "
            "density (a Gaussian or a mixture: a density above 1 has a negative "
            "log), a similarity, -Dice or a Wasserstein critic. A negative value "
            "is expected, not a bug."
        )
    return LOSS_UNBOUNDED_BELOW.finding(
        f"'{ctx.spec.loss_name}' on output '{ctx.spec.name}' is negative by "
        f"design; {seen}.",
        why,
        "Nothing to fix; track its improvement (lower is better), or use a form "
        "with a floor at 0 (1 - cosine similarity, 1 - Dice) if you want one.",
        {
            "output": ctx.spec.name,
            "loss": ctx.spec.loss_name,
            "range": known or "below zero",
            "probe": ctx.spec.floor_how,
        },
    )


#: Predictions this large are a diverged model: squaring one overflows
#: float32 (sqrt(3.4e38) = 1.8e19); 1e18 leaves room for sums.
DIVERGED_ABOVE = 1e18


def _diverged(specs, outs):
    """ "diverged predictions (name) up to X" where finite predictions are
    that large, else None."""
    for spec, s in zip(specs, outs, strict=True):
        largest = float(np.fmax(abs(s["pred_min"]), abs(s["pred_max"])))
        if np.isfinite(largest) and largest > DIVERGED_ABOVE:
            return f"diverged predictions ({spec.name}) up to {largest:.3g}"
    return None


def _negative_values(g, specs):
    """The batch loss and (with several outputs) each output's data loss."""
    values = {"the batch loss": g["loss"]}
    if len(specs) > 1:
        for spec in specs:
            values[f"output '{spec.name}''s data loss"] = g[f"{spec.name}/data_loss"]
    return values


def _unexplained_negative(ctx):
    negative = np.zeros(np.shape(ctx.batch["loss"]), bool)
    for value in _negative_values(ctx.batch, ctx.specs).values():
        negative = negative | (np.asarray(value) < NEGATIVE_BELOW)
    for code in explainers(NEGATIVE_LOSS.code) & set(ctx.found):
        negative = negative & ~ctx.found[code]
    return negative


@NEGATIVE_LOSS.check("unexplained", when=_unexplained_negative)
def negative_loss(ctx):
    negative = {
        what: value
        for what, value in _negative_values(ctx.batch, ctx.specs).items()
        if measured(value) and value < NEGATIVE_BELOW
    }
    what, value = next(iter(negative.items()))
    how = "; ".join(
        f"'{spec.loss_name}' {spec.identified or 'is a Keras or lossguard loss'}"
        for spec in ctx.specs
    )
    unknown = [spec for spec in ctx.specs if spec.floor == "unknown"]
    if unknown:
        return _negative_of_unknown_floor(ctx.batch, unknown, what, value, how)
    per_output = {
        spec.name: {
            key: s[key]
            for key in ("label_min", "label_max", "pred_min", "pred_max", "weight_min")
            if measured(s[key])
        }
        for spec, s in zip(ctx.specs, ctx.outputs, strict=True)
    }
    return NEGATIVE_LOSS.finding(
        f"{what[0].upper()}{what[1:]} is {num(value)} (data loss "
        f"{num(ctx.batch['data_loss'])}, extra terms "
        f"{num(ctx.batch['aux_loss'])}), and no "
        "label, weight, prediction or extra-term fault explains it.",
        "With labels that are distributions (or valid ids), non-negative "
        "weights, probabilities in (0, 1] and extra terms >= 0, every "
        "cross-entropy term -y log p is >= 0, and so is their weighted mean. "
        "This batch's labels, weights and predictions pass those checks, so "
        "the sign comes from the loss's own arithmetic (a term subtracted, a "
        "bonus with the wrong weight) or from a term lossguard cannot see. "
        f"The loss: {how}.",
        "Find the term that goes negative (evaluate the loss's parts on this "
        "batch); if the loss is meant to be negative (a log-likelihood of "
        "densities, a similarity), that is expected: track its improvement.",
        {
            "loss": ctx.batch["loss"],
            "data_loss": ctx.batch["data_loss"],
            "aux_loss": ctx.batch["aux_loss"],
            "negative": negative,
            "identified": how,
            "statistics": per_output,
        },
    )


def _negative_of_unknown_floor(g, specs, what, value, how):
    """A negative value from a loss whose floor lossguard could not probe:
    one info line, never a warning (it may be negative by design)."""
    why = "; ".join(f"'{spec.loss_name}': {spec.floor_how}" for spec in specs)
    return NEGATIVE_LOSS.finding(
        f"{what[0].upper()}{what[1:]} is {num(value)}; lossguard does not know "
        "whether this loss can be negative by design, so this is not a warning.",
        "No label, weight, prediction or extra-term fault explains the sign, "
        f"and the loss could not be probed on valid inputs ({why}). A "
        "negative log-likelihood of densities or a similarity is negative by "
        "design; a loss meant to be >= 0 is not.",
        "If the loss is meant to be >= 0, evaluate its parts on this batch to "
        "find the term that goes negative.",
        {"loss": g["loss"], "negative": {what: value}, "identified": how},
        severity="info",
    )
