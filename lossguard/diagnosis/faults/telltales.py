"""Loss values that tell the cause: a cross-entropy stuck at ln K, or near
the clip's ceiling -ln(eps).

Both read each output's own loss (`data_loss`, per batch) and the number of
classes K of a categorical output (its units):

- at the uniform prediction p = 1/K, -sum(y log p) = ln K * sum(y) = ln K for
  every label row that sums to 1, whatever the labels: a loss that stays at
  ln K for many steps (to within rounding; or within 2% while the output is
  the same for every input, where `pred_spread` is measured, with
  predictions="all") is a model whose output does not depend on its input
  (`LOSS_AT_UNIFORM`, read over the recent training steps at the `trend`
  stage);
- a cross-entropy term is at most -ln(eps) = 16.12 where Keras clips
  probabilities into [eps, 1 - eps] (eps = 1e-7): a batch whose mean loss
  is near that ceiling has the true class's probability at the clip on
  almost every row (`SATURATED_PREDICTIONS`, per batch, so `diagnose` sees
  it before training).
"""

from __future__ import annotations

import math

import numpy as np

from lossguard.diagnosis.faults.format import measured, num, of_output, pct
from lossguard.diagnosis.registry import fault

#: Training steps the loss must stay at ln K before it counts as stuck: more
#: than a warm-up of a zero-initialised head takes to leave it.
UNIFORM_STEPS = 200
#: How close to ln K "at" is, relative: float32 rounding of a mean over a
#: batch is ~1e-6; a model at its random start sits a few percent away.
UNIFORM_TOLERANCE = 2e-3
#: With the output's spread measured: how far from ln K the loss may be
#: (relative) when the output is constant, and how constant (the spread of
#: its probabilities times K: 20% of a uniform 1/K; a healthy model at
#: its start spreads about 100%, a collapsed one under dropout 1-7%).
UNIFORM_NEAR = 0.02
UNIFORM_SPREAD = 0.2
#: A run whose output's spread (median) grows this much from its first to its
#: last `GROWTH_BATCHES` batches is leaving the uniform prediction, not stuck.
GROWTH, GROWTH_BATCHES = 2.0, 50
#: A batch's mean loss at this share of -ln(eps) or above is saturated.
SATURATED_SHARE = 0.8
#: ... and at least this many nats above ln K (the loss of a uniform guess).
SATURATED_ABOVE_UNIFORM = 3.0

LOSS_AT_UNIFORM = fault(
    "LOSS_AT_UNIFORM",
    "warning",
    "Loss stuck at ln K",
    "The loss sits at ln K: the model predicts the uniform distribution.",
)
SATURATED_PREDICTIONS = fault(
    "SATURATED_PREDICTIONS",
    "warning",
    "Loss at the clip's ceiling",
    "The loss is near -ln(eps): the true class's probability is at the clip.",
)


def _classes(spec) -> int | None:
    """K for a categorical output of K >= 2 units, else None."""
    units = spec.units
    return units if spec.categorical and units and units >= 2 else None


def output_loss(batch: dict, spec, single: bool):
    """The output's own loss (a value or a column): the compiled loss over
    its loss_weight for a single output, its `name/data_loss` otherwise."""
    if not single:
        return np.asarray(batch.get(f"{spec.name}/data_loss", np.nan), "float64")
    weight = spec.loss_weight if spec.loss_weight else np.nan
    return np.asarray(batch["data_loss"], dtype="float64") / weight


def ceiling() -> float:
    """-ln(eps) for Keras' epsilon: the clipped cross-entropy term's maximum."""
    import keras

    return -math.log(keras.config.epsilon())


# ---------------------------------------------------------------- uniform
@LOSS_AT_UNIFORM.check("trend")
def loss_at_uniform(ctx):
    found = []
    for spec, stats in zip(ctx.specs, ctx.outputs, strict=True):
        k = _classes(spec)
        if k is None:
            continue
        loss = output_loss(ctx.batch, spec, len(ctx.specs) == 1)
        if loss.ndim == 0:  # no per-output loss recorded
            continue
        spread = np.asarray(stats["pred_spread"], "float64")
        spread = np.broadcast_to(spread, loss.shape)  # NaN: not measured
        at = _at_uniform(loss, spread, k)
        off = np.flatnonzero(~at)
        streak = len(at) - int(off[-1]) - 1 if len(off) else len(at)
        if streak >= UNIFORM_STEPS and not _leaving(
            spread[-streak:], np.abs(loss[-streak:] - math.log(k)), k
        ):
            found.append(
                _uniform_finding(ctx, spec, k, loss[-streak:], -streak, spread)
            )
    return found


def _leaving(spread, off, k) -> bool:
    """Whether the output is learning to depend on its input: the median of
    its spread (where measured; else of the loss's distance from ln k, `off`)
    over the run's last 50 batches is over twice that of its first 50. A
    zero-initialised output layer under a slow warm-up starts exactly
    uniform and leaves it step by step; a dead or collapsed one does not."""
    if np.isfinite(spread).all():
        measure, floor = spread, 1e-6 / k  # float32 rounding of p near 1/k
    else:
        measure, floor = off, 1e-5  # float32 rounding of a mean near ln k
    early, late = end_medians(measure, GROWTH_BATCHES)
    return bool(late > GROWTH * early + floor)


def end_medians(values, n):
    """(median of the first `n` values, median of the last `n`), NaN left
    out: how a run's start compares with its end."""
    return float(np.nanmedian(values[:n])), float(np.nanmedian(values[-n:]))


