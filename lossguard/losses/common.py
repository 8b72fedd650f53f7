"""What lossguard's cross-entropies share: argument checks, shapes, the
clamped log, labels and masks, and the `Loss` class they all wrap."""

from __future__ import annotations

import functools

import keras
from keras import ops

from lossguard.keras_compat import set_mask

#: Registers a loss class or function with Keras' serialization, so a saved
#: model compiled with it loads with plain `keras.saving.load_model`.
register = keras.saving.register_keras_serializable(package="lossguard")


# --------------------------------------------------------------------------
# argument validation
# --------------------------------------------------------------------------
def resolve_epsilon(epsilon):
    eps = keras.config.epsilon() if epsilon is None else epsilon
    if not isinstance(eps, int | float) or not 0.0 < eps < 0.5:
        raise ValueError(
            "`epsilon` must be a number in (0, 0.5). "
            f"Received: epsilon={epsilon!r}. Use e.g. epsilon=1e-7."
        )
    return float(eps)


def check_label_smoothing(label_smoothing):
    if not isinstance(label_smoothing, int | float) or not (
        0.0 <= label_smoothing <= 1.0
    ):
        raise ValueError(
            "`label_smoothing` must be in [0, 1]. "
            f"Received: label_smoothing={label_smoothing!r}. A value outside "
            "[0, 1] gives negative target weights; use e.g. 0.1."
        )


def check_q(q):
    if not isinstance(q, int | float) or not 0.0 < q <= 1.0:
        raise ValueError(
            f"`q` must be in (0, 1]. Received: q={q!r}. q=0.7 is the value "
            "Zhang & Sabuncu recommend; q -> 0 approaches cross-entropy."
        )


def check_clip_range(min_loss, max_loss):
    if max_loss is not None and min_loss > max_loss:
        raise ValueError(
            "`min_loss` must not exceed `max_loss`. "
            f"Received: min_loss={min_loss!r}, max_loss={max_loss!r}."
        )


def tensor(x):
    """Arrays and tensors pass through (keeping Keras' tensor attributes)."""
    return (
        x if hasattr(x, "shape") and hasattr(x, "dtype") else ops.convert_to_tensor(x)
    )


def static_shape(x):
    return tuple(x.shape)


def check_dense_shapes(y_true, y_pred):
    t, p = static_shape(y_true), static_shape(y_pred)
    if len(t) != len(p) or any(
        a is not None and b is not None and a != b for a, b in zip(t, p, strict=False)
    ):
        raise ValueError(
            "`y_true` and `y_pred` must have the same shape for a categorical "
            f"cross-entropy. Received: y_true.shape={t}, y_pred.shape={p}. "
            "Integer token ids need the sparse variant."
        )


def check_sparse_shapes(y_true, y_pred):
    t, p = static_shape(y_true), static_shape(y_pred)
    if len(t) != len(p) - 1 or any(
        a is not None and b is not None and a != b
        for a, b in zip(t, p[:-1], strict=False)
    ):
        raise ValueError(
            "`y_true` must have the shape of `y_pred` without its last (class) "
            f"axis for a sparse cross-entropy. Received: y_true.shape={t}, "
            f"y_pred.shape={p}. One-hot labels need the dense variant."
        )


# --------------------------------------------------------------------------
# the shared core: float32 log-probabilities
# --------------------------------------------------------------------------
def to_float32(x):
    """Compute in float32 whatever comes in (half, float64, numpy arrays)."""
    x = ops.convert_to_tensor(x)
    if x.dtype != "float32":
        return ops.cast(x, "float32")
    return x


def logits_if_softmax(y_pred, from_logits):
    """Use a Keras softmax's own logits, exactly as Keras' losses do."""
    logits = getattr(y_pred, "_keras_logits", None)
    if not from_logits and logits is not None:
        return logits, True
    return y_pred, from_logits


@functools.cache
def clamped_log(eps):
    """`log(clip(p, eps, 1 - eps))` in value, gradient `1 / clip(p, ...)`.

    Keras' clip has a zero gradient outside `[eps, 1 - eps]`, so a
    prediction of exactly 0 for the true class costs -log(eps) but teaches
    nothing; this one keeps teaching, at the cost of one forward pass, like
    Keras' own.
    """

    @ops.custom_gradient
    def clamped_log(p):
        clipped = ops.clip(p, eps, 1.0 - eps)

        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            return upstream / clipped

        return ops.log(clipped), grad

    return clamped_log


def normalised(y_pred, axis, eps):
    total = ops.sum(y_pred, axis=axis, keepdims=True)
    return y_pred / ops.maximum(total, eps)


def log_probs(y_pred, from_logits, axis, eps):
    """float32 log-probabilities over the whole class axis."""
    y_pred, from_logits = logits_if_softmax(y_pred, from_logits)
    y_pred = to_float32(y_pred)
    if from_logits:
        return ops.log_softmax(y_pred, axis=axis)
    return clamped_log(eps)(normalised(y_pred, axis, eps))


def log_p_true(y_pred, ids, from_logits, eps):
    """float32 log-probability of the true class only, never (B, T, V) logs."""
    y_pred, from_logits = logits_if_softmax(y_pred, from_logits)
    y_pred = to_float32(y_pred)
    if from_logits:
        # The fused, max-shifted kernel: -CE is exactly log p_y.
        return -ops.sparse_categorical_crossentropy(ids, y_pred, from_logits=True)
    total = ops.sum(y_pred, axis=-1)
    return clamped_log(eps)(pick(y_pred, ids) / ops.maximum(total, eps))


def smooth(y_true, label_smoothing, num_classes):
    if label_smoothing:
        return y_true * (1.0 - label_smoothing) + label_smoothing / num_classes
    return y_true


def dense_labels(y_true, y_pred, label_smoothing, axis):
    y_true = ops.cast(ops.convert_to_tensor(y_true), "float32")
    num_classes = ops.cast(ops.shape(y_pred)[axis], "float32")
    return smooth(y_true, label_smoothing, num_classes)


def sparse_labels(y_true, y_pred, ignore_class):
    """Squeezed int32 ids, the valid-position mask, ids safe to gather."""
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    check_sparse_shapes(y_true, y_pred)
    ids = ops.cast(y_true, "int32")
    if ignore_class is None:
        return ids, None
    valid = ops.not_equal(ids, ignore_class)
    return ops.where(valid, ids, 0), valid


def pick(log_p, ids):
    return ops.squeeze(
        ops.take_along_axis(log_p, ops.expand_dims(ids, -1), axis=-1), axis=-1
    )


def mask_ignored(per_token, valid):
    """Zero the ignored positions and hand Keras the mask, as Keras does."""
    if valid is None:
        return per_token
    per_token = ops.where(valid, per_token, 0.0)
    return set_mask(per_token, valid)


def check_axis_last(axis):
    if axis != -1:
        raise ValueError(
            f"Sparse cross-entropies support only axis=-1. Received: axis={axis}."
        )


# --------------------------------------------------------------------------
# stable
# --------------------------------------------------------------------------
class CrossentropyLoss(keras.losses.Loss):
    """A `Loss` that calls one of the functions above with fixed arguments."""

    fn = None  # set by each subclass that does not override `call`

    def __init__(self, name, reduction, dtype, **fn_kwargs):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self._dtype_argument = dtype
        self._fn_kwargs = fn_kwargs
        for key, value in fn_kwargs.items():
            setattr(self, key, value)

    def call(self, y_true, y_pred):
        return type(self).fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "reduction": self.reduction,
            "dtype": self._dtype_argument,
            **self._fn_kwargs,
        }
