"""In-graph statistics of one batch: the schema and the engine.

`output_statistics` is the single computation behind the callback,
`diagnose` and the stateful metrics of `lossguard.metrics`: it runs inside
the train step on the exact batch (no extra forward pass) and returns a dict
of float32 scalars. Rows (one per token: every axis but the class axis)
whose sample weight or Keras mask is 0 are *inactive*: they cannot change
the loss, so label and prediction statistics ignore them.

Every statistic is declared once below (`Stat`): its dtype, how the values of
several replicas combine into the global batch's (`replicas`), and, for the
few that the history also shows for the whole model, how several outputs
combine (`outputs`).
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from lossguard import backends
from lossguard.diagnosis.specs import OutputSpec
from lossguard.keras_compat import get_mask

NAN = float("nan")

#: How a statistic of the global batch follows from its replicas' values.
REPLICA_RULES = (
    "mean",  # losses: each replica's mean over an equal share of the batch
    "sum",  # counts
    "first",  # the same on every replica (shape, configuration)
    "min",
    "max",  # also flags: 1 when any replica saw it
    "first_row",  # a row index, offset by the rows of earlier replicas
    "by_rows",  # a share over all rows
    "by_active_rows",  # a share or mean over active rows
    "by_nonempty_rows",  # a mean over active, non-empty label rows
)


@dataclasses.dataclass(frozen=True)
class Stat:
    """One statistic: its name, dtype and how it combines."""

    name: str
    replicas: str
    outputs: str | None = None  # "min" | "max": a model-level history column
    dtype: str = "float32"  # what the value is (it travels as float32)
    doc: str = ""

    def __post_init__(self):
        if self.replicas not in REPLICA_RULES:
            raise ValueError(f"Unknown replica rule {self.replicas!r}.")


#: The whole batch's statistics (one per model).
GLOBAL_STATS = (
    Stat("loss", "mean", doc="the batch's total loss"),
    Stat("data_loss", "mean", doc="the compiled loss (all outputs, weighted)"),
    Stat("aux_loss", "mean", doc="sum(model.losses)"),
    Stat("x_nonfinite", "max", dtype="bool", doc="NaN/Inf in the inputs"),
    Stat("aux_nonfinite", "max", dtype="bool", doc="NaN/Inf in model.losses"),
)
#: One extra term of `model.losses`, keyed `aux:<layer name>` (or `aux:other`).
AUX_TERM = Stat("aux:", "mean", doc="one layer's add_loss / regulariser terms")

#: One output's statistics on one batch.
OUTPUT_STATS = (
    Stat("rows", "sum", dtype="int64", doc="token rows (every axis but classes)"),
    Stat("active_rows", "sum", dtype="int64", doc="rows with weight and mask != 0"),
    Stat("time_steps", "first", dtype="int64", doc="the output's second axis"),
    Stat("label_min", "min", outputs="min"),
    Stat("label_max", "max"),
    Stat("label_neg_share", "by_active_rows", doc="negative label entries"),
    Stat("label_neg_row_share", "by_active_rows", doc="rows with one"),
    Stat("label_neg_first_row", "first_row", dtype="int64"),
    Stat("label_sum_min", "min", outputs="min"),
    Stat("label_sum_max", "max", outputs="max"),
    Stat("label_sum_mean", "by_nonempty_rows"),
    Stat("label_sum_off_share", "by_active_rows", doc="rows off 1 by > 1e-3"),
    Stat("label_empty_share", "by_active_rows", doc="all-zero label rows"),
    Stat("label_out_of_range_share", "by_active_rows"),
    Stat("pred_min", "min", outputs="min"),
    Stat("pred_max", "max", outputs="max"),
    Stat("pred_sum_min", "min", outputs="min"),
    Stat("pred_sum_max", "max", outputs="max"),
    Stat("pred_saturated_share", "by_active_rows", doc="p exactly 0 or 1"),
    Stat("weight_min", "min", outputs="min"),
    Stat("weight_neg_share", "by_rows"),
    Stat("y_nonfinite", "max", dtype="bool"),
    Stat("pred_nonfinite", "max", dtype="bool"),
    Stat("weight_nonfinite", "max", dtype="bool"),
    Stat("pad_share", "by_active_rows", doc="active target positions = pad id 0"),
    Stat("masked", "max", dtype="bool", doc="the output carries a Keras mask"),
    Stat("weighted", "max", dtype="bool", doc="sample weights were given"),
    Stat("decoder_copy_share", "by_active_rows", doc="input == target, same step"),
    Stat("decoder_copy_input", "first", dtype="int64", doc="which input"),
    Stat("loss_at_clip_share", "by_active_rows", doc="terms a clipped loss clipped"),
    Stat("pred_softmax", "max", dtype="bool", doc="y_pred is a Keras softmax"),
)
#: Each output's own loss, for models with several outputs.
OUTPUT_LOSS_STATS = (
    Stat("data_loss", "mean", doc="the output's unweighted loss"),
    Stat("loss_weight", "first", doc="its compile() loss_weight"),
)

#: The per-output statistics, in the order they are packed.
OUTPUT_KEYS = tuple(stat.name for stat in OUTPUT_STATS)
GLOBAL_KEYS = tuple(stat.name for stat in GLOBAL_STATS)
#: Statistics the history also shows for the whole model: name -> min | max.
MODEL_COLUMNS = {s.name: s.outputs for s in OUTPUT_STATS if s.outputs}
_BY_NAME = {s.name: s for s in (*GLOBAL_STATS, *OUTPUT_STATS, *OUTPUT_LOSS_STATS)}


def stat_of(key: str) -> Stat:
    """The declaration behind a packed key (`label_min`, `out/label_min`, ...)."""
    if key.startswith(AUX_TERM.name):
        return AUX_TERM
    return _BY_NAME[key.rsplit("/", 1)[-1]]


#: Tolerance on a row sum of 1 (float32 softmax rounding is ~1e-6).
SUM_TOLERANCE = 1e-3
#: Half-precision softmax rows are off 1 by a few of their epsilons.
HALF_SUM_TOLERANCE = {"float16": 1e-2, "bfloat16": 5e-2}


def sum_tolerance(dtype) -> float:
    """How far a probability row of this dtype may sum from 1."""
    return HALF_SUM_TOLERANCE.get(str(dtype), SUM_TOLERANCE)


_HALF = ("float16", "bfloat16")
_INF = float("inf")


def f32(x):
    """`x` as float32 (as it is, where it already is: in an eager step every
    op costs its dispatch)."""
    dtype = getattr(x, "dtype", None)
    if dtype is not None and keras.backend.standardize_dtype(dtype) == "float32":
        return x
    return ops.cast(x, "float32")


# A mask of rows is None where every row counts (no weights, Keras mask or
# ignored class), and a count of rows is a Python float where the shapes are
# known while tracing: a step then runs no operation for either.


def _count(mask):
    return ops.sum(f32(mask))


def _share(mask, total):
    if isinstance(total, float):
        if total >= 1 and _size(mask) == total:  # one op: the mean
            return ops.mean(f32(mask))
        return _count(mask) / max(total, 1.0)
    return _count(mask) / ops.maximum(total, 1.0)


def _and(mask, other):
    """`mask & other`, where `mask` may be None (every row)."""
    return other if mask is None else ops.logical_and(mask, other)


def _if_any(n, compute):
    """`compute()` where `n` rows count, else NaN (not computed where `n`
    is known to be 0: a reduction over no rows)."""
    if isinstance(n, float):
        return compute() if n > 0 else ops.convert_to_tensor(NAN)
    return ops.where(n > 0, compute(), NAN)


def _masked_min(x, mask, n):
    return _if_any(n, lambda: ops.min(x if mask is None else ops.where(mask, x, _INF)))


def _masked_max(x, mask, n):
    return _if_any(n, lambda: ops.max(x if mask is None else ops.where(mask, x, -_INF)))


def _at_zero_or_one(p):
    return ops.logical_or(ops.equal(p, 0.0), ops.equal(p, 1.0))


def _nonfinite(total):
    return f32(ops.logical_not(ops.isfinite(total)))


def _size(x):
    """The element count: an int where every dimension is known while
    tracing, else a scalar tensor."""
    dims = tuple(x.shape)
    if all(isinstance(n, int) for n in dims):
        size = 1
        for n in dims:
            size *= n
        return size
    return ops.size(x)


def _equal(a, b):
    """`a == b` for sizes: a Python bool when both are known, else a tensor."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return ops.equal(ops.cast(a, "int64"), ops.cast(b, "int64"))


