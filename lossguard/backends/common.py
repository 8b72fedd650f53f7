"""What most backends do the same way (each backend module takes these or
answers its own)."""

from __future__ import annotations

import contextlib

import keras
import numpy as np
from keras import ops

carries_state = False
hooks_follow_each_step = False
reads_keras_logits = False
stops_on_bad_sparse_label = True
branch_free_statistics = False


def create(model, capacity, width, scope=contextlib.nullcontext):
    """The buffer of rows and the step counter.

    The buffer starts at zeros: a row whose step column is 0 was never
    written (steps count from 1). Not NaN: under a multi-process JAX
    distribution, Keras checks that every process places the same initial
    value, and NaN never equals itself.
    """
    with scope():
        buffer = keras.Variable(
            np.zeros((capacity, width), "float32"),
            trainable=False,
            name="lossguard_batch_stats",
            aggregation="only_first_replica",
        )
        counter = keras.Variable(
            0,
            dtype="int32",
            trainable=False,
            name="lossguard_steps",
            aggregation="only_first_replica",
        )
    return buffer, counter


def write_row_functionally(buffer, counter, row, capacity, after=None):
    """Write `row` at the counter's slot with a functional scatter, then
    count the step (`after(written)`: a context ordering the count after
    the write, where the backend needs telling)."""
    updated = _write_slot(buffer, counter % capacity, row)
    with (after or _unordered)(updated):
        counter.assign_add(1)


def _write_slot(buffer, slot, row):
    """Assign `buffer` with `row` at `slot` (a functional scatter); returns
    the updated value."""
    index = ops.expand_dims(ops.expand_dims(slot, 0), 0)
    updated = ops.scatter_update(buffer, index, ops.expand_dims(row, 0))
    buffer.assign(updated)
    return updated


def create_late(model, capacity, width, scope=contextlib.nullcontext):
    """The buffer of the columns a step knows only after its row (its
    gradients), one row per slot, the step's number last. -1 where never
    written (a norm is never negative)."""
    with scope():
        return keras.Variable(
            np.full((capacity, width), -1.0, "float32"),
            trainable=False,
            name="lossguard_late_stats",
            aggregation="only_first_replica",
        )


def write_late_functionally(late, counter, values, capacity):
    """Write `values` (ending with the step's number) at the slot of the
    row the step wrote last, with a functional scatter."""
    _write_slot(late, (ops.convert_to_tensor(counter) - 1) % capacity, values)


def gradient_norms(grads):
    """Each gradient's L2 norm, as one float32 vector (0 for None)."""
    zero = ops.convert_to_tensor(0.0)
    return ops.stack(
        [
            zero if g is None else ops.sqrt(ops.sum(ops.square(ops.cast(g, "float32"))))
            for g in grads
        ]
    )


def _unordered(written):
    return contextlib.nullcontext()


def sync(model):
    """Nothing to bring back: the variables are updated in place."""


def is_chief(model) -> bool:
    return True


def replicas_in_sync() -> int:
    return 1


def gather(row):
    """The global batch's rows (replicas, keys): one replica here."""
    return ops.expand_dims(row, 0)


def eager():
    return contextlib.nullcontext()


def strategy_scope(model):
    return contextlib.nullcontext()


def compile_function(fn):
    """No compiled path: callers run `fn` eagerly."""
    return None
