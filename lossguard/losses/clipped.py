"""Clipped cross-entropies: each token's loss clipped, and counted."""

from __future__ import annotations

import math

import keras
from keras import ops

from lossguard.keras_compat import get_mask
from lossguard.kinds import LossKind
from lossguard.losses.common import (
    CrossentropyLoss,
    check_axis_last,
    check_clip_range,
    check_label_smoothing,
    mask_ignored,
    register,
    resolve_epsilon,
)
from lossguard.losses.stable import (
    stable_categorical_crossentropy,
    stable_sparse_categorical_crossentropy,
)


def default_max_loss(eps):
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
    eps = resolve_epsilon(epsilon)
    max_loss = default_max_loss(eps) if max_loss is None else max_loss
    check_clip_range(min_loss, max_loss)
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
    eps = resolve_epsilon(epsilon)
    max_loss = default_max_loss(eps) if max_loss is None else max_loss
    check_clip_range(min_loss, max_loss)
    raw = stable_sparse_categorical_crossentropy(
        y_true, y_pred, from_logits, ignore_class, axis, epsilon=eps
    )
    clipped = ops.clip(raw, min_loss, max_loss)
    return mask_ignored(clipped, get_mask(raw))


# --------------------------------------------------------------------------
# bounded (generalised cross-entropy)
# --------------------------------------------------------------------------

for _fn in (clipped_categorical_crossentropy, clipped_sparse_categorical_crossentropy):
    register(_fn)
clipped_categorical_crossentropy.loss_kind = LossKind.CATEGORICAL
clipped_sparse_categorical_crossentropy.loss_kind = LossKind.SPARSE


class ClippedCounter:
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
            default_max_loss(resolve_epsilon(self._fn_kwargs["epsilon"]))
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


@register
class ClippedCategoricalCrossentropy(ClippedCounter, CrossentropyLoss):
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
        check_label_smoothing(label_smoothing)
        eps = resolve_epsilon(epsilon)
        check_clip_range(
            min_loss, default_max_loss(eps) if max_loss is None else max_loss
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


@register
class ClippedSparseCategoricalCrossentropy(ClippedCounter, CrossentropyLoss):
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
        check_axis_last(axis)
        eps = resolve_epsilon(epsilon)
        check_clip_range(
            min_loss, default_max_loss(eps) if max_loss is None else max_loss
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
        return mask_ignored(self._count(raw), valid)
