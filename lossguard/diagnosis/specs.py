"""What a compiled model promises about each output: loss kind and settings."""

from __future__ import annotations

import dataclasses
import logging
import math

import keras

from lossguard import backends
from lossguard.diagnosis.held import held_losses, overrides_compute_loss
from lossguard.kinds import PROBABILISTIC, LossKind

logger = logging.getLogger("lossguard")

#: Keras' own losses by name (function or class, lower-case, without
#: underscores) -> their family. lossguard's losses declare theirs
#: (`loss_kind`); any other loss is probed.
KERAS_KINDS = {
    "categoricalcrossentropy": LossKind.CATEGORICAL,
    "categoricalfocalcrossentropy": LossKind.CATEGORICAL,
    "sparsecategoricalcrossentropy": LossKind.SPARSE,
    "binarycrossentropy": LossKind.BINARY,
    "binaryfocalcrossentropy": LossKind.BINARY,
    "dice": LossKind.BINARY,
    "kldivergence": LossKind.KL,
    "kld": LossKind.KL,
    "cosinesimilarity": LossKind.UNBOUNDED,
    "poisson": LossKind.UNBOUNDED,
}

#: The known range of Keras' losses that are negative by design.
UNBOUNDED_RANGES = {
    "cosinesimilarity": "[-1, 1] (best = -1)",
    "poisson": "unbounded below (Keras drops the log(y!) term)",
}


def name_key(name: str) -> str:
    """A loss's name as `KERAS_KINDS` keys it: `categorical_crossentropy`
    and `CategoricalCrossentropy` are one loss."""
    return name.lower().replace("_", "")


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    """One model output, its compiled loss and its output layer."""

    name: str
    loss_name: str
    kind: LossKind  # a string is taken too
    from_logits: bool = False
    label_smoothing: float = 0.0
    ignore_class: int | None = None
    loss_weight: float = 1.0
    activation: str | None = None
    units: int | None = None
    dtype: str = "float32"
    #: How lossguard knows the loss: "" for Keras' and lossguard's own, else
    #: what probing found (`lossguard.diagnosis.probe`).
    identified: str = ""
    #: (low, high) bounds the loss clips each term into (either may be None).
    clip: tuple | None = None
    #: What the loss is bounded below by on valid labels and predictions:
    #: "zero" (a cross-entropy family, known or measured), "below" (negative
    #: by design) or "unknown" (no probe could tell).
    floor: str = "zero"
    #: How the floor is known, in words (the probe, for a probed loss).
    floor_how: str = ""

    def __post_init__(self):
        object.__setattr__(self, "kind", LossKind(self.kind))

    # What the loss takes its labels and predictions to be: each check asks
    # these, not the family's name.
    @property
    def expects_probabilities(self) -> bool:
        """Predictions must be probabilities (a family, not from logits)."""
        return self.kind in PROBABILISTIC and not self.from_logits

    @property
    def categorical(self) -> bool:
        """One class per row, as one-hot rows or ids."""
        return self.kind in (LossKind.CATEGORICAL, LossKind.SPARSE)

    @property
    def label_rows_are_distributions(self) -> bool:
        """Each label row must be a distribution (y >= 0, sum 1)."""
        return self.kind in (LossKind.CATEGORICAL, LossKind.KL)

    @property
    def one_hot_labels(self) -> bool:
        """Labels are one-hot rows over the classes."""
        return self.kind == LossKind.CATEGORICAL

    @property
    def sparse_labels(self) -> bool:
        """Labels are class ids in [0, K)."""
        return self.kind == LossKind.SPARSE

    @property
    def binary_targets(self) -> bool:
        """Targets lie in [0, 1], each unit on its own."""
        return self.kind == LossKind.BINARY

    @property
    def ranged_labels(self) -> bool:
        """Labels have a range to leave: [0, 1] targets or [0, K) ids."""
        return self.kind in (LossKind.BINARY, LossKind.SPARSE)

    @property
    def cross_entropy(self) -> bool:
        """A cross-entropy over softmax or sigmoid outputs."""
        return self.kind in (LossKind.CATEGORICAL, LossKind.SPARSE, LossKind.BINARY)

    @property
    def prediction_rows_sum_to_one(self) -> bool:
        """The loss reads each prediction row as one distribution."""
        return self.kind in (LossKind.CATEGORICAL, LossKind.SPARSE, LossKind.KL)


