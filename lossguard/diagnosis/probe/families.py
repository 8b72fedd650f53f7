"""Cross-entropy families by behaviour: categorical, sparse, KL, binary;
with the label smoothing, clip bounds and padding id each loss shows."""

from __future__ import annotations

import numpy as np

from lossguard.kinds import LossKind

from .prober import ATOL, CLIP_RTOL, TINY_P, Identity, close, log_softmax, sigmoid


def categorical_fit(prober, labels_of, cls_a, cls_b, p_a, p_b):
    """Fit `(1 - ls) CE + ls U` on probe A, verify on probe B, for
    probabilities and for logits. Returns (from_logits, ls) or None."""
    for from_logits in (False, True):
        logp_a = log_softmax(p_a) if from_logits else np.log(p_a)
        logp_b = log_softmax(p_b) if from_logits else np.log(p_b)

        def parts(classes, logp):
            ce = -np.take_along_axis(logp, classes[..., None], -1).mean()
            uniform = -logp.mean(-1).mean()
            return ce, uniform

        ce_a, u_a = parts(cls_a, logp_a)
        ce_b, u_b = parts(cls_b, logp_b)
        v_a = prober(labels_of(cls_a), p_a)
        v_b = prober(labels_of(cls_b), p_b)
        if not (np.isfinite(v_a) and np.isfinite(v_b)) or abs(u_a - ce_a) < 1e-6:
            continue
        ls = (v_a - ce_a) / (u_a - ce_a)
        ls = 0.0 if abs(ls) < 1e-4 else ls
        if -1e-4 <= ls < 1 and close(v_b, (1 - ls) * ce_b + ls * u_b):
            return from_logits, float(ls)
    return None


def binary_fit(prober, shape):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, shape).astype("float32")
    p = rng.uniform(0.1, 0.9, shape).astype("float32")
    for from_logits in (False, True):
        q = sigmoid(p) if from_logits else p
        ce = -(y * np.log(q) + (1 - y) * np.log(1 - q)).mean()
        half = -(0.5 * np.log(q) + 0.5 * np.log(1 - q)).mean()
        v = prober(y, p)
        if not np.isfinite(v):
            continue
        ls = 0.0 if abs(half - ce) < 1e-9 else (v - ce) / (half - ce)
        ls = 0.0 if abs(ls) < 1e-4 else ls
        y2 = 1 - y
        ce2 = -(y2 * np.log(q) + (1 - y2) * np.log(1 - q)).mean()
        if 0 <= ls < 1 and close(prober(y2, p), (1 - ls) * ce2 + ls * half):
            return from_logits, float(ls)
    return None


def words(family, from_logits, ls, extra=""):
    on = "logits" if from_logits else "probabilities"
    smooth = f", label smoothing {ls:.3g}" if ls > 0 else ""
    return f"behaves as {family} on {on}{smooth}{extra}"


def cross_entropy_fit(prober) -> Identity | None:
    cls_a, cls_b = prober.classes(seed=1), prober.classes(seed=2)
    p_a, p_b = prober.peaked(cls_a, 1), prober.peaked(cls_b, 2)
    kind, fit = (
        LossKind.CATEGORICAL,
        categorical_fit(prober, prober.onehot, cls_a, cls_b, p_a, p_b),
    )
    if fit is None:
        kind = LossKind.SPARSE
        for layout in (lambda c: c.astype("int32"), lambda c: c[..., None]):
            fit = categorical_fit(prober, layout, cls_a, cls_b, p_a, p_b)
            if fit is not None:
                labels_of = layout
                break
    else:
        labels_of = prober.onehot
    if fit is None:
        return None
    from_logits, ls = fit
    if kind == LossKind.CATEGORICAL and not from_logits and is_kl(prober, p_a):
        kind = LossKind.KL
    clip = clip_bounds(prober, labels_of, kind, from_logits, ls)
    ignored = ignored_id(prober, labels_of, kind, from_logits, ls)
    family = {
        LossKind.CATEGORICAL: "categorical cross-entropy",
        LossKind.SPARSE: "sparse categorical cross-entropy",
        LossKind.KL: "KL divergence",
    }[kind]
    extra = ""
    if clip is not None:
        lo, hi = clip
        extra += f", clipped into [{bound(lo, '-inf')}, {bound(hi, 'inf')}]"
    if ignored is not None:
        extra += f", ignoring padding id {ignored}"
    return Identity(
        kind,
        from_logits=from_logits,
        label_smoothing=ls,
        clip=clip,
        ignored_id=ignored,
        how=words(family, from_logits, ls, extra),
    )


