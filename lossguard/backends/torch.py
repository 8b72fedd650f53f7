"""PyTorch: eager steps, variables updated in place.

Eager, every op pays Python's dispatch, so a row computed in the step would
cost about 1 ms on every step, however short: the steps' inputs are kept
instead and their rows computed in blocks, vectorised over the steps
(`DeferredRows`), unless the step is compiled (`jit_compile`), where a
buffer written in the step serves as elsewhere. The batch hooks run in
Keras' thread. A sparse label out of range stops the step ("Target 10 is
out of bounds"). The statistics take both sides of a condition (a branch
costs a device sync, and `torch.func.vmap` cannot batch one).
"""

from __future__ import annotations

import logging

import numpy as np
from keras import ops

from lossguard.backends.common import (  # noqa: F401 - the protocol
    compile_function,
    create,
    create_late,
    eager,
    gather,
    replicas_in_sync,
    strategy_scope,
    sync,
)
from lossguard.backends.structure import flatten, rebuild

logger = logging.getLogger("lossguard")

name = "torch"
label = "PyTorch"
watched = True
carries_state = False
hooks_follow_each_step = False
reads_keras_logits = False
stops_on_bad_sparse_label = True
branch_free_statistics = True


def rows_for(model, capacity, width, compute):
    """Kept steps computed in blocks, or (a compiled step) a buffer."""
    if getattr(model, "jit_compile", False):
        from lossguard.backends.rows import BufferRows

        return BufferRows(model, capacity, width)
    tracker = _loss_tracker(model)
    variables = None if tracker is None else (tracker.total, tracker.count)
    return DeferredRows(capacity, width, compute, variables)


def _loss_tracker(model):
    import keras

    for metric in getattr(model, "metrics", ()):
        if isinstance(metric, keras.metrics.Mean) and metric.name == "loss":
            return metric
    return None


def write_row(buffer, counter, row, capacity):
    """Write the row in place, on the device, and count the step."""
    import torch

    with torch.no_grad():
        _copy_slot(buffer, counter.value % capacity, row)
        counter.value.add_(1)


def write_late(late, counter, values, capacity):
    """The late columns at the last row's slot, in place, on the device."""
    import torch

    with torch.no_grad():
        _copy_slot(late, (counter.value - 1) % capacity, values.float())


def _copy_slot(buffer, slot, row):
    """Copy `row` into `buffer` at `slot`, in place (under no_grad)."""
    buffer.value.index_copy_(0, slot.reshape(1).long(), row.detach().reshape(1, -1))


def gradient_norms(grads):
    """Each gradient's L2 norm in two operations (a fused norm over the
    list, one stack): eager, every op pays Python's dispatch."""
    import torch

    present = [g for g in grads if g is not None]
    if not present:
        return torch.zeros(len(grads))
    norms = torch.stack(torch._foreach_norm([g.detach() for g in present]))
    if len(present) < len(grads):
        full = torch.zeros(len(grads), dtype=norms.dtype, device=norms.device)
        mask = torch.tensor([g is not None for g in grads], device=norms.device)
        norms = full.masked_scatter(mask, norms)
    return norms.float()


def is_chief(model) -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or (dist.get_rank() == 0)


class _Block:
    """Kept steps that share their shapes: each input stacked, as it comes,
    into preallocated storage (no allocation and no free per step)."""

    __slots__ = ("skeleton", "phase", "stacks", "slots", "numbers", "room")

    def __init__(self, skeleton, phase, leaves, room):
        import torch

        self.skeleton, self.phase, self.numbers, self.room = skeleton, phase, [], room
        self.stacks = [
            None
            if t is None
            else torch.empty((room, *t.shape), dtype=t.dtype, device=t.device)
            for t in leaves
        ]
        # Each step's place in every stack, made once (indexing a tensor
        # is an op, on every step).
        self.slots = [
            [None if stack is None else stack[at] for stack in self.stacks]
            for at in range(room)
        ]

    def add(self, number, leaves):
        for slot, t in zip(self.slots[len(self.numbers)], leaves, strict=True):
            if slot is not None:
                slot.copy_(t)
        self.numbers.append(number)


