"""What happens inside the model on a batch: ReLU units that never fire, and
the gradient each layer gets.

Both come from the step itself, never from a second pass:

- a ReLU-family layer's output, read where the layer returns it during the
  forward pass (`fired_units`): the share of its units that output exactly
  0 at every position of the batch (every sample, every time step or
  pixel), and how many samples that is;
- the gradients the optimizer is given (`lossguard.callbacks.gradients`):
  the L2 norm of each group of variables (one group per layer, contiguous
  layers merged past `MAX_GROUPS`), and the learning rate of the step.

Each statistic is a prefix keyed by the layer or group it describes
(`dead:dense_1`, `samples:dense_1`, `grad:dense_1`).
"""

from __future__ import annotations

from keras import ops

from .common import ReplicaRule, Stat

#: The share of a ReLU-family layer's units that are 0 on the whole batch
#: (on several replicas, the least: an upper bound of the global share).
DEAD_SHARE = Stat(
    "dead:", ReplicaRule.MIN, doc="share of a ReLU layer's units at 0 on every position"
)
#: The samples each unit was read on (each at every time step or pixel).
SAMPLES = Stat("samples:", ReplicaRule.SUM, dtype="int64", doc="samples read")
#: The L2 norm of one group of variables' gradients.
GRADIENT_NORM = Stat("grad:", ReplicaRule.FIRST, doc="a layer's gradient L2 norm")
#: The learning rate the optimizer applied the step's gradients with.
LEARNING_RATE = Stat("learning_rate", ReplicaRule.FIRST, doc="the step's learning rate")

PREFIXED = (DEAD_SHARE, SAMPLES, GRADIENT_NORM)
#: Gradient groups at most: a model with more layers has contiguous layers
#: merged, so a row stays a few hundred values wide whatever the depth.
MAX_GROUPS = 32


def fired_units(output, units_axis=-1):
    """(True for each unit not 0 at some position of some sample, the
    samples read) of one ReLU-family layer's output: two operations where
    eager (the share is taken when the row is made, `dead_share`)."""
    output = ops.convert_to_tensor(output)
    rank = len(output.shape)
    axis = units_axis % rank if rank else 0
    others = tuple(i for i in range(rank) if i != axis)
    # Not 0 rather than above 0: the same for a ReLU's finite outputs, and
    # a NaN (weights already diverged) is not a unit stuck at 0.
    fired = ops.not_equal(output, 0)
    alive = ops.any(fired, axis=others) if others else fired
    samples = output.shape[0] if rank > 1 and axis != 0 else 1
    if not isinstance(samples, int):
        samples = ops.shape(output)[0]
    return alive, ops.convert_to_tensor(samples, "float32")


def dead_share(alive):
    """The share of units that never fired (`alive` from `fired_units`)."""
    return 1.0 - ops.mean(ops.cast(alive, "float32"))
