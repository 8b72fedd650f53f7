"""Keras callbacks: `LossSanityCallback`, `EmbeddingDriftMonitor`."""

from lossguard.callbacks.embedding_drift import EmbeddingDriftMonitor
from lossguard.callbacks.loss_sanity import LossSanityCallback

__all__ = ["EmbeddingDriftMonitor", "LossSanityCallback"]
