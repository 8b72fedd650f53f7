"""What a compiled model promises about each output: loss kind and settings."""

from __future__ import annotations

import dataclasses
import math

import keras

# Loss names (lower-case, function or class) -> the family lossguard checks.
_KINDS = {
    "categorical": (
        "categorical_crossentropy",
        "categoricalcrossentropy",
        "categorical_focal_crossentropy",
        "categoricalfocalcrossentropy",
        "stable_categorical_crossentropy",
        "stablecategoricalcrossentropy",
        "clipped_categorical_crossentropy",
        "clippedcategoricalcrossentropy",
        "bounded_categorical_crossentropy",
        "boundedcategoricalcrossentropy",
    ),
    "sparse": (
        "sparse_categorical_crossentropy",
        "sparsecategoricalcrossentropy",
        "stable_sparse_categorical_crossentropy",
        "stablesparsecategoricalcrossentropy",
        "clipped_sparse_categorical_crossentropy",
        "clippedsparsecategoricalcrossentropy",
        "bounded_sparse_categorical_crossentropy",
        "boundedsparsecategoricalcrossentropy",
    ),
    "binary": (
        "binary_crossentropy",
        "binarycrossentropy",
        "binary_focal_crossentropy",
        "binaryfocalcrossentropy",
        "dice",
    ),
    "kl": ("kl_divergence", "kldivergence", "kld"),
    "unbounded": (
        "cosine_similarity",
        "cosinesimilarity",
        "poisson",
    ),
}
_KIND_OF = {name: kind for kind, names in _KINDS.items() for name in names}

# The known range of the losses that are negative by design.
UNBOUNDED_RANGES = {
    "cosine_similarity": "[-1, 1] (best = -1)",
    "cosinesimilarity": "[-1, 1] (best = -1)",
    "poisson": "unbounded below (Keras drops the log(y!) term)",
}


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    """One model output, its compiled loss and its output layer."""

    name: str
    loss_name: str
    kind: str  # categorical | sparse | binary | kl | unbounded | other | none
    from_logits: bool = False
    label_smoothing: float = 0.0
    ignore_class: int | None = None
    loss_weight: float = 1.0
    activation: str | None = None
    units: int | None = None
    dtype: str = "float32"

    @property
    def expects_probabilities(self) -> bool:
        return self.kind in ("categorical", "sparse", "kl", "binary") and not (
            self.from_logits
        )

    @property
    def categorical(self) -> bool:
        return self.kind in ("categorical", "sparse")


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
    if cls in ("softmax", "sigmoid"):
        return cls
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    return getattr(act, "__name__", str(act))


def _per_output(value, names, what):
    """Spread a compile() argument (single, list or dict) over output names."""
    if isinstance(value, dict):
        return [value.get(n) for n in names]
    if isinstance(value, list | tuple):
        if len(value) != len(names):
            raise ValueError(
                f"`{what}` has {len(value)} entries for {len(names)} outputs "
                f"{names}. Pass one per output."
            )
        return list(value)
    return [value] * len(names)


def _kind_from_name(name, loss) -> str:
    """A custom loss named like a cross-entropy (e.g. a wrapper that clips it)
    is checked as one: its labels must be distributions or ids all the same."""
    if loss is None:
        return "none"
    low = name.lower()
    if not any(word in low for word in ("crossentropy", "cross_entropy")):
        return "other"
    if "binary" in low:
        return "binary"
    return "sparse" if "sparse" in low else "categorical"


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


def output_specs(model) -> list[OutputSpec]:
    """One `OutputSpec` per model output, from the compile configuration."""
    names = list(getattr(model, "output_names", None) or ["output"])
    layers = output_layers(model) or [None] * len(names)
    if len(layers) != len(names):
        layers = [None] * len(names)
    losses = _per_output(getattr(model, "loss", None), names, "loss")
    config = {}
    try:
        config = model.get_compile_config() or {}
    except (AttributeError, NotImplementedError):
        config = {}
    weights = _per_output(config.get("loss_weights"), names, "loss_weights")
    outputs = list(getattr(model, "outputs", None) or [])
    specs = []
    for i, name in enumerate(names):
        loss = losses[i]
        loss_name = _loss_name(loss)
        kind = _KIND_OF.get(loss_name.lower()) or _kind_from_name(loss_name, loss)
        tensor = outputs[i] if i < len(outputs) else None
        shape = tuple(tensor.shape) if tensor is not None else ()
        weight = weights[i]
        specs.append(
            OutputSpec(
                name=name,
                loss_name=loss_name,
                kind=kind,
                from_logits=bool(_loss_setting(loss, "from_logits", False)),
                label_smoothing=float(_loss_setting(loss, "label_smoothing", 0.0) or 0),
                ignore_class=_loss_setting(loss, "ignore_class", None),
                loss_weight=1.0 if weight is None else float(weight),
                activation=_activation_name(layers[i]),
                units=shape[-1] if shape else None,
                dtype=keras.backend.standardize_dtype(
                    getattr(tensor, "dtype", "float32")
                ),
            )
        )
    return specs


def clip_ceiling() -> float:
    """-log(epsilon): the most one token can cost in Keras' clipped CE."""
    return -math.log(keras.config.epsilon())
