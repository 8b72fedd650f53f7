"""The prober: calls a loss on small synthetic tensors, and what it found."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lossguard.kinds import LossKind

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


def close(a, b) -> bool:
    return bool(np.isfinite(a) and abs(a - b) <= ATOL + RTOL * abs(b))


def log_softmax(z):
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def as_keras_loss(loss):
    """`loss` reduced as compile() reduces it: a plain function is wrapped in
    a `keras.losses.Loss`, so masks it sets (`ignore_class`) count."""
    import keras

    if isinstance(loss, str):  # a Keras loss by name ("mse", "huber", ...)
        loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        return loss

    class Wrapped(keras.losses.Loss):
        def call(self, y_true, y_pred):
            return loss(y_true, y_pred)

    return Wrapped(name=getattr(loss, "__name__", "loss"))


class Prober:
    def __init__(self, loss, shape):
        self.loss = as_keras_loss(loss)
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