def bound(value, none):
    return none if value is None else f"{value:.4g}"


def is_kl(prober, p):
    """Soft labels tell KL (0 at y = p) from cross-entropy (the entropy)."""
    return close(prober(p, p), 0.0) and not close(
        float(-(p * np.log(p)).sum(-1).mean()), 0.0
    )


def clip_bounds(prober, labels_of, kind, from_logits, ls):
    """(low, high) clip bounds the loss shows, or None."""
    classes = prober.classes(seed=4)
    k = prober.k
    # Upper: every row's true class at p = 1e-6 (CE 13.8).
    p = np.full((*classes.shape, k), (1 - TINY_P) / (k - 1), "float32")
    np.put_along_axis(p, classes[..., None], TINY_P, -1)
    z = np.log(p)  # logits whose softmax is p
    logq = log_softmax(z) if from_logits else np.log(p)
    ce = -np.take_along_axis(logq, classes[..., None], -1).mean()
    uniform = -logq.mean(-1).mean()
    expected = (1 - ls) * ce + ls * uniform
    value = prober(labels_of(classes), z if from_logits else p)
    high = None
    if np.isfinite(value) and value < expected * (1 - CLIP_RTOL):
        high = float(f"{value:.4g}")
    low = None
    if kind != LossKind.SPARSE:
        # Lower: negative one-hot labels make every term -CE < 0.
        q = prober.peaked(classes, 5)
        zq = np.log(q)
        logq = log_softmax(zq) if from_logits else np.log(q)
        ce = -np.take_along_axis(logq, classes[..., None], -1)
        negative = -ce.mean()
        value = prober(-prober.onehot(classes), zq if from_logits else q)
        if ls == 0 and np.isfinite(value) and not close(value, negative):
            low = 0.0 if abs(value) < ATOL else float(f"{value:.4g}")
    if high is None and low is None:
        return None
    return (low, high)


#: Padding ids a masked loss may ignore: Keras' and TextVectorization's 0,
#: a hand-made -1, PyTorch's -100.
PAD_IDS = (0, -1, -100)


def ignored_id(prober, labels_of, kind, from_logits, ls):
    """The padding id whose rows do not count in the loss's value, or None.

    Half the rows get the candidate id; a loss that ignores it gives the mean
    over the other rows (for id 0 also their sum over every row, a masked
    sum). A negative id is only tried on sparse losses (a one-hot row cannot
    hold it), and only a masked mean counts there: a plain sparse loss on
    JAX one-hot encodes -1 as a row of zeros, a sum that ignores nothing on
    purpose.
    """
    if prober.rows < 2:
        return None
    classes = prober.classes(seed=6)
    half = np.zeros(classes.shape, bool)
    half.reshape(-1)[: prober.rows // 2] = True
    classes = np.where(half, 0, classes)
    p = prober.peaked(classes, 6)
    z = np.log(p)
    logq = log_softmax(z) if from_logits else np.log(p)
    ce = -np.take_along_axis(logq, classes[..., None], -1)[..., 0]
    per_row = (1 - ls) * ce + ls * (-logq.mean(-1))
    real = per_row[~half]
    for pad in PAD_IDS if kind == LossKind.SPARSE else PAD_IDS[:1]:
        labels = np.where(half, pad, classes)
        value = prober(labels_of(labels), z if from_logits else p)
        if pad == 0 and close(value, per_row.mean()):
            continue  # id 0 counts as a class
        if close(value, real.mean()):
            return pad
        if pad == 0 and close(value, real.sum() / per_row.size):
            return pad
    return None
