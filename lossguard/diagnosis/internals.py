"""Which layers lossguard looks inside, chosen once from the model's structure.

- `relu_layers`: the layers whose output can be exactly 0 for every input
  (a ReLU or ReLU6, as a layer or as another layer's activation). Their
  outputs are read where the forward pass returns them (`ActivationWatch`),
  for `DEAD_UNITS`; no other layer's output is touched.
- `gradient_groups`: the trainable variables grouped by the layer that owns
  them, in the model's order (the first group is nearest the input), for
  the gradient norms of `EXPLODING_GRADIENTS` and `VANISHING_GRADIENTS`.
"""

from __future__ import annotations

import contextlib
import logging

import keras
from keras import ops

from lossguard.diagnosis.statistics import NAN
from lossguard.diagnosis.statistics.internals import (
    DEAD_SHARE,
    MAX_GROUPS,
    SAMPLES,
    dead_share,
    fired_units,
)

logger = logging.getLogger("lossguard")

#: Layers read at most (the first ones, in the model's order).
MAX_RELU_LAYERS = 16
_RELU_NAMES = ("relu", "relu6")


def _layers(model):
    """The model's layers, nested models' layers in their place."""
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def _is_relu(layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        # A negative slope or a threshold above 0 makes units that can fire.
        slope = float(getattr(layer, "negative_slope", 0.0) or 0.0)
        threshold = float(getattr(layer, "threshold", 0.0) or 0.0)
        return slope == 0.0 and threshold == 0.0
    activation = getattr(layer, "activation", None)
    if activation is None or not callable(activation):
        return False
    return getattr(activation, "__name__", None) in _RELU_NAMES


def relu_layers(model) -> list:
    """The ReLU-family layers of `model`, at most `MAX_RELU_LAYERS`."""
    found = [layer for layer in _layers(model) if _is_relu(layer)]
    return found[:MAX_RELU_LAYERS]


def _units_axis(layer) -> int:
    return 1 if getattr(layer, "data_format", None) == "channels_first" else -1


class ActivationWatch:
    """Reads the ReLU-family layers' outputs as the forward pass returns them.

    While installed, each chosen layer's `call` also computes its
    `dead_units` statistics and leaves them in `latest` (tensors of the
    step being traced or run); `values()` gives them as row entries. A
    statistic that cannot be computed is NaN: the layer's output is returned
    untouched whatever happens.
    """

    def __init__(self, model):
        self.layers = [] if model is None else relu_layers(model)
        self.keys = []
        for layer in self.layers:
            self.keys += [DEAD_SHARE.name + layer.name, SAMPLES.name + layer.name]
        self.latest = {}
        self._originals = {}

    @contextlib.contextmanager
    def installed(self):
        """Installed for the duration of a `with` block."""
        self.install()
        try:
            yield self
        finally:
            self.uninstall()

    def install(self):
        for layer in self.layers:
            if layer.name in self._originals:
                continue
            had_own = "call" in vars(layer)
            self._originals[layer.name] = (layer, had_own, layer.call)
            layer.call = self._watching(layer, layer.call)

    def uninstall(self):
        for layer, had_own, original in self._originals.values():
            if had_own:
                layer.call = original
            else:
                vars(layer).pop("call", None)
        self._originals = {}

    def _watching(self, layer, call):
        axis = _units_axis(layer)

        def watched_call(*args, **kwargs):
            output = call(*args, **kwargs)
            try:
                self.latest[layer.name] = fired_units(output, axis)
            except Exception:  # noqa: BLE001 - a statistic, never the forward pass
                self.latest.pop(layer.name, None)
                logger.debug("lossguard could not read %s", layer.name, exc_info=True)
            return output

        return watched_call

    def take(self):
        """This step's reads (and forget them): a tuple of (units fired,
        samples) pairs, one per layer; None for a layer not read."""
        taken = tuple(self.latest.get(layer.name) for layer in self.layers)
        self.latest = {}
        return taken

    def values(self, taken=None) -> dict:
        """Row entries for `keys` (from `taken`, what `take` returned, or now)."""
        taken = self.take() if taken is None else taken
        nan = ops.convert_to_tensor(NAN)
        values = {}
        for layer, read in zip(self.layers, taken, strict=True):
            share, samples = (nan, nan) if read is None else read
            if read is not None:
                share = dead_share(share)
            values[DEAD_SHARE.name + layer.name] = share
            values[SAMPLES.name + layer.name] = samples
        return values


def unbuilt(model) -> bool:
    """Whether the model or one of its layers has yet to make its variables
    (on TensorFlow, Keras builds such a model inside its first step)."""
    if not getattr(model, "built", True):
        return True
    return any(not getattr(layer, "built", True) for layer in _layers(model))


def layer_groups(model):
    """(group names, layer name -> group) over every layer in the model's
    order, for a model whose variables do not exist yet; more than
    `MAX_GROUPS` layers are merged into contiguous runs."""
    names = list(dict.fromkeys(layer.name for layer in _layers(model)))
    groups, size = _merged(names)
    return groups, {name: i // size for i, name in enumerate(names)}


def _merged(names):
    """(group names, names per group): at most `MAX_GROUPS`, contiguous
    names merged into runs named `first..last` past it."""
    if len(names) <= MAX_GROUPS:
        return list(names), 1
    size = -(-len(names) // MAX_GROUPS)
    groups = [
        f"{names[i]}..{names[min(i + size, len(names)) - 1]}"
        for i in range(0, len(names), size)
    ]
    return groups, size


def owners(model) -> dict:
    """id(variable) -> the name of the layer that owns it."""
    found = {}
    for layer in _layers(model):
        for variable in layer.trainable_weights:
            found.setdefault(id(variable), layer.name)
    return found


def gradient_groups(model):
    """(group names, group index of each trainable variable), groups in the
    model's order; more than `MAX_GROUPS` layers are merged into contiguous
    runs named `first..last`."""
    owner = owners(model)
    names, group_of = [], []
    for variable in model.trainable_variables:
        name = owner.get(id(variable), variable.path.rsplit("/", 1)[0])
        name = name.replace("/", ".")  # "/" separates an output's keys
        if not names or names[-1] != name:
            if name in names:  # a shared layer met again: its first group
                group_of.append(names.index(name))
                continue
            names.append(name)
        group_of.append(len(names) - 1)
    groups, size = _merged(names)
    return groups, [g // size for g in group_of]
