"""Dice by behaviour: `1 - dice` or `-dice`, with a fitted smoothing."""

from __future__ import annotations

import numpy as np

from lossguard.kinds import LossKind

from .prober import Identity, close


def dice_value(y, p, offset, smooth, per_sample):
    """`offset - (2 Σ y p + s) / (Σ y + Σ p + s)`, averaged over samples."""
    axes = tuple(range(1, y.ndim)) if per_sample else None
    a, b = (y * p).sum(axis=axes), (y + p).sum(axis=axes)
    return float(np.mean(offset - (2 * a + smooth) / (b + smooth)))


def dice_smooth(y, p, value, offset, per_sample):
    """The smoothing s >= 0 that gives `value`, or None (bisection: the
    ratio moves monotonically towards 1 as s grows)."""
    low, high = 0.0, 1e4

    def gap(s):
        return dice_value(y, p, offset, s, per_sample) - value

    if gap(low) * gap(high) > 0:
        return None
    for _ in range(80):
        mid = (low + high) / 2
        if gap(low) * gap(mid) <= 0:
            high = mid
        else:
            low = mid
    return (low + high) / 2


def dice_fit(prober) -> Identity | None:
    """Dice by behaviour: `1 - dice` or `-dice`, with a smoothing s >= 0,
    over the whole batch or per sample; fitted on one probe, verified on a
    second."""
    rng = np.random.default_rng(11)
    probes = []
    for _ in range(2):
        y = rng.integers(0, 2, prober.shape).astype("float32")
        p = rng.uniform(0.05, 0.95, prober.shape).astype("float32")
        probes.append((y, p, prober(y, p)))
    if not all(np.isfinite(v) for *_, v in probes):
        return None
    (y, p, v), (y2, p2, v2) = probes
    for offset in (1.0, 0.0):
        for per_sample in (False, True):
            smooth = dice_smooth(y, p, v, offset, per_sample)
            if smooth is None:
                continue
            if not close(v2, dice_value(y2, p2, offset, smooth, per_sample)):
                continue
            form = "1 - dice" if offset else "-dice"
            over = "per sample" if per_sample else "over the batch"
            return Identity(
                LossKind.BINARY,
                how=f"behaves as {form} (smooth {smooth:.3g}, {over})",
                floor="zero" if offset else "below",
                floor_how=(
                    f"{form} lies in [0, 1] for labels and predictions in [0, 1]"
                    if offset
                    else f"{form} lies in [-1, 0]: negative by design"
                ),
            )
    return None
