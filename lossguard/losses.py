"""Cross-entropies that never silently produce an impossible value.

Three families, each dense and sparse, each a function plus a
`keras.losses.Loss` subclass with the same positional arguments as Keras' own
(new arguments are keyword-only):

* **stable**: Keras' cross-entropy, computed in float32 whatever the input
  dtype, from log-softmax for logits, and from probabilities with an `epsilon`
  clamp whose gradient passes through, so a confident wrong prediction still
  costs `-log(epsilon)` and still teaches.
* **clipped**: the per-token stable loss clipped into `[min_loss, max_loss]`;
  the class counts how many tokens it clipped, because clipping hides
  symptoms.
* **bounded**: the generalised cross-entropy `(1 - p_y^q) / q` of Zhang &
  Sabuncu (NeurIPS 2018), in `[0, 1/q]` for valid labels.
"""

from __future__ import annotations

import functools
import math

import keras
from keras import ops

from lossguard.keras_compat import get_mask, set_mask
from lossguard.kinds import LossKind

__all__ = [
    "BoundedCategoricalCrossentropy",
    "BoundedSparseCategoricalCrossentropy",
    "ClippedCategoricalCrossentropy",
    "ClippedSparseCategoricalCrossentropy",
    "StableCategoricalCrossentropy",
    "StableSparseCategoricalCrossentropy",
    "bounded_categorical_crossentropy",
    "bounded_sparse_categorical_crossentropy",
    "clipped_categorical_crossentropy",
    "clipped_sparse_categorical_crossentropy",
    "stable_categorical_crossentropy",
    "stable_crossentropy",
    "stable_sparse_categorical_crossentropy",
]


_register = keras.saving.register_keras_serializable(package="lossguard")


# --------------------------------------------------------------------------
# argument validation
# --------------------------------------------------------------------------
def _resolve_epsilon(epsilon):
    eps = keras.config.epsilon() if epsilon is None else epsilon
    if not isinstance(eps, int | float) or not 0.0 < eps < 0.5:
        raise ValueError(
            "`epsilon` must be a number in (0, 0.5). "
            f"Received: epsilon={epsilon!r}. Use e.g. epsilon=1e-7."
        )
    return float(eps)


def _check_label_smoothing(label_smoothing):
    if not isinstance(label_smoothing, int | float) or not (
        0.0 <= label_smoothing <= 1.0
    ):
        raise ValueError(
            "`label_smoothing` must be in [0, 1]. "
            f"Received: label_smoothing={label_smoothing!r}. A value outside "
            "[0, 1] gives negative target weights; use e.g. 0.1."
        )


def _check_q(q):
    if not isinstance(q, int | float) or not 0.0 < q <= 1.0:
        raise ValueError(
            f"`q` must be in (0, 1]. Received: q={q!r}. q=0.7 is the value "
            "Zhang & Sabuncu recommend; q -> 0 approaches cross-entropy."
        )


def _check_clip_range(min_loss, max_loss):
    if max_loss is not None and min_loss > max_loss:
        raise ValueError(
            "`min_loss` must not exceed `max_loss`. "
            f"Received: min_loss={min_loss!r}, max_loss={max_loss!r}."
        )


def _tensor(x):
    """Arrays and tensors pass through (keeping Keras' tensor attributes)."""
    return (
        x if hasattr(x, "shape") and hasattr(x, "dtype") else ops.convert_to_tensor(x)
    )


def _static_shape(x):
    return tuple(x.shape)


def _check_dense_shapes(y_true, y_pred):
    t, p = _static_shape(y_true), _static_shape(y_pred)
    if len(t) != len(p) or any(
        a is not None and b is not None and a != b for a, b in zip(t, p, strict=False)
    ):
        raise ValueError(
            "`y_true` and `y_pred` must have the same shape for a categorical "
            f"cross-entropy. Received: y_true.shape={t}, y_pred.shape={p}. "
            "Integer token ids need the sparse variant."
        )


def _check_sparse_shapes(y_true, y_pred):
    t, p = _static_shape(y_true), _static_shape(y_pred)
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
def _to_float32(x):
    """Compute in float32 whatever comes in (half, float64, numpy arrays)."""
    x = ops.convert_to_tensor(x)
    if x.dtype != "float32":
        return ops.cast(x, "float32")
    return x


