"""Faults seen inside the model: gradients that explode or vanish, ReLU
units that never fire.

They read the columns `LossSanityCallback(internals=True)` records (see
`lossguard.diagnosis.statistics.internals`): `grad:<layer>` (the L2 norm of
a layer's gradients as the optimizer got them), `learning_rate`,
`dead:<layer>` and `samples:<layer>` (a ReLU layer's share of units at 0
on every position of every sample of the batch, and how many samples):

- one SGD step moves the weights by `lr * g`; when the step makes the loss
  larger, the next gradient is larger still, and the norm grows by orders
  of magnitude within a few steps until the weights, then the loss, leave
  float32 (`EXPLODING_GRADIENTS`, read over the recent steps at the `trend`
  stage, before the batch checks, so the `NONFINITE_LOSS` it causes is
  reported under it);
- by the chain rule a layer's gradient is the product of the Jacobians of
  every layer above it; saturating activations (sigmoid' <= 1/4, tanh'
  <= 1) multiply it down layer by layer, so the first layers' norms sit
  orders below the last layer's and they stop learning
  (`VANISHING_GRADIENTS`, `trend`);
- ReLU's derivative is 0 wherever its input is below 0: a unit that is 0
  on every position of a batch passes no gradient back and its weights get
  no update (`DEAD_UNITS`, per batch, so `diagnose` sees it too).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lossguard.diagnosis.faults.format import num, pct
from lossguard.diagnosis.faults.telltales import end_medians
from lossguard.diagnosis.registry import fault
from lossguard.diagnosis.statistics.internals import (
    DEAD_SHARE,
    GRADIENT_NORM,
    LEARNING_RATE,
    SAMPLES,
)

#: A layer counts as dead when this share of its units is 0 on every sample...
DEAD_SHARE_MIN = 0.9
#: ... of a batch of at least this many samples (a healthy unit is 0 on a
#: sample about half the time: on 16 samples, about once in 65,536)...
DEAD_SAMPLES_MIN = 16
#: ... or of consecutive training batches holding this many samples together.
DEAD_STREAK_SAMPLES = 64
#: The gradient norm must grow this much over its baseline...
EXPLOSION = 100.0
#: ... within this many steps before the loss leaves float32 or jumps...
EXPLOSION_STEPS = 20
#: ... where a jump is a finite loss this many times its earlier median.
LOSS_JUMP = 100.0
#: The first layers' gradient norm at most this share of the last layer's
#: (2.3 orders of magnitude: four sigmoid layers can shrink it to 1/256; a
#: thread's four-sigmoid stack that did not learn measured 1.9e-3, the
#: healthy deep stacks of the controls 2.7e-2 and above)...
VANISHING_RATIO = 5e-3
#: ... over at least this many training steps...
VANISHING_STEPS = 200
#: ... while the loss (its median over the last 50 of them) is not this
#: share below its median over the first 50.
STILL = 0.05
STILL_BATCHES = 50

EXPLODING_GRADIENTS = fault(
    "EXPLODING_GRADIENTS",
    "warning",
    "Exploding gradients",
    "The gradient norm grew by orders of magnitude before the loss blew up.",
)
VANISHING_GRADIENTS = fault(
    "VANISHING_GRADIENTS",
    "warning",
    "Vanishing gradients",
    "The first layers' gradients are orders below the last layer's.",
)
DEAD_UNITS = fault(
    "DEAD_UNITS",
    "warning",
    "Dead ReLU units",
    "Most units of a ReLU layer output 0 on every sample of the batch.",
)


def _named(batch, stat) -> list:
    """The layers a prefixed statistic has columns for, in the row's order."""
    return [key[len(stat.name) :] for key in batch if key.startswith(stat.name)]


def _groups(batch) -> list:
    """The gradient columns' layer names, in the model's order."""
    return _named(batch, GRADIENT_NORM)


def _norms(batch, groups):
    """(steps, groups) gradient norms, float64."""
    return np.stack(
        [np.asarray(batch[GRADIENT_NORM.name + g], "float64") for g in groups], axis=1
    )


