"""One batch -> one row of named statistics (tensors), for every output.

The callback packs the row into a buffer inside the train step; `diagnose`
evaluates it in a compiled function. Both then hand the row to
`lossguard.diagnosis.faults.check_batch`.
"""

from __future__ import annotations

import inspect
import logging

import keras
from keras import ops

from lossguard import backends
from lossguard.diagnosis.internals import ActivationWatch
from lossguard.diagnosis.specs import OutputSpec, output_specs, per_output
from lossguard.diagnosis.statistics import (
    AUX_TERM,
    GLOBAL_KEYS,
    NAN,
    OUTPUT_KEYS,
    OUTPUT_LOSS_STATS,
    combine_replicas,
    f32,
    is_keras_softmax,
    output_statistics,
)
from lossguard.diagnosis.statistics.losses import (
    clip_statistics,
    loss_object,
    model_statistics,
    output_loss_statistics,
)
from lossguard.keras_compat import layer_losses, never_adds_losses

logger = logging.getLogger("lossguard")


def _may_add_loss(layer) -> bool:
    """Layers whose `losses` can be non-empty: regularised, custom or nested."""
    if isinstance(layer, keras.Model):
        return True
    if any(
        name.endswith("regularizer") and value is not None
        for name, value in vars(layer).items()
    ):
        return True
    return not type(layer).__module__.startswith("keras")


def accepts_training(method) -> bool:
    """Whether a `compute_loss` method takes `training` (Keras 3's do; an
    override written for earlier versions, such as keras.io's masked
    language model, may not, and is still valid)."""
    try:
        return "training" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return True


def call_compute_loss(
    method, x, y, y_pred, sample_weight, training=False, takes_training=None
):
    """A model's `compute_loss` method, called with or without `training`
    (`takes_training`: what `accepts_training` said, if known)."""
    if takes_training is None:
        takes_training = accepts_training(method)
    if takes_training:
        return method(x, y, y_pred, sample_weight, training=training)
    return method(x, y, y_pred, sample_weight)


def replicas_in_sync() -> int:
    """Replicas of the distributed step this runs in (1 outside one)."""
    return backends.current().replicas_in_sync()


