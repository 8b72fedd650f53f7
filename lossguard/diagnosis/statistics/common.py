"""What every statistic shares: its declaration, and the reductions over rows.

A statistic is declared once, as a `Stat` beside the function that computes
it (`layout`, `weights`, `labels`, `predictions`, `sequence`, `losses`): its
name, its dtype, how the values of several replicas combine into the global
batch's (`ReplicaRule`), and, for the few that the history also shows for
the whole model, how several outputs combine. `tests/diagnosis/
test_statistics.py` holds each function to the keys and dtypes it declares.

The reductions below never fail on a batch: a mask of rows is None where
every row counts (no weights, Keras mask or ignored class), a count of rows
is a Python float where the shapes are known while tracing (a step then runs
no operation for either), and a reduction over no rows is NaN.
"""

from __future__ import annotations

import dataclasses
from enum import Enum

import keras
from keras import ops

NAN = float("nan")
INF = float("inf")
#: Tolerance on a row sum of 1 (float32 softmax rounding is ~1e-6).
SUM_TOLERANCE = 1e-3
#: Half-precision softmax rows are off 1 by a few of their epsilons.
HALF_SUM_TOLERANCE = {"float16": 1e-2, "bfloat16": 5e-2}
HALF = ("float16", "bfloat16")


def sum_tolerance(dtype) -> float:
    """How far a probability row of this dtype may sum from 1."""
    return HALF_SUM_TOLERANCE.get(str(dtype), SUM_TOLERANCE)


class ReplicaRule(str, Enum):
    """How a statistic of the global batch follows from its replicas' values
    (`lossguard.diagnosis.statistics.replicas` applies them)."""

    #: Losses: each replica's mean over an equal share of the batch.
    MEAN = "mean"
    #: Counts.
    SUM = "sum"
    #: The same on every replica (a shape, a setting).
    FIRST = "first"
    MIN = "min"
    #: Also flags: 1 when any replica saw it.
    MAX = "max"
    #: A row index, offset by the rows of earlier replicas.
    FIRST_ROW = "first_row"
    #: A share over all rows.
    BY_ROWS = "by_rows"
    #: A share or mean over the rows the loss counts.
    BY_ACTIVE_ROWS = "by_active_rows"
    #: A mean over active, non-empty label rows.
    BY_NONEMPTY_ROWS = "by_nonempty_rows"


#: What a value is (every value travels as float32): a real number, a whole
#: count or index, or a flag (0 or 1).
DTYPES = ("float32", "int64", "bool")


@dataclasses.dataclass(frozen=True)
class Stat:
    """One statistic: its name, dtype, replica rule and meaning.

    `outputs` ("min" or "max") makes it a model-level history column too,
    reduced that way over the outputs.
    """

    name: str
    replicas: ReplicaRule
    dtype: str = "float32"
    outputs: str | None = None
    doc: str = ""

    def __post_init__(self):
        object.__setattr__(self, "replicas", ReplicaRule(self.replicas))
        if self.dtype not in DTYPES:
            raise ValueError(f"Stat {self.name!r}: dtype must be one of {DTYPES}.")
        if self.outputs not in (None, "min", "max"):
            raise ValueError(f"Stat {self.name!r}: outputs must be 'min' or 'max'.")


def f32(x):
    """`x` as float32 (as it is, where it already is: in an eager step every
    op costs its dispatch)."""
    dtype = getattr(x, "dtype", None)
    if dtype is not None and keras.backend.standardize_dtype(dtype) == "float32":
        return x
    return ops.cast(x, "float32")


def nan():
    return ops.convert_to_tensor(NAN)


def count(mask):
    return ops.sum(f32(mask))


def share(mask, total):
    """The share of `total` rows that `mask` holds (a Python float `total`
    known while tracing costs no operation)."""
    if isinstance(total, float):
        if total >= 1 and size(mask) == total:  # one op: the mean
            return ops.mean(f32(mask))
        return count(mask) / max(total, 1.0)
    return count(mask) / ops.maximum(total, 1.0)


def both(mask, other):
    """`mask & other`, where `mask` may be None (every row)."""
    return other if mask is None else ops.logical_and(mask, other)


def if_any(n, compute):
    """`compute()` where `n` rows count, else NaN (not computed where `n`
    is known to be 0: a reduction over no rows)."""
    if isinstance(n, float):
        return compute() if n > 0 else nan()
    return ops.where(n > 0, compute(), NAN)


def masked_min(x, mask, n):
    return if_any(n, lambda: ops.min(x if mask is None else ops.where(mask, x, INF)))


def masked_max(x, mask, n):
    return if_any(n, lambda: ops.max(x if mask is None else ops.where(mask, x, -INF)))


def at_zero_or_one(p):
    return ops.logical_or(ops.equal(p, 0.0), ops.equal(p, 1.0))


def nonfinite(total):
    """1.0 where a sum is NaN or infinite (one reduction finds any)."""
    return f32(ops.logical_not(ops.isfinite(total)))


def size(x):
    """The element count: an int where every dimension is known while
    tracing, else a scalar tensor."""
    dims = tuple(x.shape)
    if all(isinstance(n, int) for n in dims):
        total = 1
        for n in dims:
            total *= n
        return total
    return ops.size(x)


def equal_sizes(a, b):
    """`a == b` for sizes: a Python bool when both are known, else a tensor."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return ops.equal(ops.cast(a, "int64"), ops.cast(b, "int64"))


def select(ok, compute, fallback):
    """`compute()` where `ok` holds, else `fallback()`.

    `ok` is decided while tracing where the shapes are known, and per batch
    (`ops.cond`) where they are not, so a batch whose shapes do not fit can
    never make the step fail: its statistics are NaN instead.
    """
    if isinstance(ok, bool):
        return compute() if ok else fallback()
    return ops.cond(ok, compute, fallback)


def fit_rows(x, rows, width=None, fill=0.0):
    """`x` as `(rows,)` (or `(rows, width)`) and whether its size fits.

    Where it does not fit on a batch, the view is `fill` and `fits` is False
    (a Python bool when the shapes are known while tracing, else a tensor).
    """
    total = rows if width is None else rows * width
    fits = equal_sizes(size(x), total)
    shape = (-1,) if width is None else (-1, width)
    empty = (rows,) if width is None else (rows, width)
    if fits is True and tuple(x.shape) == empty:
        return x, fits  # already laid out: no reshape in the step
    view = select(
        fits, lambda: ops.reshape(x, shape), lambda: ops.full(empty, fill, x.dtype)
    )
    return view, fits


def where_fits(stats, keys, fits):
    """NaN for `keys` of `stats` where the labels did not fit the batch."""
    if fits is True:
        return
    for key in keys:
        stats[key] = nan() if fits is False else ops.where(fits, f32(stats[key]), NAN)
