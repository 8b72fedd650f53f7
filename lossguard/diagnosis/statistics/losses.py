"""What the loss is made of: the compiled loss, the extra terms of
`model.losses` (each layer's own), each output's loss, and the terms a
clipped loss clipped."""

from __future__ import annotations

import logging

import keras
from keras import ops

from .common import NAN, ReplicaRule, Stat, nan

logger = logging.getLogger("lossguard")

#: The whole batch's statistics (one per model).
GLOBAL_STATS = (
    Stat("loss", ReplicaRule.MEAN, doc="the batch's total loss"),
    Stat("data_loss", ReplicaRule.MEAN, doc="the compiled loss (all outputs)"),
    Stat("aux_loss", ReplicaRule.MEAN, doc="sum(model.losses)"),
    Stat("x_nonfinite", ReplicaRule.MAX, "bool", doc="NaN/Inf in the inputs"),
    Stat("aux_nonfinite", ReplicaRule.MAX, "bool", doc="NaN/Inf in model.losses"),
)
#: One extra term of `model.losses`, keyed `aux:<layer name>` (or `aux:other`).
AUX_TERM = Stat("aux:", ReplicaRule.MEAN, doc="one layer's add_loss terms")
#: Each output's own loss, for models with several outputs.
OUTPUT_LOSS_STATS = (
    Stat("data_loss", ReplicaRule.MEAN, doc="the output's unweighted loss"),
    Stat("loss_weight", ReplicaRule.FIRST, doc="its compile() loss_weight"),
)
#: Per output, for a loss that clips its terms.
CLIP_STATS = (
    Stat("loss_at_clip_share", ReplicaRule.BY_ACTIVE_ROWS, doc="terms at a bound"),
)


def model_statistics(loss, x, model_losses, layer_terms, replicas) -> dict:
    """`GLOBAL_STATS` and one `aux:<layer>` per watched layer.

    `loss` is what the step returned (under tf.distribute Keras scales each
    replica's data loss by 1/replicas, not the extra terms: undone here, so
    the row holds this replica's own mean); `layer_terms` maps each watched
    layer's name to its own terms.
    """
    terms = [ops.cast(ops.sum(t), "float32") for t in model_losses]
    aux = ops.sum(ops.stack(terms)) if terms else ops.convert_to_tensor(0.0)
    loss = ops.cast(loss, "float32")
    if terms:
        data_loss = (loss - aux) * replicas
        total = data_loss + aux
    else:  # the same values, with no operation on the step
        data_loss = loss * replicas if replicas > 1 else loss
        total = data_loss
    stats = {
        "loss": total,
        "data_loss": data_loss,
        "aux_loss": aux,
        "x_nonfinite": nonfinite_inputs(x),
        "aux_nonfinite": ops.cast(ops.logical_not(ops.isfinite(aux)), "float32"),
    }
    attributed = ops.convert_to_tensor(0.0)
    for name, own_terms in layer_terms.items():
        own = [ops.cast(ops.sum(t), "float32") for t in own_terms]
        value = ops.sum(ops.stack(own)) if own else ops.convert_to_tensor(0.0)
        stats[AUX_TERM.name + name] = value
        attributed = attributed + value
    stats[AUX_TERM.name + "other"] = aux - attributed
    return stats


def nonfinite_inputs(x):
    """1.0 where any float input holds a NaN or infinity."""
    flags = [
        ops.logical_not(ops.all(ops.isfinite(t)))
        for t in keras.tree.flatten(x)
        if t is not None and "float" in str(getattr(t, "dtype", ""))
    ]
    if not flags:
        return ops.convert_to_tensor(0.0)
    if len(flags) == 1:
        return ops.cast(flags[0], "float32")
    return ops.cast(ops.any(ops.stack(flags)), "float32")


def output_loss_statistics(loss, spec, y_true, y_pred, sample_weight, replicas):
    """`OUTPUT_LOSS_STATS`: one output's loss, recomputed with its compiled
    loss (Keras logs only running means), and its loss weight."""
    value = or_nan("its loss", spec, loss, y_true, y_pred, sample_weight)
    return {
        "data_loss": value * replicas,
        "loss_weight": ops.convert_to_tensor(spec.loss_weight, "float32"),
    }


def clip_statistics(compiled, spec, y_true, y_pred) -> dict:
    """`CLIP_STATS`, for an output whose loss clips its terms."""
    if spec.clip is None:
        return {}
    share = or_nan(
        "the share of clipped terms",
        spec,
        at_clip_share,
        compiled,
        spec.clip,
        y_true,
        y_pred,
    )
    return {"loss_at_clip_share": share}


def or_nan(what, spec, compute, *args):
    """`compute(*args)` as float32, or NaN (logged) where it cannot be built."""
    try:
        return ops.cast(compute(*args), "float32")
    except Exception as error:  # noqa: BLE001 - one statistic, not the row
        logger.info(
            "lossguard cannot measure %s for output '%s': %s: %s",
            what,
            spec.name,
            type(error).__name__,
            error,
        )
        return nan()


def loss_object(loss):
    """A callable loss `(y_true, y_pred, sample_weight) -> scalar`, or None."""
    if loss is None:
        return None
    if isinstance(loss, keras.losses.Loss):
        return loss
    try:
        fn = keras.losses.get(loss)
    except (ValueError, TypeError):
        return None
    return FunctionLoss(fn) if callable(fn) else None


class FunctionLoss(keras.losses.Loss):
    """A loss function with Keras' reduction, masks and sample weights."""

    def __init__(self, fn):
        super().__init__(name=getattr(fn, "__name__", "loss"))
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


def unreduced(loss, y_true, y_pred):
    """A loss's unreduced values (one per sample or token)."""
    if isinstance(loss, keras.losses.Loss):
        return loss.call(y_true, y_pred)
    return keras.losses.get(loss)(y_true, y_pred)


def at_clip_share(loss, clip, y_true, y_pred):
    """Share of a clipped loss's terms that sit at one of its bounds (NaN when
    the loss reduces to one value itself)."""
    values = ops.cast(unreduced(loss, y_true, y_pred), "float32")
    if len(values.shape) == 0:
        return ops.convert_to_tensor(NAN)
    at = ops.zeros_like(values, dtype="bool")
    for bound in clip:
        if bound is not None:
            near = ops.abs(values - bound) <= 1e-6 + 1e-4 * abs(bound)
            at = ops.logical_or(at, near)
    return ops.mean(ops.cast(at, "float32"))
