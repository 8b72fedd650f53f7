"""Cross-entropies that never silently produce an impossible value.

Three families, each dense and sparse, each a function plus a
`keras.losses.Loss` subclass with the same positional arguments as Keras' own
(new arguments are keyword-only):

* **stable**: Keras' cross-entropy, computed in float32 whatever the input
  dtype, from log-softmax for logits, and from probabilities with an `epsilon`
  clamp whose gradient passes through, so a confident wrong prediction still
  costs `-log(epsilon)` and still teaches.
* **clipped**: the per-token stable loss clipped into `[min_loss, max_loss]`;
  the class counts how many tokens it clipped, because clipping hides
  symptoms.
* **bounded**: the generalised cross-entropy `(1 - p_y^q) / q` of Zhang &
  Sabuncu (NeurIPS 2018), in `[0, 1/q]` for valid labels.
"""

from __future__ import annotations

from lossguard.losses.bounded import (
    BoundedCategoricalCrossentropy,
    BoundedSparseCategoricalCrossentropy,
    bounded_categorical_crossentropy,
    bounded_sparse_categorical_crossentropy,
)
from lossguard.losses.clipped import (
    ClippedCategoricalCrossentropy,
    ClippedSparseCategoricalCrossentropy,
    clipped_categorical_crossentropy,
    clipped_sparse_categorical_crossentropy,
)
from lossguard.losses.stable import (
    StableCategoricalCrossentropy,
    StableSparseCategoricalCrossentropy,
    stable_categorical_crossentropy,
    stable_crossentropy,
    stable_sparse_categorical_crossentropy,
)

__all__ = [
    "BoundedCategoricalCrossentropy",
    "BoundedSparseCategoricalCrossentropy",
    "ClippedCategoricalCrossentropy",
    "ClippedSparseCategoricalCrossentropy",
    "StableCategoricalCrossentropy",
    "StableSparseCategoricalCrossentropy",
    "bounded_categorical_crossentropy",
    "bounded_sparse_categorical_crossentropy",
    "clipped_categorical_crossentropy",
    "clipped_sparse_categorical_crossentropy",
    "stable_categorical_crossentropy",
    "stable_crossentropy",
    "stable_sparse_categorical_crossentropy",
]