def _select(ok, compute, fallback):
    """`compute()` where `ok` holds, else `fallback()`.

    `ok` is decided while tracing where the shapes are known, and per batch
    (`ops.cond`) where they are not, so a batch whose shapes do not fit can
    never make the step fail: its statistics are NaN instead.
    """
    if isinstance(ok, bool):
        return compute() if ok else fallback()
    return ops.cond(ok, compute, fallback)


def _token_weights(sample_weight, mask, p, rows):
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
        if len(w.shape) != rank:
            w = None
        else:
            w = _broadcast_rows(w, p, rows)
    if mask is not None:
        m, _ = _fit_rows(f32(ops.convert_to_tensor(mask)), rows, fill=1.0)
        w = m if w is None else w * m
    return w, raw


def _broadcast_rows(w, p, rows):
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
    return _select(
        ok,
        lambda: ops.reshape(ops.broadcast_to(w, token_shape), (-1,)),
        lambda: ops.ones((rows,), "float32"),
    )


def _labels_for(y_true, y_pred, spec):
    y_true = ops.convert_to_tensor(y_true)
    if spec.sparse_labels:
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        return y_true
    if len(y_true.shape) == len(y_pred.shape) - 1 and y_pred.shape[-1] == 1:
        y_true = ops.expand_dims(y_true, -1)
    return y_true


