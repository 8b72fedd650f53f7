"""`EmbeddingDriftMonitor`: how far fine-tuned embeddings move, per epoch."""

from __future__ import annotations

import logging

import keras
import numpy as np

from lossguard.callbacks.base import FindingsCallback
from lossguard.diagnosis.embedding_math import drift, embedding_layers, embedding_rows
from lossguard.diagnosis.faults import check_epoch

logger = logging.getLogger("lossguard")


class EmbeddingDriftMonitor(FindingsCallback):
    """Records how far fine-tuned embeddings move from their pre-trained rows.

    After every epoch it compares each watched row with its value when
    training began (or `original`): the mean and minimum cosine similarity,
    and the share of rows that moved (cosine below `1 - moved`). All-zero
    original rows (padding, OOV) are left out. When the mean cosine falls below
    `threshold` it reports `EMBEDDING_DRIFT` (severity info) once.

    Args:
        layer: The `Embedding` layer or its name; default: the model's only
            trainable `Embedding`.
        original: The pre-trained matrix; default: the rows when `fit` begins.
        threshold: Mean cosine below which drift is reported.
        moved: A row "moved" when its cosine to the original is below
            `1 - moved`.
        action: `"warn"` (one `LossSanityWarning`), `"stop"` (also stop
            training) or `"record"`.

    Example:

    >>> monitor = EmbeddingDriftMonitor(threshold=0.8)
    >>> monitor.history.columns.tolist()
    ['epoch', 'mean_cosine', 'min_cosine', 'moved_share', 'rows']
    """

    COLUMNS = ("epoch", "mean_cosine", "min_cosine", "moved_share", "rows")
    ACTIONS = ("warn", "stop", "record")

    def __init__(
        self, layer=None, original=None, *, threshold=0.9, moved=0.01, action="warn"
    ):
        super().__init__(action, warn_from="info", act_from="info")
        if not 0 < threshold <= 1:
            raise ValueError(
                f"`threshold` is a cosine in (0, 1]. Received: threshold={threshold!r}."
            )
        if not 0 < moved < 1:
            raise ValueError(f"`moved` must be in (0, 1). Received: moved={moved!r}.")
        self.layer = layer
        self.original = None if original is None else np.asarray(original, "float32")
        self.threshold = threshold
        self.moved = moved
        self._rows: list[dict] = []
        self._layer = None  # the layer watched in this fit
        self._watched = None  # its rows that had a pre-trained vector

    @property
    def history(self):
        import pandas as pd

        return pd.DataFrame(self._rows, columns=list(self.COLUMNS))

    def _find_layer(self):
        if isinstance(self.layer, keras.layers.Layer):
            return self.layer
        layers = embedding_layers(self.model)
        if isinstance(self.layer, str):
            named = [layer for layer in layers if layer.name == self.layer]
            if not named:
                raise ValueError(
                    f"No Embedding layer named {self.layer!r}; the model has "
                    f"{[layer.name for layer in layers]}."
                )
            return named[0]
        trainable = [layer for layer in layers if layer.trainable]
        if len(trainable) != 1:
            raise ValueError(
                f"The model has {len(trainable)} trainable Embedding layers "
                f"({[layer.name for layer in trainable]}); pass layer=... to "
                "choose the one to watch."
            )
        return trainable[0]

    def on_train_begin(self, logs=None):
        """Find the layer to watch; what does not fit the model is said once
        (a `LossSanityWarning`) and the monitor then watches nothing: it never
        stops the user's training for its own arguments."""
        self._layer = None
        try:
            layer = self._find_layer()
            start = embedding_rows(layer)
            if self.original is None:
                self.original = start.copy()
            if self.original.shape != start.shape:
                raise ValueError(
                    f"`original` has shape {self.original.shape} but layer "
                    f"'{layer.name}' has {start.shape}."
                )
        except ValueError as error:
            self._warn(f"EmbeddingDriftMonitor watches nothing in this fit: {error}")
            return
        self._layer = layer
        self._watched = np.flatnonzero(np.any(self.original != 0, axis=1))
        if not self._layer.trainable:
            logger.info(
                "EmbeddingDriftMonitor: layer '%s' is frozen; it cannot drift.",
                self._layer.name,
            )

    def on_epoch_end(self, epoch, logs=None):
        if self._layer is None:
            return
        rows = embedding_rows(self._layer)[self._watched]
        row = drift(rows, self.original[self._watched], self.moved)
        if row is None:
            return
        self._rows.append({"epoch": epoch, **row})
        for finding in check_epoch(self._layer.name, row, self.threshold, epoch):
            self._add(finding)