# ---------------------------------------------------------------- exploding
@EXPLODING_GRADIENTS.check("trend")
def exploding_gradients(ctx):
    groups = _groups(ctx.batch)
    if not groups:
        return []
    norms = _norms(ctx.batch, groups)
    total = np.sqrt(np.sum(np.square(norms), axis=1))  # NaN where one is NaN
    if not np.isfinite(total).any():
        return []
    loss = np.asarray(ctx.batch["loss"], "float64")
    event = _blow_up(loss, total)
    if event is None:
        return []
    lo = max(0, event - EXPLOSION_STEPS)
    before = total[:lo] if lo >= 1 else total[:1]
    before = before[np.isfinite(before)]
    if len(before) == 0:
        return []
    baseline = float(np.median(before))
    peak = _peak(total[lo : event + 1])
    if not baseline > 0 or not peak >= EXPLOSION * baseline:
        return []
    return [_exploding_finding(ctx, groups, norms, total, loss, baseline, lo, event)]


def _peak(norms) -> float:
    """The largest norm of a window: inf where one overflowed, NaN where
    none was measured."""
    if np.isinf(norms).any():
        return float("inf")
    finite = norms[np.isfinite(norms)]
    return float(finite.max()) if len(finite) else float("nan")


def _blow_up(loss, total):
    """The first step whose loss is not finite (or whose gradient overflows
    while the loss is finite), after at least one finite step; without one,
    the first step whose loss jumps to `LOSS_JUMP` times its earlier median
    (a squared error grows as the square of the gradient: it jumps first);
    None where there is neither."""
    finite = np.isfinite(loss)
    if not finite.any():
        return None
    first = int(np.argmax(finite))
    for i in range(first + 1, len(loss)):
        if not finite[i] or np.isinf(total[i]):
            return i
    # A jump past LOSS_JUMP times the earlier median is past as many times
    # the earlier minimum: only those steps need their median.
    floor = np.fmin.accumulate(np.where(finite, loss, np.inf))
    passed = (floor[:-1] > 0) & (loss[1:] >= LOSS_JUMP * floor[:-1])
    candidates = np.flatnonzero(passed) + 1
    for i in candidates[candidates > first]:
        earlier = np.median(loss[first:i][finite[first:i]])
        if earlier > 0 and loss[i] >= LOSS_JUMP * earlier and loss[i] - earlier >= 1:
            return int(i)
    return None


def _exploding_finding(ctx, groups, norms, total, loss, baseline, lo, event):
    window = total[lo : event + 1]
    grew = lo + int(np.argmax(~(window < 10 * baseline)))  # first 10x (or inf)
    finite_rows = [i for i in range(grew, event + 1) if np.isfinite(total[i])]
    peak_row = max(finite_rows, key=lambda i: total[i]) if finite_rows else event
    layer = groups[int(np.argmax(np.nan_to_num(norms[peak_row], nan=-1.0)))]
    peak = _peak(window)
    trajectory = [float(v) for v in total[grew : event + 1]]
    if len(trajectory) > 12:
        trajectory = trajectory[:6] + trajectory[-6:]
    rate = float(
        np.asarray(ctx.batch.get(LEARNING_RATE.name, np.nan), "float64")[event]
    )
    steps = ctx.steps
    what = (
        f"became {num(loss[event])}"
        if not np.isfinite(loss[event])
        else f"jumped to {num(loss[event])}"
    )
    norms_text = ", ".join(num(v) for v in trajectory)
    lower = f"to {num(rate / 10)} or below (a tenth of {num(rate)})" if rate > 0 else ""
    return EXPLODING_GRADIENTS.finding(
        f"The global gradient norm grew from a median of {num(baseline)} to "
        f"{num(peak)} ({_orders(peak, baseline)}) between step {int(steps[grew])} "
        f"and step {int(steps[event])}, where the loss {what}: {norms_text}. "
        f"The largest share was in layer '{layer}'; the learning rate was "
        f"{num(rate)}.",
        "An optimizer step moves the weights by the learning rate times the "
        "gradient; where a step overshoots (a rate too high for the loss's "
        "curvature, unscaled inputs or targets), the loss rises, the next "
        "gradient is larger, and the norm grows geometrically, step after "
        "step, until the weights, the predictions and then the loss overflow "
        "float32 (inf, then NaN) or the loss jumps by orders of magnitude.",
        f"Lower the learning rate{' ' + lower if lower else ''}; clip the gradients "
        "(optimizer(..., clipnorm=1.0)); standardise the inputs and, for a "
        "regression, the targets; check for a learning-rate schedule that "
        "rises too far.",
        {
            "norm_baseline": baseline,
            "norm_peak": peak,
            "norms": trajectory,
            "layer": layer,
            "learning_rate": rate,
            "from_step": int(steps[grew]),
            "blow_up_step": int(steps[event]),
            "loss": float(loss[event]),
        },
        step=int(steps[grew]),
        epoch=int(ctx.epochs[grew]),
    )


