"""Know a loss by how it behaves: probes for losses lossguard does not know.

A compiled loss that is not one of Keras' or lossguard's own (a function, a
lambda, a `functools.partial`, a `keras.losses.Loss` subclass with its own
`call`, a wrapper that masks, clips or reduces a Keras loss) is called
eagerly, outside the train step, on small synthetic tensors shaped like the
model's output. Its values are compared with what each family would give on
the same tensors:

- categorical cross-entropy on probabilities, `-Σ y log p`, or on logits,
  `-Σ y log softmax(z)`: fitted as `(1 - ls) CE + ls U` (U the uniform
  target's cross-entropy) on one probe and verified on a second, which also
  measures a label smoothing `ls`; with one-hot labels, or sparse class ids;
- binary cross-entropy on probabilities or logits (with label smoothing);
- KL divergence `Σ y log(y / p)` (told from cross-entropy by soft labels);
- Dice, `1 - (2 Σ y p + s) / (Σ y + Σ p + s)` or its negation `-dice`, over
  the whole batch or per sample, with the smoothing `s` fitted on one probe
  and verified on a second;
- masking: a loss whose value ignores the rows whose label is a padding id
  (0, -1 or -100: a masked mean) "ignores" that id;
- clipping: the loss of a term whose cross-entropy is 13.8 (p = 1e-6), and of
  a term with a negative label, show an upper and a lower clip.

Then its floor: every loss is called on *valid* inputs only, labels in
[0, 1] (0/1 labels stay 0/1; sparse ids in [0, K)) and predictions in the
range of the output's activation (a sigmoid's (0, 1), a ReLU's [0, inf),
anything for a linear output): at the target itself (`y_pred == y_true`),
near it, and at random; and, for an output that concatenates parameters
(a mean and a scale: width 2·D; mixtures: 3·K·D or K·(2·D + 1)), with labels
of width D, the means at the target and the scales small. A loss that goes
below zero there is negative by design (a Gaussian or mixture negative
log-likelihood, a cosine similarity, `-dice`, a Wasserstein critic): floor
"below". A loss that stays >= 0 on every such probe is bounded below by 0
as measured: floor "zero". A loss no probe could evaluate has an unknown
floor: a negative value from it is reported as info, never as a warning.

Tolerances: a value "matches" a family within 1e-3 relative plus 1e-4
absolute; an upper clip is reported when the term of cross-entropy 13.8
comes out more than 5% lower (an epsilon added inside the log is not a clip),
a lower clip when negative labels give a value above the family's; a probe
is "below zero" under -1e-4. Probing reads no model, optimizer or metric
state; it takes a few to a few tens of milliseconds, once per `fit` or
`diagnose`.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np

from lossguard.kinds import LossKind

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

    kind: LossKind
    from_logits: bool = False
    label_smoothing: float = 0.0
    clip: tuple | None = None  # (low or None, high or None)
    #: The label id the loss ignores (a masked mean), or None.
    ignored_id: int | None = None
    how: str = ""
    #: "zero" (>= 0 on every valid probe), "below" (negative on one: by
    #: design) or "unknown" (no valid probe could be evaluated).
    floor: str = "zero"
    #: The probe behind the floor, in words.
    floor_how: str = ""


def _close(a, b) -> bool:
    return bool(np.isfinite(a) and abs(a - b) <= ATOL + RTOL * abs(b))


def _log_softmax(z):
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _as_keras_loss(loss):
    """`loss` reduced as compile() reduces it: a plain function is wrapped in
    a `keras.losses.Loss`, so masks it sets (`ignore_class`) count."""
    import keras

    if isinstance(loss, keras.losses.Loss):
        return loss

    class Wrapped(keras.losses.Loss):
        def call(self, y_true, y_pred):
            return loss(y_true, y_pred)

    return Wrapped(name=getattr(loss, "__name__", "loss"))


class _Prober:
    def __init__(self, loss, shape):
        self.loss = _as_keras_loss(loss)
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


def identify(loss, output_shape, activation=None) -> Identity:
    """Probe `loss` on tensors shaped like `output_shape` (batch axis first).

    `activation` is the output layer's (it bounds the predictions the floor
    probes use). Returns an `Identity`; kind "other" with `how` saying why
    when no family fits.
    """
    shape = [2] + [3 if d is None else min(int(d), 4) for d in output_shape[1:-1]]
    k = output_shape[-1] if output_shape else None
    if not isinstance(k, int) or len(output_shape) < 2:
        return Identity(
            LossKind.OTHER,
            how="not probed: the output's class axis is unknown",
            floor="unknown",
            floor_how="not probed",
        )
    prober = _Prober(loss, (*shape, k))
    found = _probe(prober) if k > 1 else None
    if found is None:
        fit = _binary_fit(prober, prober.shape)
        if fit is not None:
            found = Identity(
                LossKind.BINARY,
                from_logits=fit[0],
                label_smoothing=fit[1],
                how=_words("binary cross-entropy", fit[0], fit[1]),
            )
    if found is None:
        found = _dice_fit(prober)
    if found is None:
        floor, floor_how = _floor(prober, activation)
        if floor == "below":
            found = Identity(
                LossKind.UNBOUNDED,
                how=f"negative by design: {floor_how}",
                floor=floor,
                floor_how=floor_how,
            )
        elif len(prober.errors) == prober.calls:
            found = Identity(
                LossKind.OTHER,
                how=f"it raised on every probe ({prober.errors[0]})",
                floor="unknown",
                floor_how="it raised on every probe",
            )
        else:
            found = Identity(
                LossKind.OTHER,
                how="it behaves as no cross-entropy, KL, Dice or similarity known",
                floor=floor,
                floor_how=floor_how,
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
        LossKind.CATEGORICAL,
        _categorical_fit(prober, prober.onehot, cls_a, cls_b, p_a, p_b),
    )
    if fit is None:
        kind = LossKind.SPARSE
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
    if kind == LossKind.CATEGORICAL and not from_logits and _is_kl(prober, p_a):
        kind = LossKind.KL
    clip = _clip(prober, labels_of, kind, from_logits, ls)
    ignored = _ignored_id(prober, labels_of, kind, from_logits, ls)
    family = {
        LossKind.CATEGORICAL: "categorical cross-entropy",
        LossKind.SPARSE: "sparse categorical cross-entropy",
        LossKind.KL: "KL divergence",
    }[kind]
    extra = ""
    if clip is not None:
        lo, hi = clip
        extra += f", clipped into [{_bound(lo, '-inf')}, {_bound(hi, 'inf')}]"
    if ignored is not None:
        extra += f", ignoring padding id {ignored}"
    return Identity(
        kind,
        from_logits=from_logits,
        label_smoothing=ls,
        clip=clip,
        ignored_id=ignored,
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
    if kind != LossKind.SPARSE:
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


#: Padding ids a masked loss may ignore: Keras' and TextVectorization's 0,
#: a hand-made -1, PyTorch's -100.
PAD_IDS = (0, -1, -100)


def _ignored_id(prober, labels_of, kind, from_logits, ls):
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
    logq = _log_softmax(z) if from_logits else np.log(p)
    ce = -np.take_along_axis(logq, classes[..., None], -1)[..., 0]
    per_row = (1 - ls) * ce + ls * (-logq.mean(-1))
    real = per_row[~half]
    for pad in PAD_IDS if kind == LossKind.SPARSE else PAD_IDS[:1]:
        labels = np.where(half, pad, classes)
        value = prober(labels_of(labels), z if from_logits else p)
        if pad == 0 and _close(value, per_row.mean()):
            continue  # id 0 counts as a class
        if _close(value, real.mean()):
            return pad
        if pad == 0 and _close(value, real.sum() / per_row.size):
            return pad
    return None


#: Label width D of an output that concatenates parameters, by layout:
#: (name, blocks of D, extra units) -> width = blocks * D * n + extra * n.
_STACKED = (
    ("[mean, scale]", 2, 0),
    ("mixture [means, scales, weights]", 3, 0),
    ("mixture [means, scales] + weights", 2, 1),
)


def _floor(prober, activation):
    """("below" | "zero" | "unknown", the probe behind it, in words)."""
    rng = np.random.default_rng(7)
    low, high = _output_range(activation)
    lowest, evaluated = math.inf, 0
    where = ""
    for name, y, p in _floor_probes(prober, rng, low, high):
        value = prober(y, p)
        if not np.isfinite(value):
            continue
        evaluated += 1
        if value < lowest:
            lowest, where = value, name
        if value < -ATOL:
            return "below", f"{value:.4g} on valid labels and predictions ({name})"
    if evaluated >= 2:
        return "zero", (
            f">= 0 on {evaluated} probes with labels in [0, 1] and predictions in "
            f"[{_bound(low, '-inf')}, {_bound(high, 'inf')}] (lowest {lowest:.3g}, "
            f"{where})"
        )
    return "unknown", "no probe with valid labels and predictions gave a finite value"


def _output_range(activation):
    """The values an output activation can take (None: unbounded)."""
    name = (activation or "linear").lower()
    if name in ("sigmoid", "softmax", "hard_sigmoid"):
        return 0.0, 1.0
    if name in ("relu", "softplus", "relu6", "exponential"):
        return 0.0, None
    if name in ("tanh", "soft_sign", "softsign"):
        return -1.0, 1.0
    return None, None


def _in_range(x, low, high):
    return np.clip(x, 1e-3 if low == 0.0 else low, None if high is None else high)


def _floor_probes(prober, rng, low, high):
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
            _in_range(target, low, high).astype("float32"),
        )
        near = target + rng.normal(0, 0.01, shape)
        yield (
            f"{name}, y_pred near y_true",
            y,
            _in_range(near, low, high).astype("float32"),
        )
        noise = rng.normal(0, 1, shape)
        if low is not None and high is not None:
            noise = low + (high - low) * rng.uniform(0, 1, shape)
        elif low is not None:
            noise = np.abs(noise)
        yield f"{name}, random y_pred", y, _in_range(noise, low, high).astype("float32")
        if low is None:
            yield f"{name}, y_pred = -y_true", y, (-y).astype("float32")
    # Concatenated parameters: labels of width D, means at the target, small
    # scales (a log-scale of -3 or a scale of 0.05), equal mixture weights;
    # only on an output that can hold them (no sigmoid, softmax or tanh).
    if high is not None:
        return
    for name, blocks, extra in _STACKED:
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


def _dice_value(y, p, offset, smooth, per_sample):
    """`offset - (2 Σ y p + s) / (Σ y + Σ p + s)`, averaged over samples."""
    axes = tuple(range(1, y.ndim)) if per_sample else None
    a, b = (y * p).sum(axis=axes), (y + p).sum(axis=axes)
    return float(np.mean(offset - (2 * a + smooth) / (b + smooth)))


def _dice_smooth(y, p, value, offset, per_sample):
    """The smoothing s >= 0 that gives `value`, or None (bisection: the
    ratio moves monotonically towards 1 as s grows)."""
    low, high = 0.0, 1e4

    def gap(s):
        return _dice_value(y, p, offset, s, per_sample) - value

    if gap(low) * gap(high) > 0:
        return None
    for _ in range(80):
        mid = (low + high) / 2
        if gap(low) * gap(mid) <= 0:
            high = mid
        else:
            low = mid
    return (low + high) / 2


def _dice_fit(prober) -> Identity | None:
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
            smooth = _dice_smooth(y, p, v, offset, per_sample)
            if smooth is None:
                continue
            if not _close(v2, _dice_value(y2, p2, offset, smooth, per_sample)):
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
