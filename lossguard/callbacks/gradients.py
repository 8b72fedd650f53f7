"""The gradients of each step, read where the optimizer is given them.

Every Keras trainer hands the step's gradients to its optimizer (TensorFlow
through `apply_gradients`, JAX through `stateless_apply`, PyTorch directly:
all of them call `optimizer.apply`) and then calls `model.compute_metrics`.
`GradientWatch` wraps both on the instances, for the run:

- in `apply`, before the update, each trainable variable's gradient norm
  and the step's learning rate are taken (no second backward pass: the
  gradients are the step's own);
- in `compute_metrics`, after the update and inside the step (where JAX
  carries the rows' variables), they are written at the slot of the row
  `compute_loss` wrote for the same step, in a second small buffer; the
  read groups them by layer (`finish`) into that row's gradient columns.

Where the gradients cannot be read (a `LossScaleOptimizer`, whose JAX step
does not call `apply` outside a conditional; a `tf.distribute` step; a
custom `train_step` that calls neither), the columns stay NaN and `reason`
says why, once.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
from keras import ops

from lossguard import backends
from lossguard.diagnosis.internals import (
    gradient_groups,
    layer_groups,
    owners,
    unbuilt,
)
from lossguard.diagnosis.statistics.internals import GRADIENT_NORM, LEARNING_RATE

logger = logging.getLogger("lossguard")


def gradient_keys(model) -> list:
    """The row's gradient columns for `model` (empty where there are none):
    a model not built yet gets one per layer (its variables, made in the
    first step, are placed then)."""
    if getattr(model, "trainable_variables", None):
        names, _ = gradient_groups(model)
    elif unbuilt(model) and getattr(model, "layers", None):
        names, _ = layer_groups(model)
    else:
        return []
    return [GRADIENT_NORM.name + name for name in names] + [LEARNING_RATE.name]


class GradientWatch:
    """Wraps a model's optimizer `apply` and `compute_metrics` for a run.

    In `apply` it takes each variable's gradient norm and the learning rate
    (one vector, in the model's variable order); `write(values)` writes them
    at the step's row. Where the rows are written in the step, that happens
    in `compute_metrics` (after the update, inside the step: on JAX, where
    the rows' variables are carried); where they are kept for later
    (PyTorch's eager steps), at once. `finish` turns a block of such
    vectors into the layers' columns, with NumPy, when the rows are read.
    """

    def __init__(self, model):
        self.reason = None  # why the gradients cannot be read, or None
        self.error = None  # the first failure while reading them
        self.pending = None
        self._restore = []
        self._model = model
        #: A model built inside its first step (TensorFlow): one group per
        #: layer, its variables placed at the first `apply` and grouped in
        #: the step (`_place`).
        self.lazy = not model.trainable_variables
        self.layer_group = {}
        self.members = []  # each group's variables (positions in `variables`)
        if self.lazy:
            self.groups, self.layer_group = layer_groups(model)
            self.variables = None
        else:
            self.groups, group_of = gradient_groups(model)
            self.variables = [id(v) for v in model.trainable_variables]
            self._group(group_of)
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            self.reason = "the model has no optimizer"
        elif isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            self.reason = (
                "a LossScaleOptimizer (mixed precision) applies its gradients "
                "inside a conditional"
            )
        elif _replicas(model) > 1:
            self.reason = "each replica of a distributed step holds its own gradients"

    @property
    def width(self) -> int:
        """Raw values a step writes: a norm per variable (per group where
        the variables came later), the learning rate."""
        return (len(self.groups) if self.lazy else len(self.variables)) + 1

    def _group(self, group_of):
        """`members` from each variable's group (None: in none)."""
        group_of = np.asarray([-1 if g is None else g for g in group_of])
        self.members = [np.flatnonzero(group_of == g) for g in range(len(self.groups))]

    def _place(self, trainable_variables):
        """The variables of a model built in its first step, each in the
        group of the layer that owns it."""
        model = self._model
        variables = list(trainable_variables or model.trainable_variables)
        owner = owners(model)
        self.variables = [id(v) for v in variables]
        self._group([self.layer_group.get(owner.get(id(v))) for v in variables])

    def _matrix(self):
        """The (variables, groups) 0/1 membership matrix."""
        matrix = np.zeros((len(self.variables), len(self.groups)), "float32")
        for group, members in enumerate(self.members):
            matrix[members, group] = 1.0
        return ops.convert_to_tensor(matrix)

    # ------------------------------------------------------------ install
    def install(self, model, write, at_once=False):
        """Wrap `model.optimizer.apply` (and, unless `at_once`,
        `model.compute_metrics`, where the values are written)."""
        if self.reason is not None or self._restore:
            return
        optimizer = model.optimizer
        self._wrap(optimizer, "apply", self._watching_apply(optimizer, write, at_once))
        if not at_once:
            self._wrap(model, "compute_metrics", self._writing(write))

    def uninstall(self):
        for owner, name, had_own, previous in self._restore:
            if had_own:
                setattr(owner, name, previous)
            else:
                vars(owner).pop(name, None)
        self._restore = []
        self.pending = None

    def _wrap(self, owner, name, make):
        had_own = name in vars(owner)
        previous = vars(owner).get(name)
        setattr(owner, name, make(getattr(owner, name)))
        self._restore.append((owner, name, had_own, previous))

    def forget(self):
        """A new step began (its `compute_loss` ran): nothing is pending."""
        self.pending = None

    # ------------------------------------------------------- in the step
    def _watching_apply(self, optimizer, write, at_once):
        def make(apply):
            def watched_apply(grads, trainable_variables=None):
                try:
                    values = self._values(optimizer, grads, trainable_variables)
                    if values is not None and at_once:
                        write(values)
                    elif values is not None:
                        self.pending = values
                except Exception as error:  # noqa: BLE001 - never the update
                    self._failed(error)
                return apply(grads, trainable_variables)

            return watched_apply

        return make

    def _writing(self, write):
        def make(compute_metrics):
            def writing_compute_metrics(*args, **kwargs):
                if self.pending is not None:
                    values, self.pending = self.pending, None
                    try:
                        write(values)
                    except Exception as error:  # noqa: BLE001 - never the step
                        self._failed(error)
                return compute_metrics(*args, **kwargs)

            return writing_compute_metrics

        return make

    def _values(self, optimizer, grads, trainable_variables):
        """Each variable's gradient norm then the learning rate, in the
        model's variable order; None where the variables do not match it."""
        grads = list(grads)
        if self.variables is None:
            self._place(trainable_variables)
        if trainable_variables is not None:
            ids = [id(v) for v in trainable_variables]
            if ids != self.variables:
                place = {i: n for n, i in enumerate(ids)}
                if set(place) != set(self.variables):
                    return None
                grads = [grads[place[i]] for i in self.variables]
        if len(grads) != len(self.variables):
            return None
        norms = ops.cast(backends.current().gradient_norms(grads), "float32")
        if self.lazy:  # grouped here: the buffer was sized before the variables
            squared = ops.expand_dims(ops.square(norms), 0)
            norms = ops.sqrt(ops.matmul(squared, self._matrix())[0])
        rate = ops.reshape(_learning_rate(optimizer), (1,))
        return ops.concatenate([norms, rate])

    def finish(self, raw):
        """A block of steps' raw values (steps, variables + 1) as the
        columns: each group's norm, then the learning rate (NaN where a step
        wrote none: -1, the buffer's start)."""
        raw = np.asarray(raw, "float64")
        norms, rates = raw[:, :-1], raw[:, -1:]
        norms = np.where(norms < 0, np.nan, norms)
        rates = np.where(rates < 0, np.nan, rates)
        if self.lazy:  # grouped in the step; a layer without variables: NaN
            empty = [len(members) == 0 for members in self.members]
            if empty:
                norms[:, np.asarray(empty)] = np.nan
            return np.column_stack([norms, rates]).astype("float32")
        groups = [(norms[:, members] ** 2).sum(axis=1) for members in self.members]
        return np.column_stack([np.sqrt(np.column_stack(groups)), rates]).astype(
            "float32"
        )

    def _failed(self, error):
        if self.error is None:
            self.error = error
            logger.debug("lossguard could not read the gradients", exc_info=True)


def _replicas(model) -> int:
    """Replicas of the model's `tf.distribute` strategy (1 elsewhere): read
    from the strategy, since the callback starts outside its replica context."""
    strategy = getattr(model, "distribute_strategy", None)
    try:
        return int(getattr(strategy, "num_replicas_in_sync", 1) or 1)
    except (TypeError, ValueError):
        return 1


def _learning_rate(optimizer):
    try:
        return ops.cast(ops.convert_to_tensor(optimizer.learning_rate), "float32")
    except Exception:  # noqa: BLE001 - a schedule lossguard cannot evaluate
        return ops.convert_to_tensor(float("nan"))
