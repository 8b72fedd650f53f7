"""Sequence targets: padding, and decoder inputs that copy them."""

from __future__ import annotations

import keras
from keras import ops

from .common import ReplicaRule, Stat, both, count, f32, fit_rows, share
from .layout import OutputBatch

SEQUENCE_STATS = (
    Stat("pad_share", ReplicaRule.BY_ACTIVE_ROWS, doc="active targets = pad id 0"),
    Stat("decoder_copy_share", ReplicaRule.BY_ACTIVE_ROWS, doc="input == target"),
    Stat("decoder_copy_input", ReplicaRule.FIRST, "int64", doc="which input"),
)


def sequence_statistics(batch: OutputBatch, ids, inputs) -> dict:
    """Padding share of the targets, and inputs that copy them (unshifted).

    Taken for categorical (batch, steps, classes) outputs whose class ids are
    known. `pad_share` is the share of the rows the loss counts (a mask,
    `ignore_class` or zero weights take padding out of it) whose target is
    the padding id 0. `decoder_copy_share` is the share of real target
    positions whose input token, at the same position, is the target itself.
    Real means not padding, whatever its id: not 0, not masked or ignored,
    and not in the run of one token that ends a sequence (keras.io's
    character seq2seq pads with spaces, and its decoder input and target
    both end in them: those runs are padding, not copies).
    """
    if ids is None or batch.rank != 2 or not batch.spec.categorical:
        return {}
    output = batch.output
    steps = output.shape[1] if output.shape[1] is not None else ops.shape(output)[1]
    ids = ops.cast(ids, "int32")
    pad = ops.equal(ids, 0)
    out = {"pad_share": share(both(batch.active, pad), batch.n_active)}
    pad = ops.logical_or(pad, trailing_run(ids, steps))
    real = both(batch.active, ops.logical_not(pad))
    n_real = count(real)
    # One share per model input, in the order Keras flattens them (0 for an
    # input not laid out as token ids), so the finding names the right one.
    shares, compared = [], False
    for tokens in keras.tree.flatten(inputs) if inputs is not None else []:
        tokens = input_ids(tokens, batch.classes)
        if tokens is None:
            shares.append(ops.convert_to_tensor(0.0))
            continue
        view, fits = fit_rows(tokens, batch.rows)
        copied = share(ops.logical_and(real, ops.equal(view, ids)), n_real)
        shares.append(copied if fits is True else ops.where(fits, copied, 0.0))
        compared = True
    if compared:
        stacked = ops.stack(shares)
        out["decoder_copy_share"] = ops.max(stacked)
        out["decoder_copy_input"] = f32(ops.argmax(stacked))
    return out


def trailing_run(ids, steps):
    """Per row: whether the position is in the run of the token that ends
    its sequence (`ids` laid out as (batch * steps,))."""
    grid = ops.reshape(ids, (-1, steps))
    same = ops.cast(ops.equal(grid, grid[:, -1:]), "int32")
    run = ops.flip(ops.cumprod(ops.flip(same, axis=1), axis=1), axis=1)
    return ops.reshape(ops.cast(run, "bool"), (-1,))


def input_ids(tokens, k):
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
