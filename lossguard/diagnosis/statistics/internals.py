"""What happens inside the model on a batch: ReLU units that never fire, and
the gradient each layer gets.

Both come from the step itself, never from a second pass:

- a ReLU-family layer's output, read where the layer returns it during the
  forward pass (`fired_units`): the share of its units that output exactly
  0 at every position of the batch (every sample, every time step or
  pixel), and how many samples that is;
- the gradients the optimizer is given (`gradient_norms`): the L2 norm of
  each group of variables (one group per layer, contiguous layers merged
  past `MAX_GROUPS`), and the learning rate of the step.

Each statistic is a prefix keyed by the layer or group it describes
(`dead:dense_1`, `samples:dense_1`, `grad:dense_1`).
"""

from __future__ import annotations

import numpy as np
from keras import ops

from .common import ReplicaRule, Stat

#: A unit's share of dead units (one ReLU-family layer's output).
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


def gradient_norms(squared, groups, learning_rate):
    """The gradient columns: each group's L2 norm, then the learning rate.

    `squared`: each variable's sum of squared gradients (a vector);
    `groups`: the (variables, groups) 0/1 matrix saying which group each
    variable is in."""
    sums = ops.matmul(ops.expand_dims(ops.cast(squared, "float32"), 0), groups)[0]
    rate = ops.reshape(ops.cast(learning_rate, "float32"), (1,))
    return ops.concatenate([ops.sqrt(sums), rate])


def group_matrix(group_of, n_groups):
    """The (variables, groups) 0/1 matrix of `group_of` (a group per variable)."""
    matrix = np.zeros((len(group_of), n_groups), "float32")
    matrix[np.arange(len(group_of)), group_of] = 1.0
    return matrix
