"""The floor of a loss: its lowest value on valid labels and predictions."""

from __future__ import annotations

import math

import numpy as np

from .families import bound
from .prober import ATOL

#: Label width D of an output that concatenates parameters, by layout:
#: (name, blocks of D, extra units) -> width = blocks * D * n + extra * n.
STACKED = (
    ("[mean, scale]", 2, 0),
    ("mixture [means, scales, weights]", 3, 0),
    ("mixture [means, scales] + weights", 2, 1),
)


def measure_floor(prober, activation):
    """("below" | "zero" | "unknown", the probe behind it, in words).

    Labels in [0, 1] first; a loss that none of those can evaluate (it reads
    class ids) is probed with ids in [0, K) instead."""
    rng = np.random.default_rng(7)
    low, high = output_range(activation)
    labels = "labels in [0, 1]"
    found = lowest_value(prober, floor_probes(prober, rng, low, high))
    if found[0] is None and prober.k > 1:
        labels = f"class ids in [0, {prober.k})"
        found = lowest_value(prober, id_probes(prober, low, high))
    verdict, lowest, evaluated, where = found
    if verdict == "below":
        return "below", f"{lowest:.4g} on valid labels and predictions ({where})"
    if verdict == "zero":
        return "zero", (
            f">= 0 on {evaluated} probes with {labels} and predictions in "
            f"[{bound(low, '-inf')}, {bound(high, 'inf')}] (lowest {lowest:.3g}, "
            f"{where})"
        )
    return "unknown", "no probe with valid labels and predictions gave a finite value"


def lowest_value(prober, probes):
    """(verdict, lowest value, probes evaluated, the lowest's probe): verdict
    "below" at the first value under zero, "zero" when at least two probes
    gave a finite value and none was below, else None."""
    lowest, evaluated, where = math.inf, 0, ""
    for name, y, p in probes:
        value = prober(y, p)
        if not np.isfinite(value):
            continue
        evaluated += 1
        if value < lowest:
            lowest, where = value, name
        if value < -ATOL:
            return "below", value, evaluated, name
    return ("zero" if evaluated >= 2 else None), lowest, evaluated, where


def id_probes(prober, low, high):
    """(what, class ids, predictions) for a loss that reads ids: ids as they
    are and with a trailing axis of 1, predictions peaked on them, at them,
    and peaked elsewhere, each in the output's range."""
    for seed in (8, 9):
        ids = prober.classes(avoid_zero=False, seed=seed)
        other = (ids + 1) % prober.k
        for layout, labels in (("ids", ids), ("ids (..., 1)", ids[..., None])):
            labels = labels.astype("int32")
            for name, p in (
                ("y_pred peaked on them", prober.peaked(ids, seed)),
                ("y_pred at them", prober.onehot(ids)),
                ("y_pred peaked elsewhere", prober.peaked(other, seed)),
            ):
                yield f"{layout}, {name}", labels, in_range(p, low, high)


def output_range(activation):
    """The values an output activation can take (None: unbounded)."""
    name = (activation or "linear").lower()
    if name in ("sigmoid", "softmax", "hard_sigmoid"):
        return 0.0, 1.0
    if name in ("relu", "softplus", "relu6", "exponential"):
        return 0.0, None
    if name in ("tanh", "soft_sign", "softsign"):
        return -1.0, 1.0
    return None, None


def in_range(x, low, high):
    return np.clip(x, 1e-3 if low == 0.0 else low, None if high is None else high)


def floor_probes(prober, rng, low, high):
    """(what, labels, predictions) of valid probes for the floor."""
    shape, k = prober.shape, prober.k
    soft = rng.uniform(0.05, 0.95, shape).astype("float32")
    binary = rng.integers(0, 2, shape).astype("float32")
    for name, y in (("soft labels", soft), ("0/1 labels", binary)):
        if low == 0.0 and high == 1.0 and k > 1:
            target = y / np.maximum(y.sum(-1, keepdims=True), 1e-6)
        else:
            target = y
        yield (
            f"{name}, y_pred = y_true",
            y,
            in_range(target, low, high).astype("float32"),
        )
        near = target + rng.normal(0, 0.01, shape)
        yield (
            f"{name}, y_pred near y_true",
            y,
            in_range(near, low, high).astype("float32"),
        )
        noise = rng.normal(0, 1, shape)
        if low is not None and high is not None:
            noise = low + (high - low) * rng.uniform(0, 1, shape)
        elif low is not None:
            noise = np.abs(noise)
        yield f"{name}, random y_pred", y, in_range(noise, low, high).astype("float32")
        if low is None:
            yield f"{name}, y_pred = -y_true", y, (-y).astype("float32")
    # Concatenated parameters: labels of width D, means at the target, small
    # scales (a log-scale of -3 or a scale of 0.05), equal mixture weights;
    # only on an output that can hold them (no sigmoid, softmax or tanh).
    if high is not None:
        return
    for name, blocks, extra in STACKED:
        for n in (1, 2, 3, 4, 5):
            d, rest = divmod(k - extra * n, blocks * n)
            if rest or d < 1 or (blocks, extra, n) == (2, 0, 1) and d * 2 != k:
                continue
            y = rng.uniform(0.2, 0.8, (*shape[:-1], d)).astype("float32")
            means = np.concatenate([y] * n, -1)
            for scale in (-3.0, 0.05) if low is None else (0.05,):
                scales = np.full(means.shape, scale, "float32")
                parts = [means, scales]
                if blocks == 3:
                    parts.append(np.full(means.shape, 1.0 / n, "float32"))
                if extra:
                    parts.append(np.zeros((*shape[:-1], n), "float32"))
                p = np.concatenate(parts, -1).astype("float32")
                yield f"{name}, {n} x width {d}, scale {scale:g}", y, p
