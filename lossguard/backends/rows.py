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
        self.model = model
        self.late = None  # the late columns' buffer (`add_late`)
        self.late_start, self.finish = 0, None
        self.capacity = capacity
        #: The most steps between two reads (a read must come before the
        #: buffer wraps around, with room for the steps a read may lag).
        self.read_every_max = max(1, capacity // 2)
        self.buffer, self.counter = current().create(model, capacity, width)

    @property
    def variables(self):
        if self.late is None:
            return (self.buffer, self.counter)
        return (self.buffer, self.counter, self.late)

    def add_late(self, width, start, finish):
        """A second buffer, `width` values a slot, for what a step knows
        after its row: read back as the row's columns from `start`, made
        by `finish(raw)` from a block's raw values (NaN where a step wrote
        none). Before the step functions are traced."""
        self.late = current().create_late(self.model, self.capacity, width + 1)
        self.late_start, self.finish = start, finish

    def write(self, row):
        current().write_row(self.buffer, self.counter, row, self.capacity)

    def write_late(self, values):
        """In the step, after `write`: the late values, stamped with the
        step's number (the counter, counted by `write`)."""
        stamp = ops.cast(
            ops.reshape(ops.convert_to_tensor(self.counter), (1,)), "float32"
        )
        values = ops.concatenate([ops.cast(values, "float32"), stamp])
        current().write_late(self.late, self.counter, values, self.capacity)

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
        if self.late is not None:
            late = np.array(ops.convert_to_numpy(self.late))
            # A slot's late values belong to its row only if the same step
            # wrote both (a step may write a row and no late values).
            own = late[:, -1] == rows[:, 0]
            columns = self.finish(late[:, :-1])
            columns[~own] = np.nan
            rows[:, self.late_start : self.late_start + columns.shape[1]] = columns
        return rows
