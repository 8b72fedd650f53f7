"""Know a loss by how it behaves: probes for losses lossguard does not know.

A compiled loss that is not one of Keras' or lossguard's own (a function, a
lambda, a `functools.partial`, a `keras.losses.Loss` subclass with its own
`call`, a wrapper that masks, clips or reduces a Keras loss) is called once,
eagerly and outside the train step, on small synthetic tensors shaped like
the model's output. Its values are compared with what each family would
give on the same tensors:

- categorical cross-entropy on probabilities, `-Σ y log p`, or on logits,
  `-Σ y log softmax(z)`: fitted as `(1 - ls) CE + ls U` (U the uniform
  target's cross-entropy) on one probe and verified on a second, which also
  measures a label smoothing `ls`; with one-hot labels, or sparse class ids;
- binary cross-entropy on probabilities or logits (with label smoothing);
- KL divergence `Σ y log(y / p)` (told from cross-entropy by soft labels);
- masking: a loss whose value ignores the rows whose label is the padding
  id 0 (a masked mean) is "masked";
- clipping: the loss of a term whose cross-entropy is 13.8 (p = 1e-6), and of
  a term with a negative label, show an upper and a lower clip;
- negative by design: below zero at its own optimum (`y_pred == y_true`),
  as cosine similarity or a Gaussian negative log-likelihood are.

Tolerances: a value "matches" a family within 1e-3 relative plus 1e-4
absolute; an upper clip is reported when the term of cross-entropy 13.8
comes out more than 5% lower (an epsilon added inside the log is not a clip),
a lower clip when negative labels give a value above the family's. A loss
that raises on every probe, or matches no family, is "unknown": it gets the
checks that need no family (weights, extra terms, non-finite values,
negative batch losses). Probing reads no model, optimizer or metric state;
it takes a few to a few tens of milliseconds, once per `fit` or `diagnose`.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np

logger = logging.getLogger("lossguard")

RTOL, ATOL = 1e-3, 1e-4
#: p of the true class in the upper-clip probe: CE = -log(1e-6) = 13.8.
TINY_P = 1e-6
#: How far below 13.8 the upper-clip probe must come out to count as a
#: clip: an epsilon inside the log (log(p + 1e-7): 13.72) is not one.
CLIP_RTOL = 0.05


@dataclasses.dataclass(frozen=True)
class Identity:
    """What probing found a loss to be."""

    kind: str  # categorical | sparse | binary | kl | unbounded | other
    from_logits: bool = False
    label_smoothing: float = 0.0
    clip: tuple | None = None  # (low or None, high or None)
    masks_padding: bool = False
    how: str = ""


def _close(a, b) -> bool:
    return bool(np.isfinite(a) and abs(a - b) <= ATOL + RTOL * abs(b))


def _log_softmax(z):
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


class _Prober:
    def __init__(self, loss, shape):
        self.loss = loss
        self.shape = shape  # the output's probe shape (..., K)
        self.k = shape[-1]
        self.rows = int(np.prod(shape[:-1]))
        self.calls = 0
        self.errors: list[str] = []

    def __call__(self, y_true, y_pred):
        """The loss's mean value on the probe, or NaN when it raises."""
        import keras

        self.calls += 1
        try:
            value = self.loss(
                keras.ops.convert_to_tensor(y_true),
                keras.ops.convert_to_tensor(y_pred),
            )
            return float(np.mean(keras.ops.convert_to_numpy(value)))
        except Exception as error:  # noqa: BLE001 - a loss that fails a probe
            self.errors.append(f"{type(error).__name__}: {error}"[:200])
            return math.nan

    # ------------------------------------------------------------ tensors
    def classes(self, avoid_zero=True, seed=0):
        low = 1 if avoid_zero and self.k > 2 else 0
        rng = np.random.default_rng(seed)
        return rng.integers(low, self.k, self.rows).reshape(self.shape[:-1])

    def peaked(self, classes, seed=0, logits=False):
        """Rows peaked on `classes` with varied heights (a distribution)."""
        rng = np.random.default_rng(seed)
        top = rng.uniform(0.3, 0.9, classes.shape)
        rest = rng.uniform(0.5, 1.5, (*classes.shape, self.k))
        onehot = np.eye(self.k)[classes]
        rest = np.where(onehot > 0, 0, rest)
        rest = rest / rest.sum(-1, keepdims=True) * (1 - top)[..., None]
        p = rest + onehot * top[..., None]
        return p.astype("float32")

    def onehot(self, classes):
        return np.eye(self.k, dtype="float32")[classes]