def _logits_if_softmax(y_pred, from_logits):
    """Use a Keras softmax's own logits, exactly as Keras' losses do."""
    logits = getattr(y_pred, "_keras_logits", None)
    if not from_logits and logits is not None:
        return logits, True
    return y_pred, from_logits


@functools.cache
def _clamped_log(eps):
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


def _normalised(y_pred, axis, eps):
    total = ops.sum(y_pred, axis=axis, keepdims=True)
    return y_pred / ops.maximum(total, eps)


def _log_probs(y_pred, from_logits, axis, eps):
    """float32 log-probabilities over the whole class axis."""
    y_pred, from_logits = _logits_if_softmax(y_pred, from_logits)
    y_pred = _to_float32(y_pred)
    if from_logits:
        return ops.log_softmax(y_pred, axis=axis)
    return _clamped_log(eps)(_normalised(y_pred, axis, eps))


def _log_p_true(y_pred, ids, from_logits, eps):
    """float32 log-probability of the true class only, never (B, T, V) logs."""
    y_pred, from_logits = _logits_if_softmax(y_pred, from_logits)
    y_pred = _to_float32(y_pred)
    if from_logits:
        # The fused, max-shifted kernel: -CE is exactly log p_y.
        return -ops.sparse_categorical_crossentropy(ids, y_pred, from_logits=True)
    total = ops.sum(y_pred, axis=-1)
    return _clamped_log(eps)(_pick(y_pred, ids) / ops.maximum(total, eps))


def _smooth(y_true, label_smoothing, num_classes):
    if label_smoothing:
        return y_true * (1.0 - label_smoothing) + label_smoothing / num_classes
    return y_true


def _dense_labels(y_true, y_pred, label_smoothing, axis):
    y_true = ops.cast(ops.convert_to_tensor(y_true), "float32")
    num_classes = ops.cast(ops.shape(y_pred)[axis], "float32")
    return _smooth(y_true, label_smoothing, num_classes)


def _sparse_labels(y_true, y_pred, ignore_class):
    """Squeezed int32 ids, the valid-position mask, ids safe to gather."""
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    _check_sparse_shapes(y_true, y_pred)
    ids = ops.cast(y_true, "int32")
    if ignore_class is None:
        return ids, None
    valid = ops.not_equal(ids, ignore_class)
    return ops.where(valid, ids, 0), valid


def _pick(log_p, ids):
    return ops.squeeze(
        ops.take_along_axis(log_p, ops.expand_dims(ids, -1), axis=-1), axis=-1
    )


def _mask_ignored(per_token, valid):
    """Zero the ignored positions and hand Keras the mask, as Keras does."""
    if valid is None:
        return per_token
    per_token = ops.where(valid, per_token, 0.0)
    return set_mask(per_token, valid)


def _check_axis_last(axis):
    if axis != -1:
        raise ValueError(
            f"Sparse cross-entropies support only axis=-1. Received: axis={axis}."
        )


