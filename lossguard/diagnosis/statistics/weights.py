"""Sample weights and the Keras mask: which rows the loss counts."""

from __future__ import annotations

from keras import ops

from .common import ReplicaRule, Stat, f32, fit_rows, nonfinite, select, share, size

WEIGHT_STATS = (
    Stat("weight_min", ReplicaRule.MIN, outputs="min", doc="the smallest weight"),
    Stat("weight_neg_share", ReplicaRule.BY_ROWS, doc="negative weights"),
    Stat("weight_nonfinite", ReplicaRule.MAX, "bool", doc="NaN/Inf in the weights"),
)


def weight_statistics(raw_weights) -> dict:
    """The weights as given (before they meet the mask): `WEIGHT_STATS`, or
    nothing where the batch has none."""
    if raw_weights is None:
        return {}
    return {
        "weight_min": ops.min(raw_weights),
        "weight_neg_share": share(ops.less(raw_weights, 0.0), f32(size(raw_weights))),
        "weight_nonfinite": nonfinite(ops.sum(raw_weights)),
    }


def token_weights(sample_weight, mask, p, rows):
    """Sample weights times the Keras mask, one value per token row.

    Returns `(weights or None, raw weights or None)`; weights or a mask that
    do not fit the output's token shape on a batch are left out (ones).
    """
    rank = len(p.shape) - 1
    raw, w = None, None
    if sample_weight is not None:
        raw = f32(ops.convert_to_tensor(sample_weight))
        w = raw
        while len(w.shape) > rank and w.shape[-1] == 1:
            w = ops.squeeze(w, axis=-1)
        while len(w.shape) < rank:
            w = ops.expand_dims(w, axis=-1)
        w = broadcast_rows(w, p, rows) if len(w.shape) == rank else None
    if mask is not None:
        m, _ = fit_rows(f32(ops.convert_to_tensor(mask)), rows, fill=1.0)
        w = m if w is None else w * m
    return w, raw


def broadcast_rows(w, p, rows):
    """Weights of the token rank, broadcast to one per row where they fit."""
    token_shape = ops.shape(p)[:-1]
    static = [
        a == b or a == 1
        for a, b in zip(w.shape, p.shape[:-1], strict=True)
        if isinstance(a, int) and isinstance(b, int)
    ]
    if not all(static):
        return None
    if len(static) == len(w.shape):
        ok = True
    else:
        ws = ops.shape(w)
        ok = ops.all(
            ops.stack(
                [
                    ops.logical_or(
                        ops.equal(ws[i], token_shape[i]), ops.equal(ws[i], 1)
                    )
                    for i in range(len(w.shape))
                ]
            )
        )
    return select(
        ok,
        lambda: ops.reshape(ops.broadcast_to(w, token_shape), (-1,)),
        lambda: ops.ones((rows,), "float32"),
    )
