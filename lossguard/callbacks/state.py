"""Where the callback's per-step statistics live, on every Keras backend.

One design: the statistics of each step are written, inside the step, to a
row of a buffer variable, and the callback reads the buffer in blocks. The
buffer and its step counter are the variables of a `StepStats` metric that
rides on the model's loss tracker (the "loss" `Mean` in `model.metrics`)
while the callback watches, so they are part of `model.metrics_variables`:
the state every Keras trainer carries through its step.

That is what JAX needs: its train step is a pure function of the state Keras
carries (trainable, non-trainable, optimizer and metric variables), so a
variable assigned inside it comes out only if it is one of those. TensorFlow
and PyTorch update variables in place and need nothing more. The seam per
backend is small and lives here:

- `sync(model)`: JAX keeps the carried state outside the variables during
  `fit`/`evaluate`; `model.jax_state_sync()` writes it back before a read
  (from the main thread only: Keras may run batch-end hooks in a thread).
- `write_row(...)`: TensorFlow (one replica) and PyTorch (eager) update the
  row in place; JAX assigns the whole buffer functionally (its jit updates
  it in place, the state being donated).
- `is_chief(model)`: which process writes logs under a multi-process run.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

#: The backends whose train and test steps lossguard watches.
WATCHED = ("tensorflow", "jax", "torch")
#: The attribute of the loss tracker that holds the statistics while watched.
ATTRIBUTE = "lossguard_step_stats"


class StepStats(keras.metrics.Metric):
    """The buffer and step counter, as metric state Keras carries.

    It reports nothing (`result()` is an empty dict, so it adds no key to
    the logs), survives `reset_metrics()` (the callback reads every row
    before the epoch's reset), and has variables only while a callback has
    bound them, so a model that is no longer watched carries nothing more.
    """

    def __init__(self):
        super().__init__(name="lossguard_step_stats")
        object.__setattr__(self, "_bound", ())

    def bind(self, buffer, counter):
        object.__setattr__(self, "_bound", (buffer, counter))

    def unbind(self):
        object.__setattr__(self, "_bound", ())

    @property
    def variables(self):
        return list(self._bound)

    def update_state(self, *args, **kwargs):
        """Written by the callback's `compute_loss`, not by Keras."""

    def reset_state(self):
        """The rows outlive Keras' metric resets (epoch and evaluation)."""

    def result(self):
        return {}


def create(model, capacity, width):
    """The buffer and the step counter, on the model's devices.

    The buffer starts at zeros: a row whose step column is 0 was never
    written (steps count from 1). Not NaN: under a multi-process JAX
    distribution, Keras checks that every process places the same initial
    value, and NaN never equals itself.
    """
    with _strategy_scope(model):
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


def attach(model, buffer, counter):
    """Put the variables into the state Keras carries; the host metric, or
    None where the model has no loss tracker to carry them."""
    tracker = loss_tracker(model)
    if tracker is None:
        return None
    host = getattr(tracker, ATTRIBUTE, None)
    if not isinstance(host, StepStats):
        host = StepStats()
        setattr(tracker, ATTRIBUTE, host)  # a Metric tracks it as a sub-metric
    host.bind(buffer, counter)
    return host


def loss_tracker(model):
    """The compiled model's "loss" metric (Keras' running-mean loss)."""
    for metric in getattr(model, "metrics", ()):
        if isinstance(metric, keras.metrics.Mean) and metric.name == "loss":
            return metric
    return None


def needs_carried_state() -> bool:
    """True where a variable assigned in the step must be carried state."""
    return keras.backend.backend() == "jax"


def sync(model):
    """Write the state a JAX step carries back to the variables (a no-op on
    the other backends, and on JAX when Keras already did)."""
    if keras.backend.backend() == "jax":
        sync_state = getattr(model, "jax_state_sync", None)
        if sync_state is not None:
            sync_state()


def write_row(buffer, counter, row, capacity):
    """Write `row` at the counter's slot and count the step (in the step)."""
    backend = keras.backend.backend()
    if backend == "torch":  # eager: write the row in place, on the device
        import torch

        with torch.no_grad():
            slot = (counter.value % capacity).reshape(1).long()
            buffer.value.index_copy_(0, slot, row.detach().reshape(1, -1))
            counter.value.add_(1)
        return
    index = ops.expand_dims(ops.expand_dims(counter % capacity, 0), 0)
    value = getattr(buffer, "value", None)
    if _in_place(value):  # TensorFlow, one replica: write the row only
        value.scatter_nd_update(index, ops.expand_dims(row, 0))
    else:
        buffer.assign(ops.scatter_update(buffer, index, ops.expand_dims(row, 0)))
    counter.assign_add(1)


def is_chief(model) -> bool:
    """False only on a process that is not the first of a multi-process run."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.process_index() == 0
    if backend == "torch":
        import torch.distributed as dist

        return not (dist.is_available() and dist.is_initialized()) or (
            dist.get_rank() == 0
        )
    if backend != "tensorflow":
        return True
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


def _in_place(variable) -> bool:
    """A plain tf.Variable outside tf.distribute: it can update one row in
    place (a functional scatter copies the whole buffer every step)."""
    if keras.backend.backend() != "tensorflow" or variable is None:
        return False
    import tensorflow as tf

    return isinstance(variable, tf.Variable) and not tf.distribute.has_strategy()


def _strategy_scope(model):
    import contextlib

    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None or keras.backend.backend() != "tensorflow":
        return contextlib.nullcontext()
    return strategy.scope()