# --------------------------------------------------------------------------
# stable
# --------------------------------------------------------------------------
def stable_categorical_crossentropy(
    y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1, *, epsilon=None
):
    """Categorical cross-entropy that stays finite and keeps teaching.

    Equal to `keras.losses.categorical_crossentropy` on valid inputs, but
    computed in float32 whatever the input dtype, and with a clamp at
    `epsilon` whose gradient is not cut: a prediction of exactly 0 for the
    true class costs `-log(epsilon)` (16.12 for the default 1e-7) and still
    receives a gradient.

    Formula:

    ```
    p    = clip(y_pred / sum(y_pred), epsilon, 1 - epsilon)   # or softmax(logits)
    loss = -sum(y_true * log(p), axis)
    ```

    Args:
        y_true: One-hot or soft labels, same shape as `y_pred`.
        y_pred: Probabilities, or logits with `from_logits=True`.
        from_logits: Whether `y_pred` holds logits.
        label_smoothing: In [0, 1]; labels become `y(1 - ls) + ls / K`.
        axis: The class axis.
        epsilon: Clamp for probabilities, in (0, 0.5); default
            `keras.config.epsilon()`.

    Returns:
        The per-token loss, with the class axis reduced.

    Raises:
        ValueError: On shapes that differ or arguments out of range.

    Example:

    >>> import numpy as np
    >>> y_true = np.array([[0.0, 1.0, 0.0]])
    >>> y_pred = np.array([[0.0, 0.0, 1.0]])  # confident and wrong
    >>> float(stable_categorical_crossentropy(y_true, y_pred)[0])  # -log(1e-7)
    16.11809...
    >>> # model.compile(loss=lossguard.losses.stable_categorical_crossentropy)
    """
    _check_label_smoothing(label_smoothing)
    eps = _resolve_epsilon(epsilon)
    y_true, y_pred = _tensor(y_true), _tensor(y_pred)
    _check_dense_shapes(y_true, y_pred)
    y_true = _dense_labels(y_true, y_pred, label_smoothing, axis)
    logits, from_logits = _logits_if_softmax(y_pred, from_logits)
    if from_logits:
        # The fused kernel: stable for logits of any finite magnitude.
        return ops.categorical_crossentropy(
            y_true, _to_float32(logits), from_logits=True, axis=axis
        )
    log_p = _log_probs(y_pred, False, axis, eps)
    return -ops.sum(y_true * log_p, axis=axis)


stable_crossentropy = stable_categorical_crossentropy


def stable_sparse_categorical_crossentropy(
    y_true, y_pred, from_logits=False, ignore_class=None, axis=-1, *, epsilon=None
):
    """Sparse categorical cross-entropy that stays finite and keeps teaching.

    The integer-label twin of `stable_categorical_crossentropy`: it gathers the
    true class's log-probability and never builds a one-hot tensor.
    Positions whose label equals `ignore_class` cost 0 and are masked out of
    the mean, as in Keras.

    Formula:

    ```
    loss = -log(p[y_true])      # p as in stable_categorical_crossentropy
    ```

    Args:
        y_true: Integer ids, shape of `y_pred` without its last axis (or with
            a trailing 1).
        y_pred: Probabilities, or logits with `from_logits=True`.
        from_logits: Whether `y_pred` holds logits.
        ignore_class: An id (e.g. padding) whose positions are ignored.
        axis: The class axis; only -1 is supported.
        epsilon: Clamp for probabilities, in (0, 0.5).

    Returns:
        The per-token loss.

    Raises:
        ValueError: On shapes that do not fit or arguments out of range.

    Example:

    >>> import numpy as np
    >>> loss = stable_sparse_categorical_crossentropy(
    ...     np.array([1, 0]), np.array([[0.2, 0.8], [0.0, 1.0]]))
    >>> print(*(round(float(v), 4) for v in loss))
    0.2231 16.1181
    """
    _check_axis_last(axis)
    eps = _resolve_epsilon(epsilon)
    y_true, y_pred = _tensor(y_true), _tensor(y_pred)
    ids, valid = _sparse_labels(y_true, y_pred, ignore_class)
    return _mask_ignored(-_log_p_true(y_pred, ids, from_logits, eps), valid)


# --------------------------------------------------------------------------
# clipped
# --------------------------------------------------------------------------
def _default_max_loss(eps):
    return -math.log(eps)


