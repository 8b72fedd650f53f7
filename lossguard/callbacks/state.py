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

import contextlib
import logging

import keras
import numpy as np
from keras import ops

logger = logging.getLogger("lossguard")

#: The backends whose train and test steps lossguard watches.
WATCHED = ("tensorflow", "jax", "torch")
#: Each row starts with the step's number (in a buffer, filled in when it is
#: read), its phase (0 train, 1 validation) and, where the batch hooks lag
#: the steps (JAX, PyTorch's kept steps), Keras' running loss after the step
#: (NaN elsewhere: the hooks report it).
HEADER = ("step", "phase", "running")
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

    def bind(self, *variables):
        object.__setattr__(self, "_bound", variables)

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
        self.buffer, self.counter = create(model, capacity, width)

    @property
    def variables(self):
        return (self.buffer, self.counter)

    def write(self, row):
        write_row(self.buffer, self.counter, row, self.capacity)

    def numpy(self, model):
        """The rows, each numbered by the step that wrote it.

        The step writes no number (two operations fewer on every step): the
        counter says it. After `count` steps, slot `j` holds the latest step
        `t <= count` with `(t - 1) % capacity == j`; 0 where none has yet.
        """
        sync(model)
        rows = np.array(ops.convert_to_numpy(self.buffer))
        count = int(ops.convert_to_numpy(self.counter))
        slots = np.arange(self.capacity)
        steps = count - (count - 1 - slots) % self.capacity
        rows[:, 0] = np.maximum(steps, 0)
        return rows


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
        return self._table.copy()

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


def flatten(structure, strict=False):
    """The tensors (and Nones) of nested lists, tuples and dicts, in order.

    Faster than `keras.tree.flatten` on PyTorch, where that walks torch's
    pytrees: this runs on every eager step. A leaf of another kind is kept
    as a leaf, or, with `strict`, makes the answer None.
    """
    leaves = []
    stack = [structure]
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple) and not hasattr(item, "_fields"):
            stack.extend(reversed(item))
        elif type(item) is dict:
            stack.extend(item[key] for key in reversed(sorted(item, key=str)))
        elif item is None or hasattr(item, "shape") or not strict:
            leaves.append(item)
        else:
            return None
    return leaves


def rebuild(structure, leaves):
    """`structure` with its leaves taken in order from the iterator `leaves`."""
    if isinstance(structure, list | tuple) and not hasattr(structure, "_fields"):
        return type(structure)(rebuild(item, leaves) for item in structure)
    if type(structure) is dict:
        rebuilt = {
            key: rebuild(structure[key], leaves) for key in sorted(structure, key=str)
        }
        return {key: rebuilt[key] for key in structure}
    return next(leaves)


def rows_for(model, capacity, width, compute):
    """Where the statistics of this model's steps go: a buffer written in
    the step, or, where the steps are eager (PyTorch without
    `jit_compile`), the steps' inputs, computed in blocks."""
    if keras.backend.backend() == "torch" and not getattr(model, "jit_compile", False):
        tracker = loss_tracker(model)
        variables = None if tracker is None else (tracker.total, tracker.count)
        return DeferredRows(capacity, width, compute, variables)
    return BufferRows(model, capacity, width)


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


def attach(model, variables):
    """Put the variables into the state Keras carries; the host metric, or
    None where the model has no loss tracker to carry them (or there are no
    variables to carry)."""
    if not variables:
        return None
    tracker = loss_tracker(model)
    if tracker is None:
        return None
    host = getattr(tracker, ATTRIBUTE, None)
    if not isinstance(host, StepStats):
        host = StepStats()
        setattr(tracker, ATTRIBUTE, host)  # a Metric tracks it as a sub-metric
    host.bind(*variables)
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
    value, count = getattr(buffer, "value", None), getattr(counter, "value", None)
    if _in_place(value) and _in_place(count):  # TensorFlow, one replica
        import tensorflow as tf

        written = value.scatter_update(tf.IndexedSlices(row, counter % capacity))
        with _after(written):
            count.assign_add(1)  # one op (Keras' assign_add reads, adds, assigns)
        return
    index = ops.expand_dims(ops.expand_dims(counter % capacity, 0), 0)
    updated = ops.scatter_update(buffer, index, ops.expand_dims(row, 0))
    buffer.assign(updated)
    with _after(updated):
        counter.assign_add(1)


def _after(written):
    """Count a step only once its row is written: the counter numbers the
    rows (`BufferRows.numpy`), and a step that fails before its row (a
    loss op refusing a label, say) must not count. TensorFlow orders the
    updates of different variables only when told; JAX's step updates all
    or nothing, and PyTorch runs in order."""
    if keras.backend.backend() != "tensorflow":
        return contextlib.nullcontext()
    import tensorflow as tf

    return tf.control_dependencies([written])


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
