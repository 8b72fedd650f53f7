"""Bounded cross-entropies: the generalised cross-entropy (1 - p_y^q) / q."""

from __future__ import annotations

from keras import ops

from lossguard.kinds import LossKind
from lossguard.losses.common import (
    CrossentropyLoss,
    check_axis_last,
    check_dense_shapes,
    check_label_smoothing,
    check_q,
    dense_labels,
    log_p_true,
    log_probs,
    mask_ignored,
    register,
    resolve_epsilon,
    sparse_labels,
    tensor,
)


def gce(log_p, q):
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
    check_q(q)
    check_label_smoothing(label_smoothing)
    eps = resolve_epsilon(epsilon)
    y_true, y_pred = tensor(y_true), tensor(y_pred)
    check_dense_shapes(y_true, y_pred)
    y_true = dense_labels(y_true, y_pred, label_smoothing, axis)
    log_p = log_probs(y_pred, from_logits, axis, eps)
    return ops.sum(y_true * gce(log_p, q), axis=axis)


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
    check_q(q)
    check_axis_last(axis)
    eps = resolve_epsilon(epsilon)
    y_true, y_pred = tensor(y_true), tensor(y_pred)
    ids, valid = sparse_labels(y_true, y_pred, ignore_class)
    per_token = gce(log_p_true(y_pred, ids, from_logits, eps), q)
    return mask_ignored(per_token, valid)


for _fn in (bounded_categorical_crossentropy, bounded_sparse_categorical_crossentropy):
    register(_fn)
bounded_categorical_crossentropy.loss_kind = LossKind.CATEGORICAL
bounded_sparse_categorical_crossentropy.loss_kind = LossKind.SPARSE


@register
class BoundedCategoricalCrossentropy(CrossentropyLoss):
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
        check_q(q)
        check_label_smoothing(label_smoothing)
        resolve_epsilon(epsilon)
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


@register
class BoundedSparseCategoricalCrossentropy(CrossentropyLoss):
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
        check_q(q)
        check_axis_last(axis)
        resolve_epsilon(epsilon)
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