class BatchCollector:
    """Knows a model's outputs and extra-loss layers; builds a batch's row.

    `activations`: also read the ReLU-family layers' outputs (install
    `activations` around the forward pass); `late_keys`: columns the row
    leaves NaN for a later write in the same step (the gradients), last.
    """

    def __init__(
        self,
        model,
        specs: list[OutputSpec] | None = None,
        activations: bool = True,
        late_keys=(),
    ):
        self.model = model
        self.specs = specs if specs is not None else output_specs(model)
        self.names = [s.name for s in self.specs]
        self.single = len(self.specs) == 1
        self.aux_layers = [
            layer for layer in getattr(model, "layers", []) if _may_add_loss(layer)
        ]
        self._never_adds_losses = None
        self.keys = list(GLOBAL_KEYS)
        self.keys += [AUX_TERM.name + layer.name for layer in self.aux_layers]
        self.keys.append(AUX_TERM.name + "other")
        self.activations = ActivationWatch(model if activations else None)
        self.keys += self.activations.keys
        for spec in self.specs:
            prefix = "" if self.single else f"{spec.name}/"
            self.keys += [prefix + key for key in OUTPUT_KEYS]
        # Several outputs: each one's unweighted data loss and its loss_weight,
        # recomputed with the compiled loss (Keras logs only running means).
        self.output_losses = [None] * len(self.specs)
        self.losses = per_output(getattr(model, "loss", None), self.names, "loss")
        if not self.single:
            self.output_losses = [loss_object(loss) for loss in self.losses]
            for spec in self.specs:
                self.keys += [f"{spec.name}/{s.name}" for s in OUTPUT_LOSS_STATS]
        #: Where the late columns start in a packed row (after its head).
        self.late_start = len(self.keys)
        self.keys += list(late_keys)

    def refine(self, y_pred) -> bool:
        """Learn the specs of outputs whose shape was unknown before a batch
        ran (a subclassed model, built on its first call). True if they
        changed."""
        if all(spec.units is not None for spec in self.specs) or y_pred is None:
            return False
        refined = output_specs(self.model, y_pred)
        changed = refined != self.specs
        self.specs = refined
        return changed

    def extra_terms(self):
        """This step's extra loss terms: `model.losses`, and each watched
        layer's own (read while the step runs)."""
        if self._never_adds_losses is None and getattr(self.model, "built", False):
            self._never_adds_losses = never_adds_losses(self.model)  # once
        if self._never_adds_losses:  # an eager step pays for the walk
            return [], [[] for _ in self.aux_layers]
        model_losses = list(self.model.losses)
        by_layer = [layer_losses(layer, model_losses) for layer in self.aux_layers]
        return model_losses, by_layer

    def row(
        self,
        x,
        y,
        y_pred,
        sample_weight,
        loss,
        predictions="all",
        extra_terms=None,
        activations=None,
    ):
        """The batch's statistics as a dict of float32 scalar tensors.

        `predictions="auto"` skips the full-width prediction statistics of
        outputs that are a float32 Keras softmax (a distribution by
        construction; see `skipped`); `"all"` takes them everywhere.
        `extra_terms`, `activations`: what `extra_terms()` and
        `activations.take()` returned during the step, where the row is
        computed after it (default: read now).
        """
        self.skipped = []
        self.refine(y_pred)
        stats = dict.fromkeys(self.keys, ops.convert_to_tensor(NAN))
        replicas = replicas_in_sync()
        model_losses, by_layer = extra_terms or self.extra_terms()
        layer_terms = {
            layer.name: terms
            for layer, terms in zip(self.aux_layers, by_layer, strict=True)
        }
        stats.update(model_statistics(loss, x, model_losses, layer_terms, replicas))
        stats.update(self.activations.values(activations))
        outputs = zip(
            self.specs,
            per_output(y, self.names),
            per_output(y_pred, self.names),
            per_output(sample_weight, self.names),
            self.output_losses,
            self.losses,
            strict=True,
        )
        for spec, *batch, loss_fn, compiled in outputs:
            if batch[0] is None or batch[1] is None:
                continue
            prefix = "" if self.single else f"{spec.name}/"
            own = self.output_row(spec, *batch, loss_fn, compiled, x, predictions)
            stats.update({prefix + key: value for key, value in own.items()})
        return stats

    def output_row(
        self, spec, y_true, y_pred, sample_weight, loss_fn, compiled, x, predictions
    ):
        """One output's statistics (unprefixed)."""
        full = predictions == "all" or not is_keras_softmax(y_pred, spec.activation)
        if not full:
            self.skipped.append(spec.name)
        own = output_statistics(
            y_true, y_pred, sample_weight, spec, predictions=full, inputs=x
        )
        if loss_fn is not None:
            replicas = replicas_in_sync()
            own.update(
                output_loss_statistics(
                    loss_fn, spec, y_true, y_pred, sample_weight, replicas
                )
            )
        own.update(clip_statistics(compiled, spec, y_true, y_pred))
        return own

    def pack(self, stats, head=()):
        """The row as one float32 vector, after the float32 scalars `head`;
        under `tf.distribute` with several replicas, the global batch's row
        (gathered from every replica)."""
        values = [f32(stats[k]) for k in self.keys]
        if replicas_in_sync() == 1:
            return ops.stack([*head, *values])  # one op for the whole row
        gathered = backends.current().gather(ops.stack(values))
        packed = combine_replicas(gathered, self.keys)
        return ops.concatenate([ops.stack(head), packed]) if head else packed

    def unpack(self, values) -> dict:
        return {k: float(v) for k, v in zip(self.keys, values, strict=True)}
