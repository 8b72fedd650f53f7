"""The instrumenter: lossguard's statistics put into Keras' step, and taken out.

For the duration of a run it wraps the model's `compute_loss`, so that each
step, where Keras computes the loss on the exact batch, also computes the
batch's statistics (`lossguard.diagnosis.collect.BatchCollector`) and
writes them as one row (`state.rows_for`: a buffer in the step, or
PyTorch's kept steps computed in blocks). It also wraps the train and test
step functions so that a step that fails is explained before the error
reaches the user (`on_crash`, given by the callback). It restores both when
the run ends. The wrapped functions are kept for the next run of the same
model and compile: a second `fit` re-traces only when Keras itself would.
"""

from __future__ import annotations

import logging
import threading

import keras
import numpy as np
from keras import ops

from lossguard import backends
from lossguard.callbacks import state
from lossguard.callbacks.gradients import GradientWatch, gradient_keys
from lossguard.diagnosis.collect import (
    BatchCollector,
    accepts_training,
    call_compute_loss,
)
from lossguard.diagnosis.internals import unbuilt
from lossguard.diagnosis.specs import output_specs
from lossguard.keras_compat import get_mask, set_mask

logger = logging.getLogger("lossguard")


def compile_key(model):
    """What a traced train step depends on besides the data: re-compiling
    (a new optimizer or loss), steps_per_execution, jit_compile."""
    return (
        id(getattr(model, "optimizer", None)),
        id(getattr(model, "loss", None)),
        getattr(model, "steps_per_execution", 1),
        getattr(model, "jit_compile", None),
    )


def steps_per_call(model) -> int:
    """Steps Keras runs per step-function call (one batch hook each)."""
    return int(getattr(model, "steps_per_execution", 1) or 1)


