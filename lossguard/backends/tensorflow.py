"""TensorFlow: steps traced into graphs, variables updated in place.

A row is written with one in-place scatter and the step counted after it
(a control dependency: a step whose loss op fails is never counted). Under
`tf.distribute` the row is gathered from every replica and the variables
are created in the strategy's scope. The batch hooks run on the loop's
thread, right after their step. Keras' losses read the logits behind its
own softmax and sigmoid tensors.
"""

from __future__ import annotations

import contextlib

from lossguard.backends import common

name = "tensorflow"
label = "TensorFlow"
watched = True
carries_state = False
hooks_follow_each_step = True
reads_keras_logits = True
stops_on_bad_sparse_label = True
branch_free_statistics = False


def rows_for(model, capacity, width, compute):
    from lossguard.backends.rows import BufferRows

    return BufferRows(model, capacity, width)


def create(model, capacity, width):
    """The buffer and counter, in the model's strategy's scope."""
    return common.create(model, capacity, width, lambda: strategy_scope(model))


def write_row(buffer, counter, row, capacity):
    """One in-place scatter on one replica (a functional scatter copies the
    whole buffer every step); functionally under a strategy."""
    import tensorflow as tf

    value, count = getattr(buffer, "value", None), getattr(counter, "value", None)
    if _in_place(value) and _in_place(count):
        written = value.scatter_update(tf.IndexedSlices(row, counter % capacity))
        with after(written):
            count.assign_add(1)  # one op (Keras' assign_add reads, adds, assigns)
        return
    common.write_row_functionally(buffer, counter, row, capacity, after)


def create_late(model, capacity, width):
    """The late columns' buffer, in the model's strategy's scope."""
    return common.create_late(model, capacity, width, lambda: strategy_scope(model))


def write_late(late, counter, values, capacity):
    """The late columns at the last row's slot: one in-place scatter (a
    functional one under a strategy)."""
    import tensorflow as tf

    value, count = getattr(late, "value", None), getattr(counter, "value", None)
    if not (_in_place(value) and _in_place(count)):
        common.write_late_functionally(late, counter, values, capacity)
        return
    slot = tf.reshape((count - 1) % capacity, [1])
    value.scatter_update(tf.IndexedSlices(tf.expand_dims(values, 0), slot))


def gradient_norms(grads):
    """Each gradient's L2 norm, one op each; an embedding's `IndexedSlices`
    counts each looked-up row (a token repeated in the batch counts once
    per occurrence, not once with its summed gradient)."""
    import tensorflow as tf

    norms = []
    for g in grads:
        if g is None:
            norms.append(tf.constant(0.0))
            continue
        if isinstance(g, tf.IndexedSlices):
            g = g.values
        norms.append(tf.math.reduce_euclidean_norm(tf.cast(g, "float32")))
    return tf.stack(norms)


def after(written):
    """Count a step only once its row is written: TensorFlow orders the
    updates of different variables only when told."""
    import tensorflow as tf

    return tf.control_dependencies([written])


def _in_place(variable) -> bool:
    """A plain tf.Variable outside tf.distribute: it can update one row in
    place."""
    import tensorflow as tf

    return (
        variable is not None
        and isinstance(variable, tf.Variable)
        and not tf.distribute.has_strategy()
    )


def sync(model):
    """Nothing to bring back: the variables are updated in place."""


def is_chief(model) -> bool:
    """False only on a worker that is not the chief of a multi-worker run."""
    strategy = getattr(model, "distribute_strategy", None)
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return True
    cluster = resolver.cluster_spec().as_dict()
    if not cluster or resolver.task_type in (None, "chief"):
        return True
    return (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and ("chief" not in cluster)
    )


def replicas_in_sync() -> int:
    """Replicas of the `tf.distribute` strategy the step runs under (else 1)."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return int(context.num_replicas_in_sync) if context is not None else 1


def gather(row):
    """Every replica's row, stacked (replicas, keys)."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return context.all_gather(tf.expand_dims(row, 0), axis=0)


def eager():
    """Run eagerly even while a step is being traced (probing calls a loss
    on concrete tensors)."""
    import tensorflow as tf

    return tf.init_scope()


def strategy_scope(model):
    strategy = getattr(model, "distribute_strategy", None)
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def compile_function(fn):
    """`fn` as one `tf.function` (eager LSTMs run ~5x slower than traced)."""
    import tensorflow as tf

    return tf.function(fn, reduce_retracing=True)