def _categorical_fit(prober, labels_of, cls_a, cls_b, p_a, p_b):
    """Fit `(1 - ls) CE + ls U` on probe A, verify on probe B, for
    probabilities and for logits. Returns (from_logits, ls) or None."""
    for from_logits in (False, True):
        logp_a = _log_softmax(p_a) if from_logits else np.log(p_a)
        logp_b = _log_softmax(p_b) if from_logits else np.log(p_b)

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
        if -1e-4 <= ls < 1 and _close(v_b, (1 - ls) * ce_b + ls * u_b):
            return from_logits, float(ls)
    return None


def _binary_fit(prober, shape):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, shape).astype("float32")
    p = rng.uniform(0.1, 0.9, shape).astype("float32")
    for from_logits in (False, True):
        q = _sigmoid(p) if from_logits else p
        ce = -(y * np.log(q) + (1 - y) * np.log(1 - q)).mean()
        half = -(0.5 * np.log(q) + 0.5 * np.log(1 - q)).mean()
        v = prober(y, p)
        if not np.isfinite(v):
            continue
        ls = 0.0 if abs(half - ce) < 1e-9 else (v - ce) / (half - ce)
        ls = 0.0 if abs(ls) < 1e-4 else ls
        y2 = 1 - y
        ce2 = -(y2 * np.log(q) + (1 - y2) * np.log(1 - q)).mean()
        if 0 <= ls < 1 and _close(prober(y2, p), (1 - ls) * ce2 + ls * half):
            return from_logits, float(ls)
    return None


def identify(loss, output_shape) -> Identity:
    """Probe `loss` on tensors shaped like `output_shape` (batch axis first).

    Returns an `Identity`; kind "other" with `how` saying why when no family
    fits.
    """
    shape = [2] + [3 if d is None else min(int(d), 4) for d in output_shape[1:-1]]
    k = output_shape[-1] if output_shape else None
    if not isinstance(k, int) or len(output_shape) < 2:
        return Identity("other", how="not probed: the output's class axis is unknown")
    prober = _Prober(loss, (*shape, k))
    found = _probe(prober) if k > 1 else None
    if found is None:
        fit = _binary_fit(prober, prober.shape)
        if fit is not None:
            found = Identity(
                "binary",
                from_logits=fit[0],
                label_smoothing=fit[1],
                how=_words("binary cross-entropy", fit[0], fit[1]),
            )
    if found is None:
        found = _negative_by_design(prober)
    if found is None and len(prober.errors) == prober.calls:
        found = Identity("other", how=f"it raised on every probe ({prober.errors[0]})")
    if found is None:
        found = Identity(
            "other", how="it behaves as no cross-entropy, KL or similarity known"
        )
    return found


def _words(family, from_logits, ls, extra=""):
    on = "logits" if from_logits else "probabilities"
    smooth = f", label smoothing {ls:.3g}" if ls > 0 else ""
    return f"behaves as {family} on {on}{smooth}{extra}"