class Instrumenter:
    """Installs the statistics into a model's steps and restores them."""

    def __init__(self, predictions="auto", internals=False):
        self.predictions = predictions
        self.internals = internals  # gradients and ReLU layers' outputs too
        self.collector = None  # BatchCollector: the row's keys and specs
        self.gradients = None  # GradientWatch, with internals
        self.unbuilt = False  # the model makes its variables at its first step
        self.gradients_said = False  # why they cannot be read was said
        self.rows = None  # where the steps' rows go (state.rows_for)
        self.capacity = 0
        self.key = None  # the compile the step functions below were made for
        self.functions = {}  # "train" / "test" -> the wrapped step function
        self.tracker = None  # Keras' loss tracker (its running loss)
        self.host = None  # the metric that carries the rows' variables (JAX)
        self.between_steps = False  # reads come from the begin hooks
        self.in_step = False  # hooks follow each step on the loop's thread
        self.installed = False
        self.trace_error = None  # why building the statistics failed
        self.custom_step = {}  # "train" / "test" -> the model overrides it
        self.traces = 0  # times the statistics were built (traced or eager)
        self._skip_logged = False
        self._restore = (False, None)  # (had its own compute_loss, which)
        self._fit_thread = None

    # ------------------------------------------------------------- setup
    def build(self, model, key, capacity) -> bool:
        """The collector, the rows and (later) the step functions for this
        model and compile; False where the last build still serves."""
        if self.key == key and self.collector is not None:
            return False
        late = gradient_keys(model) if self.internals else []
        self.collector = BatchCollector(
            model, output_specs(model), activations=self.internals, late_keys=late
        )
        self.gradients = GradientWatch(model) if late else None
        self.unbuilt = self.internals and not late and unbuilt(model)
        self.gradients_said = False
        self.capacity = max(capacity, 2 * steps_per_call(model))
        width = len(self.collector.keys) + len(state.HEADER)
        # Under tf.distribute: mirrored, and only the first replica's write
        # counts (every replica holds the same, global-batch row).
        self.rows = state.rows_for(model, self.capacity, width, self._deferred_row)
        if self.gradients is not None and self.gradients.reason is None:
            start = len(state.HEADER) + self.collector.late_start
            self.rows.add_late(self.gradients.width, start, self.gradients.finish)
        # The blocks are read between steps, from the begin hooks on the
        # loop's thread, where the end hooks lag the steps (JAX, PyTorch)
        # and reading needs that thread: JAX syncs its carried state, and
        # PyTorch computes the kept steps' rows (its ops in Keras' hook
        # thread would run beside the step, on the same cores).
        self.between_steps = state.needs_carried_state() or self.rows.deferred
        self.tracker = state.loss_tracker(model)
        self.trace_error = None
        self._skip_logged = False
        self.custom_step = {
            phase: getattr(type(model), f"{phase}_step")
            is not getattr(keras.Model, f"{phase}_step")
            and f"{phase}_step" in _own_methods(type(model))
            for phase in ("train", "test")
        }
        self.key, self.functions = key, {}
        return True

    def install(self, model, on_crash):
        """Wrap compute_loss and the step functions; why it cannot, or None.

        `on_crash(error, phase)` is called when a step fails, before the
        error goes on to the user."""
        self.host = None
        self._fit_thread = threading.get_ident()
        backend = backends.current()
        if not backend.watched:
            return (
                f"lossguard watches the {', '.join(state.WATCHED)} backends' "
                f"train steps, not {backends.name()}'s"
            )
        reason = self._attach(model)
        if reason is not None:
            return reason
        self._wrap_compute_loss(model)
        self._watch_internals(model)
        for phase in ("train", "test"):
            name = f"{phase}_function"
            if phase not in self.functions:
                getattr(model, f"make_{phase}_function")(force=True)
                watched = "train" if phase == "train" else "validation"
                self.functions[phase] = _explained(
                    getattr(model, name), watched, on_crash
                )
            setattr(model, name, self.functions[phase])
        self.installed = True
        # TensorFlow runs every hook on the loop's thread, right after its
        # step: with one step a call, a batch hook needs no lock and counts 1.
        self.in_step = (
            backend.hooks_follow_each_step
            and not self.between_steps
            and steps_per_call(model) == 1
        )
        return None

    def _attach(self, model):
        """Join the rows' variables to the state Keras carries (JAX)."""
        try:
            self.host = state.attach(model, self.rows.variables)
        except Exception as error:  # noqa: BLE001 - never break the user's fit
            if state.needs_carried_state():
                return (
                    "its statistics could not join the state Keras carries "
                    f"({type(error).__name__}: {error})"
                )
        if self.host is None and state.needs_carried_state():
            return (
                "its train step is a pure function of the state Keras carries, "
                "and this model has no compiled loss tracker to carry "
                "lossguard's statistics in"
            )
        return None

    def _watch_internals(self, model):
        """Read the ReLU layers' outputs and the optimizer's gradients."""
        self.collector.activations.install()
        if self.gradients is not None:
            # Kept steps (eager PyTorch) keep the values as apply takes them.
            write, at_once = self.rows.write_late, self.rows.deferred
            self.gradients.install(model, write, at_once)

    def _wrap_compute_loss(self, model):
        had_own = "compute_loss" in vars(model)
        self._restore = (had_own, vars(model).get("compute_loss"))
        original = model.compute_loss
        takes_training = accepts_training(original)

        def compute_loss(
            x=None, y=None, y_pred=None, sample_weight=None, training=True
        ):
            loss = call_compute_loss(
                original, x, y, y_pred, sample_weight, training, takes_training
            )
            if loss is not None:
                self._record(x, y, y_pred, sample_weight, loss, training)
            return loss

        model.compute_loss = compute_loss

    def uninstall(self, model):
        if not self.installed:
            return
        had_own, previous = self._restore
        if had_own:
            model.compute_loss = previous
        else:
            vars(model).pop("compute_loss", None)
        # Keras makes plain step functions again when it needs them; the
        # instrumented ones stay cached here for this callback's next fit.
        # From a hook Keras runs in a thread (action="raise" on PyTorch), the
        # loop is still running and calls train_function again before the
        # error reaches it: leave the functions (they call the restored
        # compute_loss) rather than pull them from under it.
        if threading.get_ident() == self._fit_thread:
            model.train_function = None
            model.test_function = None
        self.collector.activations.uninstall()
        if self.gradients is not None:
            self.gradients.uninstall()
        if self.host is not None:
            # JAX: write the carried state back while its list still matches
            # model.metrics_variables (Keras syncs again when fit ends, also
            # after a raise from a hook).
            try:
                state.sync(model)
            except Exception:  # noqa: BLE001 - a crashed step's state may be gone
                logger.debug("lossguard could not sync the state", exc_info=True)
            self.host.unbind()
        self.installed = False
        self.in_step = False

    def read(self, model):
        """The rows so far, numbered (`state.BufferRows.numpy`)."""
        return self.rows.numpy(model)

    def blind_reason(self, model, phase) -> str:
        """Why a step of `phase` wrote no row, in words."""
        step = "train" if phase == "train" else "test"
        error = self.trace_error or self.rows.error
        if error is not None:
            return f"building its statistics failed ({type(error).__name__}: {error})"
        if self.custom_step[step]:
            return (
                f"{type(model).__name__} overrides {step}_step and does not "
                "call compute_loss"
            )
        return f"the {step} step did not call model.compute_loss"

    def unseen_gradients(self, model, rows):
        """Why the gradient columns of a training block's `rows` are empty,
        the first time they are (None where they were read, or were never
        asked for, or this was said already)."""
        if not self.internals or self.gradients_said:
            return None
        late = self.collector.late_start
        if self.gradients is None:
            if not self.unbuilt:
                return None  # nothing to train: no gradient to read
            reason = (
                f"{type(model).__name__} was not built when fit began (on "
                "TensorFlow Keras makes its variables inside the first step; "
                "call the model once on a batch of inputs before fit, or "
                "start it with a keras.Input)"
            )
        elif np.isfinite(rows[:, late:]).any():
            return None
        else:
            reason = self.gradients.reason
            if reason is None and self.gradients.error is not None:
                error = self.gradients.error
                reason = f"reading them failed ({type(error).__name__}: {error})"
            if reason is None and self.custom_step["train"]:
                reason = (
                    f"{type(model).__name__} overrides train_step and does not "
                    "hand its gradients to optimizer.apply and then call "
                    "compute_metrics"
                )
            if reason is None:
                reason = (
                    "the train step did not hand its gradients to "
                    "optimizer.apply and then call compute_metrics"
                )
        self.gradients_said = True
        return reason

    # ------------------------------------------------------ in the step
    def _record(self, x, y, y_pred, sample_weight, loss, training):
        """Runs in the train or test step (while Keras traces it, or on every
        step where it is eager): the step's row, or what it is computed from."""
        self.traces += 1
        if self.gradients is not None:
            self.gradients.forget()
        activations = self.collector.activations.take()
        try:
            self._row(x, y, y_pred, sample_weight, loss, training, activations)
        except Exception as error:  # noqa: BLE001 - never break the user's fit
            if any(read is not None for read in activations):
                # A ReLU layer's read left over from another trace (a
                # layer this step did not run, after a predict): once more
                # without the reads.
                try:
                    nothing = (None,) * len(activations)
                    self._row(x, y, y_pred, sample_weight, loss, training, nothing)
                    return
                except Exception:  # noqa: BLE001 - reported below
                    pass
            # Eager, this runs on every step: a failure here costs lossguard
            # its rows, never the user their step.
            self.trace_error = error
            logger.debug("lossguard could not build its statistics", exc_info=True)

    def _row(self, x, y, y_pred, sample_weight, loss, training, activations):
        """Write the step's row (or keep what it is computed from)."""
        if self.rows.deferred:  # eager PyTorch: computed in blocks
            self.collector.refine(y_pred)
            masks = [get_mask(t) for t in state.flatten(y_pred)]
            extra = self.collector.extra_terms()
            made = (y_pred, loss, masks, extra, activations)
            self.rows.keep((x, y, sample_weight), made, training)
            return
        step = ops.convert_to_tensor(0.0)  # numbered at the read
        phase = ops.convert_to_tensor(0.0 if training else 1.0)
        loss_state = None
        if self.tracker is not None and state.needs_carried_state():
            loss_state = (self.tracker.total, self.tracker.count)
        running = _running_loss(x, loss, loss_state)
        head = (step, phase, running)
        row = self._packed_row(
            x, y, y_pred, sample_weight, loss, head, activations=activations
        )
        self.rows.write(row)

    def _deferred_row(self, data, made):
        """A kept step's row after its step number and phase: Keras' running
        loss after the step, then the statistics (see `state.DeferredRows`)."""
        x, y, sample_weight = data
        y_pred, loss, masks, extra_terms, activations, total, count = made
        loss_state = None if total is None else (total, count)
        running = _running_loss(x, loss, loss_state)
        return self._packed_row(
            x, y, y_pred, sample_weight, loss, (running,), masks, extra_terms,
            activations,
        )  # fmt: skip

    def _packed_row(
        self,
        x,
        y,
        y_pred,
        sample_weight,
        loss,
        head,
        masks=None,
        extra_terms=None,
        activations=None,
    ):
        """One step's statistics as one float32 vector after the scalars
        `head`; computed after the step, with the outputs' `masks` and the
        step's `extra_terms`."""
        if masks is not None:  # detached outputs lost theirs
            for output, mask in zip(state.flatten(y_pred), masks, strict=True):
                if mask is not None:
                    set_mask(output, mask)
        stats = self.collector.row(
            x,
            y,
            y_pred,
            sample_weight,
            loss,
            predictions=self.predictions,
            extra_terms=extra_terms,
            activations=activations,
        )
        if self.collector.skipped and not self._skip_logged:
            self._skip_logged = True
            logger.info(
                "lossguard skips the prediction range statistics of %s: a "
                "float32 Keras softmax is a distribution by construction "
                "(predictions='all' measures them anyway).",
                ", ".join(self.collector.skipped),
            )
        return self.collector.pack(stats, head)