def is_keras_softmax(y_pred, activation=None) -> bool:
    """True for a float32 tensor made by a Keras softmax over its last axis.

    Such a tensor is a probability distribution by construction: every entry
    in [0, 1], rows summing to 1 within float32 rounding. Known on every
    backend from the output layer's `activation` ("softmax"); on TensorFlow
    also from the graph (the tensor carries its logits, made by a Softmax op).
    """
    float32 = keras.backend.standardize_dtype(y_pred.dtype) == "float32"
    if activation == "softmax" and float32:
        return True
    if getattr(y_pred, "_keras_logits", None) is None:  # softmax or sigmoid
        return False
    try:
        op = y_pred.op.type  # a graph tensor (inside the train step)
    except AttributeError:  # eager: nothing to tell softmax from sigmoid by
        return False
    return op == "Softmax" and keras.backend.standardize_dtype(y_pred.dtype) == (
        "float32"
    )


def _fit_rows(x, rows, width=None, fill=0.0):
    """`x` as `(rows,)` (or `(rows, width)`) and whether its size fits.

    Where it does not fit on a batch, the view is `fill` and `fits` is False
    (a Python bool when the shapes are known while tracing, else a tensor).
    """
    total = rows if width is None else rows * width
    fits = _equal(_size(x), total)
    shape = (-1,) if width is None else (-1, width)
    empty = (rows,) if width is None else (rows, width)
    if fits is True and tuple(x.shape) == empty:
        return x, fits  # already laid out: no reshape in the step
    view = _select(
        fits, lambda: ops.reshape(x, shape), lambda: ops.full(empty, fill, x.dtype)
    )
    return view, fits


def _where_fits(stats, keys, fits):
    """NaN for `keys` of `stats` where the labels did not fit the batch."""
    if fits is True:
        return
    for key in keys:
        stats[key] = (
            ops.convert_to_tensor(NAN)
            if fits is False
            else ops.where(fits, f32(stats[key]), NAN)
        )