def _orders(peak, base) -> str:
    if not np.isfinite(peak):
        return "past float32's range"
    return f"{math.log10(peak / base):.1f} orders of magnitude"


# ---------------------------------------------------------------- vanishing
@VANISHING_GRADIENTS.check("trend")
def vanishing_gradients(ctx):
    groups = _groups(ctx.batch)
    if len(groups) < 2:
        return []
    norms = _norms(ctx.batch, groups)
    loss = np.asarray(ctx.batch["loss"], "float64")
    usable = np.isfinite(norms).all(axis=1) & np.isfinite(loss)
    if usable.sum() < VANISHING_STEPS or not usable[-VANISHING_STEPS:].all():
        return []
    norms, loss = norms[-VANISHING_STEPS:], loss[-VANISHING_STEPS:]
    early, late = end_medians(loss, STILL_BATCHES)
    if not late >= (1 - STILL) * early:
        return []
    medians = np.median(norms, axis=0)
    if not medians[-1] > 0:
        return []
    ratios = medians / medians[-1]
    # Exactly 0 is blocked, not vanished (dead units, zero weights, a stop);
    # a share that grows is a layer above waking (a zero-initialised head
    # under a warm-up), not one that has stopped learning.
    small = [
        i
        for i in range(len(groups) - 1)
        if 0 < ratios[i] <= VANISHING_RATIO and not _growing(norms[:, i], norms[:, -1])
    ]
    if not small:
        return []
    start = len(ctx.steps) - VANISHING_STEPS
    return [
        _vanishing_finding(ctx, groups, medians, ratios, small, (early, late), start)
    ]


def _vanishing_finding(ctx, groups, medians, ratios, small, losses, start):
    first = small[0]
    smallest = min(small, key=lambda i: ratios[i])
    also = _smallest(groups, ratios, first, smallest)
    early, late = losses
    return VANISHING_GRADIENTS.finding(
        f"Over the last {VANISHING_STEPS} training steps (from step "
        f"{int(ctx.steps[start])}) the loss stayed at {num(early)} to "
        f"{num(late)}, while layer '{groups[first]}' got a median gradient "
        f"norm of {num(medians[first])}: {_below(ratios[first])} the last "
        f"layer '{groups[-1]}' ({num(medians[-1])}){also}.",
        "By the chain rule a layer's gradient is the product of the "
        "Jacobians of every layer above it. Saturating activations "
        "(sigmoid' <= 1/4, tanh' <= 1, and near 0 once saturated) and "
        "small weights multiply it down layer after layer, so the first "
        "layers get updates orders smaller than the last and stop "
        "learning while the loss does not move.",
        "Use ReLU-family activations (or GELU) in the hidden layers with "
        "He initialisation; add BatchNormalization or residual "
        "connections; for recurrent networks use LSTM/GRU instead of "
        "SimpleRNN; check that inputs are scaled.",
        {
            "layer": groups[first],
            "layer_norm": float(medians[first]),
            "last_layer": groups[-1],
            "last_norm": float(medians[-1]),
            "ratio": float(ratios[first]),
            "smallest_layer": groups[smallest],
            "smallest_ratio": float(ratios[smallest]),
            "loss_first": float(early),
            "loss_last": float(late),
            "steps": VANISHING_STEPS,
        },
        step=int(ctx.steps[start]),
        epoch=int(ctx.epochs[start]),
    )


def _growing(layer, last) -> bool:
    """Whether a layer's share of the last layer's gradient, its median over
    the last `STILL_BATCHES` steps, is over twice its median over the first."""
    with np.errstate(divide="ignore", invalid="ignore"):
        share = layer / last
    early, late = end_medians(share, STILL_BATCHES)
    return bool(late > 2 * early)


