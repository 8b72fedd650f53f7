"""Everything that differs between Keras' backends, one module per backend.

lossguard computes the same statistics with `keras.ops` on every backend;
what differs is where they can be kept and how they are read. Each backend
module (`tensorflow`, `jax`, `torch`) answers the same small protocol, and
no module outside this package (and `keras_compat`) asks which backend
runs:

- `name`, `label`: Keras' name for it, and the name a message uses;
- `carries_state`: a variable assigned inside the step comes out of it
  only if it is state Keras carries (JAX's pure train step);
- `hooks_follow_each_step`: the batch hooks run on the loop's thread right
  after their one step (TensorFlow), so counting needs no lock;
- `reads_keras_logits`: Keras' losses read the logits behind its own
  softmax and sigmoid tensors (TensorFlow), which changes what a loss
  computes on them;
- `stops_on_bad_sparse_label`: a sparse label outside [0, K) stops the
  step (TensorFlow, PyTorch) rather than costing 0 (JAX);
- `branch_free_statistics`: compute both sides instead of a conditional
  (PyTorch: eager, a branch costs a device sync and cannot be vmapped);
- `rows_for(model, capacity, width, compute)`: where a step's row goes;
- `write_row(buffer, counter, row, capacity)`: write it, in the step;
- `create_late(model, capacity, width)`, `write_late(late, counter,
  values, capacity)`: a second buffer for what the step knows after its row
  (the gradients), written at that row's slot;
- `gradient_norms(grads)`: each gradient's L2 norm, as a vector;
- `sync(model)`: bring the carried state back to the variables;
- `is_chief(model)`: whether this process writes logs;
- `replicas_in_sync()`, `gather(row)`: the replicas of a distributed step;
- `eager()`: a context that runs eagerly even while a step is traced;
- `strategy_scope(model)`: where new variables must be created;
- `compile_function(fn)`: `fn` compiled for repeated calls, or None.

A new backend is one module here answering these, and a line in `_MODULES`.
"""

from __future__ import annotations

import functools
import importlib

import keras

#: Keras backend name -> this package's module for it.
_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
#: The backends whose train and test steps lossguard watches.
WATCHED = tuple(_MODULES)


@functools.cache
def for_name(name: str):
    """The module for a backend name, or the fallback that watches nothing."""
    module = _MODULES.get(name)
    if module is None:
        return importlib.import_module("lossguard.backends.unwatched")
    return importlib.import_module(f"lossguard.backends.{module}")


def current():
    """The module of the backend Keras runs on."""
    return for_name(name())


def name() -> str:
    """Keras' name for the backend it runs on."""
    return keras.backend.backend()