def _loss_name(loss) -> str:
    if loss is None:
        return "none"
    if isinstance(loss, str):
        return loss
    if type(loss).__name__ == "LossFunctionWrapper":  # Keras' wrapped function
        return getattr(loss.fn, "__name__", "loss")
    if isinstance(loss, keras.losses.Loss):
        return type(loss).__name__
    return getattr(loss, "__name__", type(loss).__name__)


def _loss_setting(loss, key, default):
    if isinstance(loss, keras.losses.Loss):
        try:
            return loss.get_config().get(key, default)
        except (NotImplementedError, TypeError):
            return getattr(loss, key, default)
    return default


def _activation_name(layer) -> str | None:
    if layer is None:
        return None
    inner = getattr(layer, "layer", None)  # TimeDistributed and friends
    if inner is not None and not hasattr(layer, "activation"):
        return _activation_name(inner)
    cls = type(layer).__name__.lower()
    if cls == "softmax" and getattr(layer, "axis", -1) not in (-1, [-1], (-1,)):
        return f"softmax(axis={layer.axis})"  # not over the classes
    if cls in ("softmax", "sigmoid"):
        return cls
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    return getattr(act, "__name__", str(act))


def per_output(value, names, what=None):
    """Spread a per-output structure (single, list or dict) over output names.

    A single value is shared by every output. A list must have one entry per
    output where `what` names a compile() argument (else `ValueError`); a
    list of another length (labels of one output given as a list) is one value.
    """
    if isinstance(value, dict):
        return [value.get(n) for n in names]
    if isinstance(value, list | tuple):
        if len(value) == len(names):
            return list(value)
        if what is not None:
            raise ValueError(
                f"`{what}` has {len(value)} entries for {len(names)} outputs "
                f"{names}. Pass one per output."
            )
    return [value] * len(names)


def _own_kind(loss, key) -> LossKind | None:
    """The family of one of lossguard's losses (they declare it) or of
    Keras' own (by name); None for any other loss."""
    if isinstance(loss, str):
        return KERAS_KINDS.get(key)
    inner = getattr(loss, "fn", None) if _is_wrapper(loss) else loss
    module = getattr(inner, "__module__", None) or type(inner).__module__
    package = module.split(".")[0]
    if package == "lossguard":
        declared = getattr(inner, "loss_kind", None)
        return None if declared is None else LossKind(declared)
    return KERAS_KINDS.get(key) if package == "keras" else None


def _is_wrapper(loss) -> bool:
    return type(loss).__name__ == "LossFunctionWrapper"


def _lossguard_clip(loss):
    """The (min_loss, max_loss) of lossguard's Clipped* losses."""
    if not (isinstance(loss, keras.losses.Loss) and hasattr(loss, "clipped_count")):
        return None
    config = loss.get_config()
    high = config.get("max_loss")
    if high is None:
        eps = config.get("epsilon") or keras.config.epsilon()
        high = -math.log(eps)
    return (config.get("min_loss"), high)


def output_layers(model) -> list:
    """The layer that produces each output, or None where it is not known."""
    names = list(getattr(model, "output_names", None) or [])
    layers = []
    for name in names:
        try:
            layers.append(model.get_layer(name))
        except ValueError:
            layers.append(None)
    if not layers and getattr(model, "layers", None):
        layers = [model.layers[-1]]
    return layers