def output_statistics(
    y_true,
    y_pred,
    sample_weight=None,
    spec=None,
    mask=None,
    predictions=True,
    inputs=None,
):
    """The statistics of one output on one batch, as float32 scalar tensors.

    No batch can make this fail when the step runs: labels, weights, a mask
    or inputs whose size does not fit the output on some batch leave the
    statistics that need them NaN (or unweighted) on that batch.

    Args:
        y_true: The batch's labels.
        y_pred: The model's output for the batch (a Keras mask on it is used
            unless `mask` is given).
        sample_weight: Sample or class weights, any shape that broadcasts.
        spec: The output's `OutputSpec` (loss kind decides which statistics
            apply); default: categorical.
        mask: An explicit mask of the token shape.
        predictions: Whether to take the full-width prediction statistics
            (`pred_min`, `pred_max`, row sums, `pred_nonfinite`): three passes
            over the (rows, classes) output. Half-precision outputs always get
            them (saturation is their fault).
        inputs: The batch's model inputs: any of them laid out like the
            targets of a sequence output (ids, or one-hot rows) is compared
            with them position by position (`decoder_copy_share`).

    Returns:
        A dict keyed by `OUTPUT_KEYS`; statistics that do not apply are NaN.
    """
    spec = spec or OutputSpec(name="output", loss_name="?", kind="categorical")
    if mask is None:
        mask = get_mask(y_pred)
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = _labels_for(y_true, y_pred, spec)
    half = keras.backend.standardize_dtype(y_pred.dtype) in _HALF
    predictions = predictions or half
    p = f32(y_pred)
    k = p.shape[-1] if p.shape[-1] is not None else ops.shape(p)[-1]
    rank = len(p.shape) - 1
    p2 = ops.reshape(p, (-1, k))
    rows = p2.shape[0] if p2.shape[0] is not None else ops.shape(p2)[0]
    weights, raw_weights = _token_weights(sample_weight, mask, p, rows)
    out = dict.fromkeys(OUTPUT_KEYS, ops.convert_to_tensor(NAN))
    n_rows = float(rows) if isinstance(rows, int) else f32(rows)
    active = None  # every row
    if raw_weights is not None:
        out["weight_min"] = ops.min(raw_weights)
        out["weight_neg_share"] = _share(
            ops.less(raw_weights, 0.0), f32(_size(raw_weights))
        )
        out["weight_nonfinite"] = _nonfinite(ops.sum(raw_weights))
    if weights is not None:
        active = ops.not_equal(weights, 0.0)
    n_act = n_rows if active is None else _count(active)
    out["rows"] = n_rows
    out["time_steps"] = (
        f32(ops.shape(p)[1]) if rank >= 2 else ops.convert_to_tensor(1.0)
    )
    out["masked"] = ops.convert_to_tensor(float(mask is not None))
    out["weighted"] = ops.convert_to_tensor(float(sample_weight is not None))

    ids, saturated, label_keys, fits = None, None, (), True
    if spec.sparse_labels:
        ids = y_true  # int32 and int64 ids are compared as they are
        if keras.backend.standardize_dtype(ids.dtype) not in ("int32", "int64"):
            ids = ops.cast(ids, "int32")
        ids, fits = _fit_rows(ids, rows)
        if spec.ignore_class is not None:
            active = _and(active, ops.not_equal(ids, spec.ignore_class))
            n_act = _count(active)
        idf = f32(ids)
        out["label_min"] = _masked_min(idf, active, n_act)
        out["label_max"] = _masked_max(idf, active, n_act)
        bad = _and(active, ops.logical_or(ops.less(ids, 0), ops.greater_equal(ids, k)))
        out["label_out_of_range_share"] = _share(bad, n_act)
        out["y_nonfinite"] = ops.convert_to_tensor(0.0)
        label_keys = ("label_min", "label_max", "label_out_of_range_share")
        if predictions:
            safe = ops.expand_dims(ops.where(bad, 0, ids), -1)
            saturated = _at_zero_or_one(
                ops.squeeze(ops.take_along_axis(p2, safe, axis=-1), -1)
            )
    elif isinstance(k, int):
        y2, fits = _fit_rows(f32(y_true), rows, k)
        label_min = _masked_min(ops.min(y2, axis=-1), active, n_act)
        out["label_min"] = label_min
        sums = ops.sum(y2, axis=-1)
        out["y_nonfinite"] = _nonfinite(ops.sum(sums))
        label_keys = ("label_min", "y_nonfinite")
        if spec.label_rows_are_distributions:
            label_keys += _dense_label_rows(out, y2, sums, active, n_act, label_min)
            if spec.one_hot_labels:
                ids = ops.argmax(y2, axis=-1)
        else:
            out["label_max"] = _masked_max(ops.max(y2, axis=-1), active, n_act)
            label_keys += ("label_max",)
            if spec.binary_targets:
                outside = ops.logical_or(ops.less(y2, 0.0), ops.greater(y2, 1.0))
                if active is not None:
                    outside = ops.logical_and(ops.expand_dims(active, -1), outside)
                out["label_out_of_range_share"] = _share(outside, n_act * f32(k))
                label_keys += ("label_out_of_range_share",)
        if predictions and spec.label_rows_are_distributions:
            saturated = _at_zero_or_one(ops.sum(y2 * p2, axis=-1))  # p of the label
        elif predictions and spec.binary_targets:
            # A sigmoid output saturates on its own: any unit at exactly 0 or 1.
            saturated = ops.any(_at_zero_or_one(p2), axis=-1)
    out["active_rows"] = n_act
    if predictions:
        # Row-wise reductions first (plain passes), masks on the rows after.
        out["pred_min"] = _masked_min(ops.min(p2, axis=-1), active, n_act)
        out["pred_max"] = _masked_max(ops.max(p2, axis=-1), active, n_act)
        psums = ops.sum(p2, axis=-1)
        out["pred_nonfinite"] = _nonfinite(ops.sum(psums))
        if spec.prediction_rows_sum_to_one:
            out["pred_sum_min"] = _masked_min(psums, active, n_act)
            out["pred_sum_max"] = _masked_max(psums, active, n_act)
    if saturated is not None:
        out["pred_saturated_share"] = _share(_and(active, saturated), n_act)
        label_keys += ("pred_saturated_share",)
    if ids is not None and rank == 2 and spec.categorical:
        steps = p.shape[1] if p.shape[1] is not None else ops.shape(p)[1]
        label_keys += _sequence_statistics(
            out, ids, active, n_act, inputs, rows, k, steps
        )
    _where_fits(out, label_keys, fits)
    return {key: f32(ops.convert_to_tensor(value)) for key, value in out.items()}


