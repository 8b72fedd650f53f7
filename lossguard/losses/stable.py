"""Stable cross-entropies: Keras' own, finite in float32 whatever the input."""

from __future__ import annotations

from keras import ops

from lossguard.kinds import LossKind
from lossguard.losses.common import (
    CrossentropyLoss,
    check_axis_last,
    check_dense_shapes,
    check_label_smoothing,
    dense_labels,
    log_p_true,
    log_probs,
    logits_if_softmax,
    mask_ignored,
    register,
    resolve_epsilon,
    sparse_labels,
    tensor,
    to_float32,
)


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
    check_label_smoothing(label_smoothing)
    eps = resolve_epsilon(epsilon)
    y_true, y_pred = tensor(y_true), tensor(y_pred)
    check_dense_shapes(y_true, y_pred)
    y_true = dense_labels(y_true, y_pred, label_smoothing, axis)
    logits, from_logits = logits_if_softmax(y_pred, from_logits)
    if from_logits:
        # The fused kernel: stable for logits of any finite magnitude.
        return ops.categorical_crossentropy(
            y_true, to_float32(logits), from_logits=True, axis=axis
        )
    log_p = log_probs(y_pred, False, axis, eps)
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
    check_axis_last(axis)
    eps = resolve_epsilon(epsilon)
    y_true, y_pred = tensor(y_true), tensor(y_pred)
    ids, valid = sparse_labels(y_true, y_pred, ignore_class)
    return mask_ignored(-log_p_true(y_pred, ids, from_logits, eps), valid)


# --------------------------------------------------------------------------
# clipped
# --------------------------------------------------------------------------

for _fn in (stable_categorical_crossentropy, stable_sparse_categorical_crossentropy):
    register(_fn)
stable_categorical_crossentropy.loss_kind = LossKind.CATEGORICAL
stable_sparse_categorical_crossentropy.loss_kind = LossKind.SPARSE


@register
class StableCategoricalCrossentropy(CrossentropyLoss):
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
        check_label_smoothing(label_smoothing)
        resolve_epsilon(epsilon)
        super().__init__(
            name,
            reduction,
            dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
            epsilon=epsilon,
        )


@register
class StableSparseCategoricalCrossentropy(CrossentropyLoss):
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
        check_axis_last(axis)
        resolve_epsilon(epsilon)
        super().__init__(
            name,
            reduction,
            dtype,
            from_logits=from_logits,
            ignore_class=ignore_class,
            axis=axis,
            epsilon=epsilon,
        )