class DeferredRows:
    """PyTorch's eager steps: each step keeps the inputs of its statistics,
    and the rows are computed in blocks, when the callback reads.

    Eager, every op pays Python's dispatch, so the ~45 operations of a row
    would cost about 1 ms on every step, however short. Kept instead (each
    input copied into storage stacked by shape: a generator may reuse its
    arrays, and the model's outputs carry autograd's graph), the steps that
    share their shapes have their rows computed at once with
    `torch.func.vmap`: the same operations, vectorised over the steps, one
    dispatch each per block. A step whose inputs exceed `STEP_BYTES`, or
    that holds something other than tensors in plain lists, tuples and
    dicts, has its row computed in the step (as it always was); the stacks
    hold at most `MAX_BYTES`, in at most `MAX_BLOCKS` shapes. Where
    vectorising fails (an operation vmap cannot batch), the rows are
    computed one by one; where that fails too, `error` says why and the rows
    are missing (the callback goes blind, once, saying so).

    Reads must come from the loop's thread (the callback reads between
    steps): PyTorch's ops in Keras' hook thread would run beside the step
    and compete with it for the same cores.

    `compute(data, made)` returns one step's row after its number and phase
    (written with `keras.ops`), from `data = (x, y, sample_weight)` and
    what the step made of it, followed by the loss tracker's total and
    count before the step (None without `loss_variables`).
    """

    deferred = True
    variables = ()
    #: A step above this many bytes of inputs is computed in the step.
    STEP_BYTES = 4 << 20
    #: The stacks of all shapes together hold at most this many bytes.
    MAX_BYTES = 32 << 20
    MAX_BLOCKS = 8

    def __init__(self, capacity, width, compute, loss_variables=None):
        self.capacity = capacity
        self.error = None
        self._compute = compute
        # Blocks hold up to `capacity` steps; the computed rows wait in a
        # table twice that size, so a read every `capacity` steps (and the
        # steps a read may lag) never loses one.
        self.read_every_max = capacity
        self._held = 2 * capacity
        # Keras' loss tracker (total, count), updated in place after each
        # step: their values before it give the running loss after it.
        self._loss_values = (None, None)
        if loss_variables is not None:
            self._loss_values = tuple(v.value for v in loss_variables)
        self._table = np.zeros((self._held, width), "float32")
        self._blocks = {}
        self._count = 0
        self._vectorise = True
        self._late = []  # (step number, raw late values)
        self.late_start, self.finish = 0, None

    def add_late(self, width, start, finish):
        """Where the late columns go, and how a block's raw values become
        them (see `BufferRows.add_late`)."""
        self.late_start, self.finish = start, finish

    def write_late(self, values):
        """In the step, after `keep`: this step's raw late values (a copy:
        the learning rate may be updated in place)."""
        import torch

        with torch.no_grad():
            self._late.append((self._count, values.detach().clone()))

    def keep(self, data, made, training):
        """In the step: keep this step's inputs (or compute its row)."""
        import torch

        self._count += 1
        phase = 0.0 if training else 1.0
        made = (*made, *self._loss_values)
        leaves = flatten((data, made), strict=True)
        key = None
        if leaves is not None:
            key = (phase, *(None if t is None else (t.shape, t.dtype) for t in leaves))
        block = self._blocks.get(key)
        if block is None:
            block = self._new_block(key, (data, made), phase, leaves)
            if block is None:  # computed in the step
                rows = self._one_by_one([(data, made)])
                self._write([self._count], phase, rows)
                return
        with torch.no_grad():
            block.add(self._count, leaves)
        if len(block.numbers) >= block.room:
            self._flush(block)

    def _new_block(self, key, structure, phase, leaves):
        if leaves is None or not all(t is None or _is_torch(t) for t in leaves):
            return None
        size = sum(0 if t is None else t.numel() * t.element_size() for t in leaves)
        if size > self.STEP_BYTES:
            return None
        if len(self._blocks) >= self.MAX_BLOCKS:  # new shapes: start over
            self._flush_all()
            self._blocks.clear()
        room = min(self.capacity, self.MAX_BYTES // self.MAX_BLOCKS // max(size, 1))
        skeleton = rebuild(structure, iter([_LEAF] * len(leaves)))
        block = _Block(skeleton, phase, leaves, max(room, 1))
        self._blocks[key] = block
        return block

    def numpy(self, model):
        """The rows so far (the kept steps computed now), like a buffer."""
        self._flush_all()
        self._write_late()
        return self._table.copy()

    def _write_late(self):
        """The late columns of the steps kept since the last read (after
        their rows: a row computed later would overwrite them)."""
        import torch

        late, self._late = self._late, []
        if not late or self.finish is None:
            return
        numbers = np.asarray([number for number, _ in late])
        raw = torch.stack([values for _, values in late]).cpu().numpy()
        columns = self.finish(raw)
        slots = (numbers - 1) % self._held
        self._table[slots, self.late_start : self.late_start + columns.shape[1]] = (
            columns
        )

    def _flush_all(self):
        for block in self._blocks.values():
            if block.numbers:
                self._flush(block)

    def _flush(self, block):
        numbers, block.numbers = block.numbers, []
        stacked = [None if s is None else s[: len(numbers)] for s in block.stacks]
        rows = None
        if len(numbers) > 1:
            rows = self._vectorised(block.skeleton, stacked)
        if rows is None:
            rows = self._one_by_one(
                rebuild(
                    block.skeleton, iter([None if s is None else s[i] for s in stacked])
                )
                for i in range(len(numbers))
            )
        self._write(numbers, block.phase, rows)

    def _vectorised(self, skeleton, stacked):
        """The rows of steps with equal shapes, computed at once (or None)."""
        if not self._vectorise:
            return None
        import torch

        def row(*leaves):
            return self._compute(*rebuild(skeleton, iter(leaves)))

        try:
            in_dims = tuple(None if leaf is None else 0 for leaf in stacked)
            rows = torch.func.vmap(row, in_dims=in_dims)(*stacked)
            return ops.convert_to_numpy(rows)
        except Exception as error:  # noqa: BLE001 - computed one by one instead
            self._vectorise = False
            logger.info(
                "lossguard computes its statistics step by step on this model: "
                "torch.func.vmap cannot vectorise them (%s: %s).",
                type(error).__name__,
                error,
            )
            return None

    def _one_by_one(self, steps):
        """The rows of `(data, made)` steps, or None (`error` says why)."""
        try:
            rows = [ops.convert_to_numpy(self._compute(*parts)) for parts in steps]
            return np.stack(rows)
        except Exception as error:  # noqa: BLE001 - the rows are missing
            self.error = error
            logger.debug("lossguard could not compute its statistics", exc_info=True)
            return None

    def _write(self, numbers, phase, rows):
        if rows is None:
            return
        slots = (np.asarray(numbers) - 1) % self._held
        self._table[slots, 0] = numbers
        self._table[slots, 1] = phase  # then the running loss: rows[:, 0]
        self._table[slots, 2:] = rows


#: A leaf's place in a block's skeleton (its structure without tensors).
_LEAF = object()


def _is_torch(value):
    import torch

    return isinstance(value, torch.Tensor)