def _at_uniform(loss, spread, k):
    """Per batch: the output is the same for every input and the loss is at
    ln k (where the spread was measured), or the loss is ln k to within
    rounding (where it was not)."""
    ln_k = math.log(k)
    off = np.abs(loss - ln_k) / ln_k
    measured_spread = np.isfinite(spread)
    constant = measured_spread & (spread * k <= UNIFORM_SPREAD)
    near = np.where(measured_spread, off <= UNIFORM_NEAR, off <= UNIFORM_TOLERANCE)
    return np.isfinite(loss) & near & (constant | ~measured_spread)


def _uniform_finding(ctx, spec, k, loss, start, spread):
    """The finding for the run of `loss` values at ln k that began at `start`."""
    ln_k = math.log(k)
    first, last = int(ctx.steps[start]), int(ctx.steps[-1])
    epoch = int(ctx.epochs[start])
    since = f"from step {first} of epoch {epoch} to step {last}"
    if int(ctx.epochs[-1]) != epoch:
        since += f" of epoch {int(ctx.epochs[-1])}"
    return LOSS_AT_UNIFORM.finding(
        f"The loss{of_output(spec, len(ctx.specs) == 1)} has stayed at ln {k} = "
        f"{num(ln_k)} for {len(loss)} training steps ({since}): between "
        f"{num(loss.min())} and {num(loss.max())}{_spread_words(spread[start:])}.",
        f"At the uniform prediction p = 1/{k}, -sum(y log p) = ln {k} * sum(y) = "
        f"{num(ln_k)} for every label row, whatever the labels; a loss that "
        "stays there batch after batch, while the output is the same for every "
        "input, comes from an output that does not depend on the input. "
        "Training cannot move it: the gradient reaching the layers below is "
        "zero (a zeroed or dead last layer, ReLU units that all output 0) or "
        "nothing in the input varies.",
        "Check, in order: the inputs vary (x.std(axis=0) > 0, not all padding); "
        "the last layer's weights are not all 0 and the layer before it is not "
        "dead (lower the learning rate, use LeakyReLU or He initialisation); "
        "the learning rate is above 0 and the layers are trainable; the labels "
        "follow from the inputs (shuffled x and y lose their pairing)."
        + _internals_hint(ctx.batch),
        {
            "output": spec.name,
            "classes": k,
            "ln_k": ln_k,
            "loss_min": float(loss.min()),
            "loss_max": float(loss.max()),
            "steps": len(loss),
            "first_step": first,
            "spread_max": _spread_max(spread[start:]),
        },
        step=first,
        epoch=epoch,
    )


def _internals_hint(batch) -> str:
    if any(key.startswith(("dead:", "grad:")) for key in batch):
        return ""
    return (
        " LossSanityCallback(internals=True) reads whether a ReLU layer died "
        "(DEAD_UNITS) and what gradient reaches each layer."
    )


def _spread_max(spread):
    return float(np.nanmax(spread)) if np.isfinite(spread).any() else float("nan")


def _spread_words(spread):
    top = _spread_max(spread)
    if math.isnan(top):
        return ""
    return (
        f", and each batch's predictions differed from row to row by at most {num(top)}"
    )


# -------------------------------------------------------------- saturated
def _saturated(ctx):
    k = _classes(ctx.spec)
    if k is None:
        return False
    loss = output_loss(ctx.batch, ctx.spec, ctx.single)
    bar = max(SATURATED_SHARE * ceiling(), math.log(k) + SATURATED_ABOVE_UNIFORM)
    # Sample or class weights scale the mean past any bar: not read there.
    unweighted = np.asarray(ctx.stats["weighted"]) != 1
    return np.isfinite(loss) & (loss >= bar) & unweighted


@SATURATED_PREDICTIONS.check("output", when=_saturated)
def saturated_predictions(ctx):
    k, top = ctx.spec.units, ceiling()
    loss = float(output_loss(ctx.batch, ctx.spec, ctx.single))
    share = ctx.stats.get("pred_saturated_share")
    at_clip = (
        f"; {pct(share)} of the rows' true-class probabilities are exactly 0 or 1"
        if measured(share)
        else ""
    )
    level = (
        f"above -ln(eps) = {num(top)}, the most a clipped term can be, so the "
        "loss read logits here and is the logit gap"
        if loss > top
        else f"{pct(loss / top)} of -ln(eps) = {num(top)}"
    )
    return SATURATED_PREDICTIONS.finding(
        f"The batch's loss{of_output(ctx.spec, ctx.single)} is {num(loss)}: "
        f"{level}; a uniform guess would lose ln {k} = {num(math.log(k))}"
        f"{at_clip}.",
        "Each cross-entropy term is -log p of the true class. Keras clips "
        f"probabilities into [eps, 1 - eps], so a term is at most -ln(eps) = "
        f"{num(top)}, reached when the softmax puts all its mass elsewhere "
        "(in float32 a logit gap above about 104 rounds p to exactly 0). A mean "
        "near that ceiling means the model is confidently wrong on almost every "
        "row; read from logits the loss is the logit gap and goes beyond it. "
        "The gradient of a clipped term is 0, so those rows stop training.",
        "Scale the inputs (standardise features, divide pixels by 255); start "
        "from Keras' default initialisers instead of large weights; lower the "
        "learning rate or clip gradients (clipnorm=1.0) if it began after a "
        "spike.",
        {
            "output": ctx.spec.name,
            "loss": loss,
            "ceiling": top,
            "classes": k,
            "saturated_share": share,
        },
    )
