"""Keras callbacks: `LossSanityCallback`, `EmbeddingDriftMonitor`."""

from lossguard.callbacks.loss_sanity import LossSanityCallback

__all__ = ["LossSanityCallback"]
