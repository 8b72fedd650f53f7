"""What Keras keeps per backend and exports no public accessor for.

Two things, each read here and nowhere else (one place to change if Keras
moves them; checked up to Keras 3.15):

Masks. Keras 3 attaches a mask to a tensor as its `_keras_mask` attribute where the
tensor type allows it (TensorFlow, PyTorch), and, where it does not (JAX
arrays and tracers), in a table of its global state keyed by the tensor. Its
own `Loss.__call__` reads both through `keras.src.backend.get_keras_mask`;
Keras exports no public accessor, so lossguard uses that function where it
exists and the attribute otherwise.

Extra loss terms by layer, and whether a model can have any. Inside a JAX
train step, `add_loss` collects the terms in the stateless scope (the
model's `losses` lists them all) and each layer remembers only their ids;
its own `losses` is empty there. Which layers a model holds at any depth
is Keras' own `_flatten_layers`.
"""

from __future__ import annotations

try:  # Keras 3: the function its own losses use
    from keras.src.backend.common.masking import (
        get_keras_mask as _get,
    )
    from keras.src.backend.common.masking import (
        set_keras_mask as _set,
    )
except ImportError:  # pragma: no cover - older or reorganised Keras
    _get = _set = None


def get_mask(x):
    """The Keras mask of `x`, or None."""
    if _get is not None:
        return _get(x)
    return getattr(x, "_keras_mask", None)


def set_mask(x, mask):
    """Attach `mask` to `x` as Keras would (so its losses and metrics see it)."""
    if _set is not None:
        _set(x, mask)
    else:
        x._keras_mask = mask
    return x


def layer_losses(layer, model_losses):
    """The extra loss terms `layer` added in this step (any backend)."""
    own = list(layer.losses)
    if own:
        return own
    ids = getattr(layer, "_loss_ids", None)  # JAX: added in a stateless scope
    if not ids:
        return []
    return [term for term in model_losses if id(term) in ids]


def never_adds_losses(model) -> bool:
    """True when `model.losses` is empty on every step by construction:
    every layer in it (the model included, at any depth) is Keras' own with
    no activity regulariser, and no weight has a regulariser. Keras' own
    layers add a loss only through an activity regulariser; any other
    layer may call `add_loss`. False when it cannot tell (Keras exports no
    walk over the nested layers; `_flatten_layers` is its own)."""
    walk = getattr(model, "_flatten_layers", None)
    if walk is None:
        return False
    try:
        layers = list(walk(include_self=True, recursive=True))
        weights = list(model.weights)
    except Exception:  # noqa: BLE001 - cannot tell
        return False
    return all(
        type(layer).__module__.startswith("keras.")
        and getattr(layer, "activity_regularizer", None) is None
        for layer in layers
    ) and all(getattr(w, "regularizer", None) is None for w in weights)