def output_specs(model, outputs=None) -> list[OutputSpec]:
    """One `OutputSpec` per model output, from the compile configuration.

    `outputs` are tensors of the model's outputs (a batch's `y_pred`), for
    a model whose outputs are not known before it runs (a subclassed model
    not built yet); by default the model's symbolic outputs.
    """
    names = list(getattr(model, "output_names", None) or ["output"])
    layers = output_layers(model) or [None] * len(names)
    if len(layers) != len(names):
        layers = [None] * len(names)
    compiled = getattr(model, "loss", None)
    held = held_losses(model) if compiled is None and len(names) == 1 else []
    losses = per_output(compiled if not held else held[0].loss, names, "loss")
    weights = per_output(_loss_weights(model), names, "loss_weights")
    if outputs is not None:
        outputs = per_output(outputs, names)
    else:
        outputs = list(getattr(model, "outputs", None) or [])
    specs = []
    for i, name in enumerate(names):
        loss = losses[i]
        tensor = outputs[i] if i < len(outputs) else None
        shape = tuple(tensor.shape) if tensor is not None else ()
        weight = weights[i]
        common = {
            "name": name,
            "loss_name": _loss_name(loss),
            "loss_weight": 1.0 if weight is None else float(weight),
            "activation": _activation_name(layers[i]),
            "units": shape[-1] if shape else None,
            "dtype": keras.backend.standardize_dtype(
                getattr(tensor, "dtype", "float32")
            ),
        }
        with _eager():
            family = _loss_family(loss, shape, common["activation"])
        if held:  # say where the loss lives, before how it behaves
            how = family.get("identified")
            family["identified"] = held[0].how + (f"; {how}" if how else "")
        specs.append(OutputSpec(**common, **family))
    return specs


def unseen_loss(model) -> str | None:
    """Why lossguard cannot see the loss a model applies to its labels, in
    one sentence; None where it can (a compiled loss, or one `held_losses`
    found)."""
    if getattr(model, "loss", None) is not None or not overrides_compute_loss(model):
        return None
    if held_losses(model):
        return None
    return (
        f"{type(model).__name__} computes its loss in its own compute_loss, "
        "which applies no attribute of the model to (y, y_pred) that lossguard "
        "can read, so it checks the batch loss, the weights and the extra "
        "terms, not the labels and predictions against a loss family"
    )


def _eager():
    """Run eagerly even while a step is being traced (probing calls the loss
    on concrete tensors)."""
    return backends.current().eager()


def _loss_weights(model):
    """compile()'s loss_weights, read from its config (None when unreadable)."""
    try:
        return (model.get_compile_config() or {}).get("loss_weights")
    except Exception as error:  # noqa: BLE001 - e.g. a functools.partial loss
        logger.info(
            "lossguard cannot read the compile config (%s: %s); it takes every "
            "loss_weight as 1.",
            type(error).__name__,
            error,
        )
        return None


def _loss_family(loss, shape, activation=None) -> dict:
    """The loss's family and settings: by name for Keras' and lossguard's own
    losses, else by probing how it behaves (`lossguard.diagnosis.probe`)."""
    if loss is None:
        return {"kind": "none", "floor": "unknown", "floor_how": "no compiled loss"}
    name = name_key(_loss_name(loss))
    kind = _own_kind(loss, name)
    if kind is not None:
        below = kind == LossKind.UNBOUNDED
        return {
            "kind": kind,
            "from_logits": bool(_loss_setting(loss, "from_logits", False)),
            "label_smoothing": float(_loss_setting(loss, "label_smoothing", 0.0) or 0),
            "ignore_class": _loss_setting(loss, "ignore_class", None),
            "clip": _lossguard_clip(loss),
            "floor": "below" if below else "zero",
            "floor_how": UNBOUNDED_RANGES.get(name, "") if below else "",
        }
    from lossguard.diagnosis.probe import identify

    identity = identify(loss, shape, activation)
    if identity.kind == LossKind.OTHER:
        logger.info(
            "lossguard cannot tell what the loss %r is (%s): it checks weights, "
            "extra terms, non-finite values and negative batch losses, but not "
            "labels or predictions against a family.",
            _loss_name(loss),
            identity.how,
        )
    return {
        "kind": identity.kind,
        "from_logits": identity.from_logits,
        "label_smoothing": identity.label_smoothing,
        "ignore_class": identity.ignored_id,
        "identified": identity.how,
        "clip": identity.clip,
        "floor": identity.floor,
        "floor_how": identity.floor_how,
    }


def clip_ceiling() -> float:
    """-log(epsilon): the most one token can cost in Keras' clipped CE."""
    return -math.log(keras.config.epsilon())