def _sequence_statistics(out, ids, active, n_act, inputs, rows, k, steps):
    """Padding share of the targets, and inputs that copy them (unshifted).

    `pad_share` is the share of the rows the loss counts (a mask,
    `ignore_class` or zero weights take padding out of it) whose target is
    the padding id 0. `decoder_copy_share` is the share of real target
    positions whose input token, at the same position, is the target itself.
    Real means not padding, whatever its id: not 0, not masked or ignored,
    and not in the run of one token that ends a sequence (keras.io's
    character seq2seq pads with spaces, and its decoder input and target
    both end in them: those runs are padding, not copies).
    """
    ids = ops.cast(ids, "int32")
    pad = ops.equal(ids, 0)
    out["pad_share"] = _share(_and(active, pad), n_act)
    pad = ops.logical_or(pad, _trailing_run(ids, steps))
    real = _and(active, ops.logical_not(pad))
    n_real = _count(real)
    shares = []
    for tokens in keras.tree.flatten(inputs) if inputs is not None else []:
        tokens = _input_ids(tokens, k)
        if tokens is None:
            continue
        view, fits = _fit_rows(tokens, rows)
        share = _share(ops.logical_and(real, ops.equal(view, ids)), n_real)
        shares.append(share if fits is True else ops.where(fits, share, 0.0))
    if shares:
        stacked = ops.stack(shares)
        out["decoder_copy_share"] = ops.max(stacked)
        out["decoder_copy_input"] = f32(ops.argmax(stacked))
    return ("pad_share", "decoder_copy_share", "decoder_copy_input")


