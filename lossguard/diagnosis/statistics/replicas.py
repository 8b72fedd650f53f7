"""One global-batch row from the rows of several replicas (tf.distribute).

Each statistic's `ReplicaRule` says how: losses are the mean of the
replicas' means (equal shares of the batch), counts add up, minima and maxima
reduce (NaN where a replica saw no active row is ignored), shares are
weighted by each replica's rows, and the first negative label row is offset
by the rows of earlier replicas.
"""

from __future__ import annotations

from keras import ops

from .common import INF, NAN, ReplicaRule
from .schema import stat_of


def _extreme(reduce, fill):
    def combine(col, column):
        finite = ops.logical_not(ops.isnan(col))
        return ops.where(ops.any(finite), reduce(ops.where(finite, col, fill)), NAN)

    return combine


def _first_row(col, column):
    counts = column("rows")
    offsets = ops.cumsum(counts) - counts
    found = ops.where(col >= 0, col + offsets, INF)
    none = ops.where(ops.all(ops.isnan(col)), NAN, -1.0)  # unmeasured stays NaN
    return ops.where(ops.any(col >= 0), ops.min(found), none)


def _weighted(weights_of):
    def combine(col, column):
        weights = weights_of(column)
        ok = ops.logical_and(ops.logical_not(ops.isnan(col)), weights > 0)
        total = ops.sum(ops.where(ok, weights, 0.0))
        return ops.where(
            total > 0,
            ops.sum(ops.where(ok, col * weights, 0.0)) / ops.maximum(total, 1.0),
            NAN,
        )

    return combine


def _nonempty_rows(column):
    empty = column("label_empty_share")
    return column("active_rows") * (1.0 - ops.where(ops.isnan(empty), 0.0, empty))


#: rule -> combine(column of the replicas' values, column(name) -> another
#: statistic's column of the same output).
COMBINE = {
    ReplicaRule.MEAN: lambda col, column: ops.mean(col),
    ReplicaRule.SUM: lambda col, column: ops.sum(col),
    ReplicaRule.FIRST: lambda col, column: col[0],
    ReplicaRule.MIN: _extreme(ops.min, INF),
    ReplicaRule.MAX: _extreme(ops.max, -INF),
    ReplicaRule.FIRST_ROW: _first_row,
    ReplicaRule.BY_ROWS: _weighted(lambda column: column("rows")),
    ReplicaRule.BY_ACTIVE_ROWS: _weighted(lambda column: column("active_rows")),
    ReplicaRule.BY_NONEMPTY_ROWS: _weighted(_nonempty_rows),
}


def combine_replicas(rows, keys):
    """The global batch's row (a (keys,) float32 tensor) from the replicas'
    rows (a (replicas, keys) tensor)."""
    index = {k: i for i, k in enumerate(keys)}
    columns = []
    for key in keys:
        prefix = key[: -len(key.rsplit("/", 1)[-1])]

        def column(name, prefix=prefix):
            return rows[:, index[prefix + name]]

        value = COMBINE[stat_of(key).replicas](rows[:, index[key]], column)
        columns.append(ops.cast(value, "float32"))
    return ops.stack(columns)
