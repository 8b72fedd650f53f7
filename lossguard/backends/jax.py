"""JAX: the train step is a pure function of the state Keras carries.

A variable assigned inside it comes out only if it is carried state, so the
rows' buffer rides on the model's loss tracker (`state.StepStats`), and the
carried state is written back to the variables before a read (`sync`).
The batch hooks run in Keras' thread, behind the steps. A sparse label out
of range does not stop the step: Keras one-hot encodes it as zeros.
"""

from __future__ import annotations

from lossguard.backends.common import (  # noqa: F401 - the protocol
    branch_free_statistics,
    compile_function,
    create,
    create_late,
    eager,
    gather,
    gradient_norms,
    hooks_follow_each_step,
    reads_keras_logits,
    replicas_in_sync,
    strategy_scope,
    write_late_functionally,
    write_row_functionally,
)

name = "jax"
label = "JAX"
watched = True
carries_state = True
stops_on_bad_sparse_label = False


def rows_for(model, capacity, width, compute):
    from lossguard.backends.rows import BufferRows

    return BufferRows(model, capacity, width)


def write_row(buffer, counter, row, capacity):
    """Assign the whole buffer functionally (jit updates it in place, the
    state being donated)."""
    write_row_functionally(buffer, counter, row, capacity)


def write_late(late, counter, values, capacity):
    """The late columns at the last row's slot, functionally like the row."""
    write_late_functionally(late, counter, values, capacity)


def sync(model):
    """Write the state the step carries back to the variables (a no-op when
    Keras already did). From the loop's thread only."""
    sync_state = getattr(model, "jax_state_sync", None)
    if sync_state is not None:
        sync_state()


def is_chief(model) -> bool:
    import jax

    return jax.process_index() == 0