def clipped_categorical_crossentropy(
    y_true,
    y_pred,
    from_logits=False,
    label_smoothing=0.0,
    axis=-1,
    *,
    min_loss=0.0,
    max_loss=None,
    epsilon=None,
):
    """Stable categorical cross-entropy clipped per token into a range.

    Clipping hides symptoms: a negative per-token loss (from negative labels,
    say) becomes `min_loss` and its gradient vanishes, so training looks
    healthy while the labels stay wrong. The class form,
    `ClippedCategoricalCrossentropy`, counts the tokens it clipped
    (`clipped_count`, `clipped_fraction()`); this function cannot.

    Formula:

    ```
    loss = clip(stable_categorical_crossentropy(y_true, y_pred), min_loss, max_loss)
    ```

    Args:
        y_true, y_pred, from_logits, label_smoothing, axis: As
            `stable_categorical_crossentropy`.
        min_loss: Lower bound of the per-token loss (default 0).
        max_loss: Upper bound; default `-log(epsilon)`.
        epsilon: Clamp for probabilities.

    Returns:
        The clipped per-token loss.

    Raises:
        ValueError: If `min_loss > max_loss` or another argument is invalid.

    Example:

    >>> import numpy as np
    >>> y_true = np.array([[-1.0, 0.0]])   # a "-1 padding" label row
    >>> float(clipped_categorical_crossentropy(y_true, np.array([[0.5, 0.5]]))[0])
    0.0
    """
    eps = _resolve_epsilon(epsilon)
    max_loss = _default_max_loss(eps) if max_loss is None else max_loss
    _check_clip_range(min_loss, max_loss)
    raw = stable_categorical_crossentropy(
        y_true, y_pred, from_logits, label_smoothing, axis, epsilon=eps
    )
    return ops.clip(raw, min_loss, max_loss)


def clipped_sparse_categorical_crossentropy(
    y_true,
    y_pred,
    from_logits=False,
    ignore_class=None,
    axis=-1,
    *,
    min_loss=0.0,
    max_loss=None,
    epsilon=None,
):
    """Sparse twin of `clipped_categorical_crossentropy`.

    With valid ids the stable sparse loss already lies in `[0, -log(epsilon)]`,
    so only a lowered `max_loss` clips anything.

    Args:
        y_true, y_pred, from_logits, ignore_class, axis: As
            `stable_sparse_categorical_crossentropy`.
        min_loss: Lower bound of the per-token loss (default 0).
        max_loss: Upper bound; default `-log(epsilon)`.
        epsilon: Clamp for probabilities.

    Returns:
        The clipped per-token loss.

    Example:

    >>> import numpy as np
    >>> loss = clipped_sparse_categorical_crossentropy(
    ...     np.array([0]), np.array([[1e-9, 1.0]]), max_loss=5.0)
    >>> float(loss[0])
    5.0
    """
    eps = _resolve_epsilon(epsilon)
    max_loss = _default_max_loss(eps) if max_loss is None else max_loss
    _check_clip_range(min_loss, max_loss)
    raw = stable_sparse_categorical_crossentropy(
        y_true, y_pred, from_logits, ignore_class, axis, epsilon=eps
    )
    clipped = ops.clip(raw, min_loss, max_loss)
    return _mask_ignored(clipped, get_mask(raw))


# --------------------------------------------------------------------------
# bounded (generalised cross-entropy)
# --------------------------------------------------------------------------
def _gce(log_p, q):
    return (1.0 - ops.exp(q * log_p)) / q


def bounded_categorical_crossentropy(
    y_true,
    y_pred,
    from_logits=False,
    label_smoothing=0.0,
    axis=-1,
    *,
    q=0.7,
    epsilon=None,
):
    """The generalised cross-entropy of Zhang & Sabuncu (NeurIPS 2018).

    Robust to noisy labels: each token costs at most `1/q`, so a mislabelled
    token cannot dominate the mean the way an unbounded `-log p` can. As
    `q -> 0` it tends to cross-entropy; `q = 1` is the mean absolute error on
    the true class's probability.

    Formula:

    ```
    loss = sum(y_true * (1 - p ** q) / q, axis)     # in [0, 1/q] for valid labels
    ```

    Args:
        y_true, y_pred, from_logits, label_smoothing, axis: As
            `stable_categorical_crossentropy`.
        q: In (0, 1]; default 0.7.
        epsilon: Clamp for probabilities.

    Returns:
        The per-token loss.

    Raises:
        ValueError: If `q` is outside (0, 1] or another argument is invalid.

    Example:

    >>> import numpy as np
    >>> y = np.array([[0.0, 1.0]])
    >>> round(float(bounded_categorical_crossentropy(y, np.array([[0.5, 0.5]]))[0]), 4)
    0.5492
    """
    _check_q(q)
    _check_label_smoothing(label_smoothing)
    eps = _resolve_epsilon(epsilon)
    y_true, y_pred = _tensor(y_true), _tensor(y_pred)
    _check_dense_shapes(y_true, y_pred)
    y_true = _dense_labels(y_true, y_pred, label_smoothing, axis)
    log_p = _log_probs(y_pred, from_logits, axis, eps)
    return ops.sum(y_true * _gce(log_p, q), axis=axis)