def _smallest(groups, ratios, first, smallest) -> str:
    if smallest == first:
        return ""
    return f"; the smallest, '{groups[smallest]}', is {_below(ratios[smallest])}"


def _below(ratio) -> str:
    return f"{-math.log10(ratio):.1f} orders of magnitude below"


# -------------------------------------------------------------------- dead
def _dead_layers(batch) -> list:
    return _named(batch, DEAD_SHARE)


def _mostly_dead(batch, name):
    """A batch whose loss is not finite is not read: once the weights are
    NaN, ReLU returns 0 for NaN inputs on some backends (NONFINITE_LOSS's)."""
    share = np.asarray(batch[DEAD_SHARE.name + name], "float64")
    finite = np.isfinite(np.asarray(batch["loss"], "float64"))
    return (share >= DEAD_SHARE_MIN) & finite


def _dead(batch, name):
    samples = np.asarray(batch[SAMPLES.name + name], "float64")
    return _mostly_dead(batch, name) & (samples >= DEAD_SAMPLES_MIN)


def _any_dead(ctx):
    layers = _dead_layers(ctx.batch)
    if not layers:
        return False
    return np.any([_dead(ctx.batch, name) for name in layers], axis=0)


@DEAD_UNITS.check("batch", when=_any_dead)
def dead_units(ctx):
    layers = [name for name in _dead_layers(ctx.batch) if _dead(ctx.batch, name)]
    samples = int(ctx.batch[SAMPLES.name + layers[0]])
    return _dead_finding(ctx.batch, layers, f"all {samples} samples of the batch")


@DEAD_UNITS.check("trend")
def dead_units_over_steps(ctx):
    """Small batches: the same share dead on consecutive training batches
    that hold `DEAD_STREAK_SAMPLES` samples together."""
    found = []
    for name in _dead_layers(ctx.batch):
        dead = _mostly_dead(ctx.batch, name)
        off = np.flatnonzero(~dead)
        streak = len(dead) - int(off[-1]) - 1 if len(off) else len(dead)
        samples = np.asarray(ctx.batch[SAMPLES.name + name], "float64")[-streak:]
        if streak and np.nansum(samples) >= DEAD_STREAK_SAMPLES:
            found.append((streak, name, int(np.nansum(samples))))
    if not found:
        return []
    streak, _, samples = max(found)
    layers = [name for s, name, _ in found if s == streak]
    last = {key: values[-streak] for key, values in ctx.batch.items()}
    where = (
        f"each of the {streak} training batches since step "
        f"{int(ctx.steps[-streak])} ({samples} samples)"
    )
    finding = _dead_finding(last, layers, where)
    return [_at(finding, step=int(ctx.steps[-streak]), epoch=int(ctx.epochs[-streak]))]


def _at(finding, **where):
    return dataclasses.replace(finding, **where)


def _dead_finding(batch, layers, where):
    shares = {name: float(batch[DEAD_SHARE.name + name]) for name in layers}
    name = max(layers, key=lambda n: shares[n])
    others = [n for n in layers if n != name]
    also = ""
    if others:
        also = " (also " + ", ".join(f"'{n}' {pct(shares[n])}" for n in others) + ")"
    return DEAD_UNITS.finding(
        f"{pct(shares[name])} of layer '{name}''s units output exactly 0 at every "
        f"position of {where}{also}.",
        "ReLU(z) = max(z, 0) has derivative 0 wherever z < 0: a unit that is "
        "0 for every input passes no gradient back, so its own weights and "
        "everything that feeds only it get no update, and the layer after it "
        "sees the same input for every sample. Once a large step (a "
        "learning-rate spike, a big gradient) or a bias far below the "
        "inputs' reach pushes z below 0 for every input, nothing brings it "
        "back.",
        "Lower the learning rate (or warm it up); use LeakyReLU, ELU or GELU; "
        "initialise with he_normal and biases at 0 (not negative); add "
        "BatchNormalization before the activation; check that the inputs are "
        "scaled.",
        {"layer": name, "dead_share": shares[name], "layers": shares},
    )
