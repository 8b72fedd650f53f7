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
and PyTorch update variables in place and need nothing more. What differs
between the backends (how a row is written, whether state must be synced,
which process is the chief, where PyTorch's eager rows are computed) lives
in `lossguard.backends`; this module holds what they share.
"""

from __future__ import annotations

import logging

import keras

from lossguard import backends
from lossguard.backends.rows import BufferRows
from lossguard.backends.structure import flatten, rebuild
from lossguard.backends.torch import DeferredRows

logger = logging.getLogger("lossguard")

__all__ = [
    "ATTRIBUTE",
    "HEADER",
    "WATCHED",
    "BufferRows",
    "DeferredRows",
    "StepStats",
    "attach",
    "flatten",
    "is_chief",
    "loss_tracker",
    "needs_carried_state",
    "rebuild",
    "rows_for",
    "sync",
]

#: The backends whose train and test steps lossguard watches.
WATCHED = backends.WATCHED
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


def rows_for(model, capacity, width, compute):
    """Where the statistics of this model's steps go: a buffer written in
    the step, or, where the steps are eager (PyTorch without
    `jit_compile`), the steps' inputs, computed in blocks."""
    return backends.current().rows_for(model, capacity, width, compute)


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
    return backends.current().carries_state


def sync(model):
    """Write the state a JAX step carries back to the variables (a no-op on
    the other backends, and on JAX when Keras already did)."""
    backends.current().sync(model)


def is_chief(model) -> bool:
    """False only on a process that is not the first of a multi-process run."""
    return backends.current().is_chief(model)