def bounded_sparse_categorical_crossentropy(
    y_true,
    y_pred,
    from_logits=False,
    ignore_class=None,
    axis=-1,
    *,
    q=0.7,
    epsilon=None,
):
    """Sparse twin of `bounded_categorical_crossentropy`: `(1 - p_y^q) / q`.

    Args:
        y_true, y_pred, from_logits, ignore_class, axis: As
            `stable_sparse_categorical_crossentropy`.
        q: In (0, 1]; default 0.7.
        epsilon: Clamp for probabilities.

    Returns:
        The per-token loss, in `[0, 1/q]`.

    Example:

    >>> import numpy as np
    >>> loss = bounded_sparse_categorical_crossentropy(
    ...     np.array([1]), np.array([[0.0, 1.0]]), q=1.0)
    >>> round(float(loss[0]), 6)
    0.0
    """
    _check_q(q)
    _check_axis_last(axis)
    eps = _resolve_epsilon(epsilon)
    y_true, y_pred = _tensor(y_true), _tensor(y_pred)
    ids, valid = _sparse_labels(y_true, y_pred, ignore_class)
    per_token = _gce(_log_p_true(y_pred, ids, from_logits, eps), q)
    return _mask_ignored(per_token, valid)


for _fn in (
    stable_categorical_crossentropy,
    stable_sparse_categorical_crossentropy,
    clipped_categorical_crossentropy,
    clipped_sparse_categorical_crossentropy,
    bounded_categorical_crossentropy,
    bounded_sparse_categorical_crossentropy,
):
    _register(_fn)


# --------------------------------------------------------------------------
# classes
# --------------------------------------------------------------------------
# Each function declares its family, as the classes do (`loss_kind`).
stable_categorical_crossentropy.loss_kind = LossKind.CATEGORICAL
stable_sparse_categorical_crossentropy.loss_kind = LossKind.SPARSE
clipped_categorical_crossentropy.loss_kind = LossKind.CATEGORICAL
clipped_sparse_categorical_crossentropy.loss_kind = LossKind.SPARSE
bounded_categorical_crossentropy.loss_kind = LossKind.CATEGORICAL
bounded_sparse_categorical_crossentropy.loss_kind = LossKind.SPARSE


class _CrossentropyLoss(keras.losses.Loss):
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


@_register
class StableCategoricalCrossentropy(_CrossentropyLoss):
    """Drop-in `keras.losses.CategoricalCrossentropy`, finite in float32.

    See `stable_categorical_crossentropy` for the formula.

    Args:
        from_logits, label_smoothing, axis, reduction, name, dtype: As Keras'
            `CategoricalCrossentropy`.
        epsilon: Keyword-only clamp for probabilities, in (0, 0.5).

    Example:

    >>> loss = StableCategoricalCrossentropy(label_smoothing=0.1)
    >>> loss.get_config()["label_smoothing"]
    0.1
    >>> # model.compile(optimizer="adam", loss=loss)
    """

    loss_kind = LossKind.CATEGORICAL

    fn = staticmethod(stable_categorical_crossentropy)

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="stable_categorical_crossentropy",
        dtype=None,
        *,
        epsilon=None,
    ):
        _check_label_smoothing(label_smoothing)
        _resolve_epsilon(epsilon)
        super().__init__(
            name,
            reduction,
            dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            epsilon=epsilon,
        )


