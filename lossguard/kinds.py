"""Loss families: what a loss takes its labels and predictions to be.

Every check of a family applies to every loss of that family, whatever its
name: Keras' own losses are known by name (`lossguard.diagnosis.specs`),
lossguard's declare their family (`loss_kind` on each class and function),
and any other loss is known by how it behaves (`lossguard.diagnosis.probe`).
This module imports nothing, so the losses can declare their kind without
importing the diagnosis.
"""

from __future__ import annotations

from enum import Enum


class LossKind(str, Enum):
    """A loss family. Compares equal to its value (`LossKind.SPARSE == "sparse"`)."""

    #: Cross-entropy over one-hot (or soft) label rows: -sum(y log p).
    CATEGORICAL = "categorical"
    #: Cross-entropy over class ids: -log p[y].
    SPARSE = "sparse"
    #: Binary cross-entropy, Dice: targets in [0, 1], each unit on its own.
    BINARY = "binary"
    #: KL divergence: label rows are distributions, the loss is 0 at y = p.
    KL = "kl"
    #: Negative by design (cosine similarity, Poisson, a density's NLL).
    UNBOUNDED = "unbounded"
    #: A loss no family fits.
    OTHER = "other"
    #: No loss on this output (a model that adds its loss with add_loss).
    NONE = "none"

    def __str__(self) -> str:
        return self.value


#: The families whose predictions are probabilities (unless from logits).
PROBABILISTIC = frozenset(
    {LossKind.CATEGORICAL, LossKind.SPARSE, LossKind.KL, LossKind.BINARY}
)