def _probe(prober) -> Identity | None:
    cls_a, cls_b = prober.classes(seed=1), prober.classes(seed=2)
    p_a, p_b = prober.peaked(cls_a, 1), prober.peaked(cls_b, 2)
    kind, fit = (
        "categorical",
        _categorical_fit(prober, prober.onehot, cls_a, cls_b, p_a, p_b),
    )
    if fit is None:
        kind = "sparse"
        for layout in (lambda c: c.astype("int32"), lambda c: c[..., None]):
            fit = _categorical_fit(prober, layout, cls_a, cls_b, p_a, p_b)
            if fit is not None:
                labels_of = layout
                break
    else:
        labels_of = prober.onehot
    if fit is None:
        return None
    from_logits, ls = fit
    if kind == "categorical" and not from_logits and _is_kl(prober, p_a):
        kind = "kl"
    clip = _clip(prober, labels_of, kind, from_logits, ls)
    masks = _masks_padding(prober, labels_of, from_logits, ls)
    family = {
        "categorical": "categorical cross-entropy",
        "sparse": "sparse categorical cross-entropy",
        "kl": "KL divergence",
    }[kind]
    extra = ""
    if clip is not None:
        lo, hi = clip
        extra += f", clipped into [{_bound(lo, '-inf')}, {_bound(hi, 'inf')}]"
    if masks:
        extra += ", ignoring padding id 0"
    return Identity(
        kind,
        from_logits=from_logits,
        label_smoothing=ls,
        clip=clip,
        masks_padding=masks,
        how=_words(family, from_logits, ls, extra),
    )


def _bound(value, none):
    return none if value is None else f"{value:.4g}"


def _is_kl(prober, p):
    """Soft labels tell KL (0 at y = p) from cross-entropy (the entropy)."""
    return _close(prober(p, p), 0.0) and not _close(
        float(-(p * np.log(p)).sum(-1).mean()), 0.0
    )


def _clip(prober, labels_of, kind, from_logits, ls):
    """(low, high) clip bounds the loss shows, or None."""
    classes = prober.classes(seed=4)
    k = prober.k
    # Upper: every row's true class at p = 1e-6 (CE 13.8).
    p = np.full((*classes.shape, k), (1 - TINY_P) / (k - 1), "float32")
    np.put_along_axis(p, classes[..., None], TINY_P, -1)
    z = np.log(p)  # logits whose softmax is p
    logq = _log_softmax(z) if from_logits else np.log(p)
    ce = -np.take_along_axis(logq, classes[..., None], -1).mean()
    uniform = -logq.mean(-1).mean()
    expected = (1 - ls) * ce + ls * uniform
    value = prober(labels_of(classes), z if from_logits else p)
    high = None
    if np.isfinite(value) and value < expected * (1 - CLIP_RTOL):
        high = float(f"{value:.4g}")
    low = None
    if kind != "sparse":
        # Lower: negative one-hot labels make every term -CE < 0.
        q = prober.peaked(classes, 5)
        zq = np.log(q)
        logq = _log_softmax(zq) if from_logits else np.log(q)
        ce = -np.take_along_axis(logq, classes[..., None], -1)
        negative = -ce.mean()
        value = prober(-prober.onehot(classes), zq if from_logits else q)
        if ls == 0 and np.isfinite(value) and not _close(value, negative):
            low = 0.0 if abs(value) < ATOL else float(f"{value:.4g}")
    if high is None and low is None:
        return None
    return (low, high)


def _masks_padding(prober, labels_of, from_logits, ls):
    """True when rows labelled 0 (padding) do not count in the loss's value."""
    if prober.rows < 2:
        return False
    classes = prober.classes(seed=6)
    classes.reshape(-1)[: prober.rows // 2] = 0
    p = prober.peaked(classes, 6)
    z = np.log(p)
    logq = _log_softmax(z) if from_logits else np.log(p)
    ce = -np.take_along_axis(logq, classes[..., None], -1)[..., 0]
    per_row = (1 - ls) * ce + ls * (-logq.mean(-1))
    value = prober(labels_of(classes), z if from_logits else p)
    real = classes != 0
    if _close(value, per_row.mean()):
        return False
    return _close(value, per_row[real].mean()) or _close(
        value, per_row[real].sum() / per_row.size
    )


def _negative_by_design(prober) -> Identity | None:
    rng = np.random.default_rng(7)
    for scale in (1.0, 3.0):
        y = (rng.uniform(0.05, 1.0, prober.shape) * scale).astype("float32")
        value = prober(y, y)
        if np.isfinite(value) and value < -ATOL:
            return Identity(
                "unbounded",
                how=f"negative by design: {value:.4g} at its own optimum "
                "(y_pred == y_true)",
            )
    return None