@_register
class StableSparseCategoricalCrossentropy(_CrossentropyLoss):
    """Drop-in `keras.losses.SparseCategoricalCrossentropy`, finite in float32.

    Args:
        from_logits, ignore_class, reduction, axis, name, dtype: As Keras'
            `SparseCategoricalCrossentropy`.
        epsilon: Keyword-only clamp for probabilities, in (0, 0.5).

    Example:

    >>> loss = StableSparseCategoricalCrossentropy(ignore_class=0)
    >>> loss.get_config()["ignore_class"]
    0
    """

    loss_kind = LossKind.SPARSE

    fn = staticmethod(stable_sparse_categorical_crossentropy)

    def __init__(
        self,
        from_logits=False,
        ignore_class=None,
        reduction="sum_over_batch_size",
        axis=-1,
        name="stable_sparse_categorical_crossentropy",
        dtype=None,
        *,
        epsilon=None,
    ):
        _check_axis_last(axis)
        _resolve_epsilon(epsilon)
        super().__init__(
            name,
            reduction,
            dtype,
            from_logits=from_logits,
            ignore_class=ignore_class,
            axis=axis,
            epsilon=epsilon,
        )


class _ClippedCounter:
    """Counts the tokens a clipped loss clipped, in variables the step updates."""

    def _make_counters(self):
        self._clipped = keras.Variable(
            0.0, trainable=False, dtype="float32", name="clipped_count"
        )
        self._tokens = keras.Variable(
            0.0, trainable=False, dtype="float32", name="token_count"
        )

    @property
    def clipped_count(self) -> int:
        """Tokens clipped since creation or `reset_counts()`."""
        return int(keras.ops.convert_to_numpy(self._clipped))

    @property
    def token_count(self) -> int:
        """Tokens counted (the unmasked ones) since creation or `reset_counts()`."""
        return int(keras.ops.convert_to_numpy(self._tokens))

    def _count(self, raw):
        lo = self._fn_kwargs["min_loss"]
        hi = self._fn_kwargs["max_loss"]
        hi = (
            _default_max_loss(_resolve_epsilon(self._fn_kwargs["epsilon"]))
            if (hi is None)
            else hi
        )
        outside = ops.logical_or(ops.less(raw, lo), ops.greater(raw, hi))
        valid = get_mask(raw)
        if valid is not None:
            outside = ops.logical_and(outside, valid)
            n = ops.sum(ops.cast(valid, "float32"))
        else:
            n = ops.cast(ops.size(raw), "float32")
        self._clipped.assign_add(ops.sum(ops.cast(outside, "float32")))
        self._tokens.assign_add(n)
        return ops.clip(raw, lo, hi)

    def clipped_fraction(self):
        """The share of tokens clipped since creation or `reset_counts()`."""
        seen = self.token_count
        return self.clipped_count / seen if seen else 0.0

    def reset_counts(self):
        """Set both counters back to zero."""
        self._clipped.assign(0.0)
        self._tokens.assign(0.0)


@_register
class ClippedCategoricalCrossentropy(_ClippedCounter, _CrossentropyLoss):
    """Categorical cross-entropy clipped per token into `[min_loss, max_loss]`.

    Clipping a negative loss to 0 hides the bug that made it negative; this
    class therefore counts what it clipped: `clipped_count`, `token_count`
    (ints, read from the variables the train step updates) and
    `clipped_fraction()`. A healthy run with valid
    labels clips nothing at the default bounds.

    Args:
        from_logits, label_smoothing, axis, reduction, name, dtype: As Keras'.
        min_loss: Keyword-only lower bound (default 0).
        max_loss: Keyword-only upper bound (default `-log(epsilon)`).
        epsilon: Keyword-only clamp for probabilities.

    Example:

    >>> import numpy as np
    >>> loss = ClippedCategoricalCrossentropy()
    >>> float(loss(np.array([[-1.0, 0.0]]), np.array([[0.5, 0.5]])))
    0.0
    >>> loss.clipped_fraction()
    1.0
    """

    loss_kind = LossKind.CATEGORICAL

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="clipped_categorical_crossentropy",
        dtype=None,
        *,
        min_loss=0.0,
        max_loss=None,
        epsilon=None,
    ):
        _check_label_smoothing(label_smoothing)
        eps = _resolve_epsilon(epsilon)
        _check_clip_range(
            min_loss, _default_max_loss(eps) if max_loss is None else max_loss
        )
        super().__init__(
            name,
            reduction,
            dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            min_loss=min_loss,
            max_loss=max_loss,
            epsilon=epsilon,
        )
        self._make_counters()

    def call(self, y_true, y_pred):
        k = self._fn_kwargs
        raw = stable_categorical_crossentropy(
            y_true,
            y_pred,
            k["from_logits"],
            k["label_smoothing"],
            k["axis"],
            epsilon=k["epsilon"],
        )
        return self._count(raw)