def _running_loss(x, loss, loss_state):
    """Keras' running-mean loss after this step, from its loss tracker's
    `(total, count)` before the step's update, where the hooks that carry it
    lag the steps; NaN without them (the hooks report it)."""
    nan = ops.convert_to_tensor(float("nan"))
    inputs = keras.tree.flatten(x) if x is not None else []
    if loss_state is None or not inputs:
        return nan
    total, count = loss_state
    try:  # Keras weighs each step's loss by its batch size
        n = ops.cast(ops.shape(inputs[0])[0], "float32")
        loss = ops.cast(loss, "float32")
        return (ops.cast(total, "float32") + loss * n) / (
            ops.cast(count, "float32") + n
        )
    except Exception:  # noqa: BLE001 - a statistic, never the step
        return nan


def _explained(inner, phase, on_crash):
    """The step function, explaining a crash before it reaches the user."""

    def step_function(*args):
        try:
            return inner(*args)
        except Exception as error:  # noqa: BLE001 - re-raised below
            if not _end_of_data(error):
                on_crash(error, phase)
            raise

    return step_function


def _end_of_data(error) -> bool:
    """How a step ends an epoch of unknown length: not a crash."""
    return isinstance(error, StopIteration) or type(error).__name__ == (
        "OutOfRangeError"
    )


def _own_methods(cls):
    names = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("keras"):
            break
        names.update(vars(klass))
    return names