def _trailing_run(ids, steps):
    """Per row: whether the position is in the run of the token that ends
    its sequence (`ids` laid out as (batch * steps,))."""
    grid = ops.reshape(ids, (-1, steps))
    same = ops.cast(ops.equal(grid, grid[:, -1:]), "int32")
    run = ops.flip(ops.cumprod(ops.flip(same, axis=1), axis=1), axis=1)
    return ops.reshape(ops.cast(run, "bool"), (-1,))


def _input_ids(tokens, k):
    """An input's token ids, if it is laid out as ids or one-hot rows."""
    if not hasattr(tokens, "shape") or not hasattr(tokens, "dtype"):
        return None
    dtype = keras.backend.standardize_dtype(tokens.dtype)
    shape = tuple(tokens.shape)
    if "int" in dtype and len(shape) == 3 and shape[-1] == 1:
        tokens = ops.squeeze(tokens, -1)
        shape = shape[:-1]
    if "int" in dtype and len(shape) == 2:
        return ops.cast(tokens, "int32")
    if "float" in dtype and len(shape) == 3 and shape[-1] == k:
        return ops.cast(ops.argmax(tokens, axis=-1), "int32")
    return None


def _dense_label_rows(out, y2, sums, active, n_act, label_min):
    """Row sums, empty rows, and (only when a label is negative) where."""
    width = y2.shape[-1]
    if isinstance(n_act, float) and isinstance(width, int):
        n_entries = n_act * width
    else:
        n_entries = n_act * f32(ops.shape(y2)[-1])

    def negatives():
        neg = ops.less(y2, 0.0)
        if active is not None:
            neg = ops.logical_and(ops.expand_dims(active, -1), neg)
        row_neg = ops.any(neg, axis=-1)
        first = ops.where(ops.any(row_neg), f32(ops.argmax(f32(row_neg))), -1.0)
        return ops.stack(
            [_share(neg, n_entries), _share(row_neg, n_act), first]
        ), row_neg

    def none():
        return ops.convert_to_tensor([0.0, 0.0, -1.0]), ops.zeros_like(sums, "bool")

    if backends.current().branch_free_statistics:
        # Eager: a branch would cost a device sync, and it cannot be
        # vectorised over steps (torch.func.vmap); both give the same values.
        packed, row_neg = negatives()
    else:
        packed, row_neg = ops.cond(label_min < 0, negatives, none)
    out["label_neg_share"] = packed[0]
    out["label_neg_row_share"] = packed[1]
    out["label_neg_first_row"] = packed[2]
    empty = ops.logical_and(
        _and(active, ops.equal(sums, 0.0)), ops.logical_not(row_neg)
    )
    nonempty = _and(active, ops.logical_not(empty))
    n_nonempty = _count(nonempty)
    out["label_empty_share"] = _share(empty, n_act)
    out["label_sum_min"] = _masked_min(sums, nonempty, n_nonempty)
    out["label_sum_max"] = _masked_max(sums, nonempty, n_nonempty)
    out["label_sum_mean"] = ops.where(
        n_nonempty > 0,
        ops.sum(ops.where(nonempty, sums, 0.0)) / ops.maximum(n_nonempty, 1.0),
        NAN,
    )
    off = ops.logical_and(nonempty, ops.greater(ops.abs(sums - 1.0), SUM_TOLERANCE))
    out["label_sum_off_share"] = _share(off, n_act)
    return (
        "label_neg_share",
        "label_neg_row_share",
        "label_neg_first_row",
        "label_empty_share",
        "label_sum_min",
        "label_sum_max",
        "label_sum_mean",
        "label_sum_off_share",
    )