@_register
class ClippedSparseCategoricalCrossentropy(_ClippedCounter, _CrossentropyLoss):
    """Sparse twin of `ClippedCategoricalCrossentropy`, with the same counters.

    Args:
        from_logits, ignore_class, reduction, axis, name, dtype: As Keras'.
        min_loss, max_loss, epsilon: Keyword-only, as the dense class.

    Example:

    >>> loss = ClippedSparseCategoricalCrossentropy(max_loss=5.0)
    >>> loss.get_config()["max_loss"]
    5.0
    """

    loss_kind = LossKind.SPARSE

    def __init__(
        self,
        from_logits=False,
        ignore_class=None,
        reduction="sum_over_batch_size",
        axis=-1,
        name="clipped_sparse_categorical_crossentropy",
        dtype=None,
        *,
        min_loss=0.0,
        max_loss=None,
        epsilon=None,
    ):
        _check_axis_last(axis)
        eps = _resolve_epsilon(epsilon)
        _check_clip_range(
            min_loss, _default_max_loss(eps) if max_loss is None else max_loss
        )
        super().__init__(
            name,
            reduction,
            dtype,
            from_logits=from_logits,
            ignore_class=ignore_class,
            axis=axis,
            min_loss=min_loss,
            max_loss=max_loss,
            epsilon=epsilon,
        )
        self._make_counters()

    def call(self, y_true, y_pred):
        k = self._fn_kwargs
        raw = stable_sparse_categorical_crossentropy(
            y_true,
            y_pred,
            k["from_logits"],
            k["ignore_class"],
            k["axis"],
            epsilon=k["epsilon"],
        )
        valid = get_mask(raw)
        return _mask_ignored(self._count(raw), valid)


@_register
class BoundedCategoricalCrossentropy(_CrossentropyLoss):
    """The generalised cross-entropy `(1 - p_y^q) / q`, bounded in `[0, 1/q]`.

    Args:
        from_logits, label_smoothing, axis, reduction, name, dtype: As Keras'.
        q: Keyword-only, in (0, 1]; default 0.7.
        epsilon: Keyword-only clamp for probabilities.

    Example:

    >>> BoundedCategoricalCrossentropy(q=0.5).get_config()["q"]
    0.5
    """

    loss_kind = LossKind.CATEGORICAL

    fn = staticmethod(bounded_categorical_crossentropy)

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="bounded_categorical_crossentropy",
        dtype=None,
        *,
        q=0.7,
        epsilon=None,
    ):
        _check_q(q)
        _check_label_smoothing(label_smoothing)
        _resolve_epsilon(epsilon)
        super().__init__(
            name,
            reduction,
            dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            q=q,
            epsilon=epsilon,
        )


@_register
class BoundedSparseCategoricalCrossentropy(_CrossentropyLoss):
    """Sparse twin of `BoundedCategoricalCrossentropy`.

    Args:
        from_logits, ignore_class, reduction, axis, name, dtype: As Keras'.
        q: Keyword-only, in (0, 1]; default 0.7.
        epsilon: Keyword-only clamp for probabilities.

    Example:

    >>> BoundedSparseCategoricalCrossentropy(ignore_class=0).get_config()["q"]
    0.7
    """

    loss_kind = LossKind.SPARSE

    fn = staticmethod(bounded_sparse_categorical_crossentropy)

    def __init__(
        self,
        from_logits=False,
        ignore_class=None,
        reduction="sum_over_batch_size",
        axis=-1,
        name="bounded_sparse_categorical_crossentropy",
        dtype=None,
        *,
        q=0.7,
        epsilon=None,
    ):
        _check_q(q)
        _check_axis_last(axis)
        _resolve_epsilon(epsilon)
        super().__init__(
            name,
            reduction,
            dtype,
            from_logits=from_logits,
            ignore_class=ignore_class,
            axis=axis,
            q=q,
            epsilon=epsilon,
        )
