"""Rows written inside the step, to a buffer variable read in blocks."""

from __future__ import annotations

import numpy as np
from keras import ops

from lossguard.backends import current


class BufferRows:
    """The rows in a buffer variable, written inside the step (TensorFlow,
    JAX, and PyTorch when the step is compiled)."""

    deferred = False
    error = None

    def __init__(self, model, capacity, width):
        self.capacity = capacity
        #: The most steps between two reads (a read must come before the
        #: buffer wraps around, with room for the steps a read may lag).
        self.read_every_max = max(1, capacity // 2)
        self.buffer, self.counter = current().create(model, capacity, width)

    @property
    def variables(self):
        return (self.buffer, self.counter)

    def write(self, row):
        current().write_row(self.buffer, self.counter, row, self.capacity)

    def write_late(self, values, start):
        """In the step, after `write`: the row's columns from `start`."""
        current().write_late(self.buffer, self.counter, values, start, self.capacity)

    def numpy(self, model):
        """The rows, each numbered by the step that wrote it.

        The step writes no number (two operations fewer on every step): the
        counter says it. After `count` steps, slot `j` holds the latest step
        `t <= count` with `(t - 1) % capacity == j`; 0 where none has yet.
        """
        current().sync(model)
        rows = np.array(ops.convert_to_numpy(self.buffer))
        count = int(ops.convert_to_numpy(self.counter))
        slots = np.arange(self.capacity)
        steps = count - (count - 1 - slots) % self.capacity
        rows[:, 0] = np.maximum(steps, 0)
        return rows
