"""`EmbeddingDriftMonitor`: how far fine-tuned embeddings move, per epoch."""

from __future__ import annotations

import logging
import warnings

import keras
import numpy as np

from lossguard.diagnosis.embeddings import _cosines, _rows, embedding_layers
from lossguard.diagnosis.findings import Code, Finding, LossSanityWarning, Report

logger = logging.getLogger("lossguard")


class EmbeddingDriftMonitor(keras.callbacks.Callback):
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

    def __init__(
        self, layer=None, original=None, *, threshold=0.9, moved=0.01, action="warn"
    ):
        super().__init__()
        if not 0 < threshold <= 1:
            raise ValueError(
                f"`threshold` is a cosine in (0, 1]. Received: threshold={threshold!r}."
            )
        if not 0 < moved < 1:
            raise ValueError(f"`moved` must be in (0, 1). Received: moved={moved!r}.")
        if action not in ("warn", "stop", "record"):
            raise ValueError(
                "`action` must be 'warn', 'stop' or 'record'. "
                f"Received: action={action!r}."
            )
        self.layer = layer
        self.original = None if original is None else np.asarray(original, "float32")
        self.threshold = threshold
        self.moved = moved
        self.action = action
        self.findings: list[Finding] = []
        self._rows: list[dict] = []

    @property
    def report(self) -> Report:
        return Report(self.findings)

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
        self._layer = self._find_layer()
        start = _rows(self._layer)
        if self.original is None:
            self.original = start.copy()
        if self.original.shape != start.shape:
            raise ValueError(
                f"`original` has shape {self.original.shape} but layer "
                f"'{self._layer.name}' has {start.shape}."
            )
        self._watched = np.flatnonzero(np.any(self.original != 0, axis=1))
        if not self._layer.trainable:
            logger.info(
                "EmbeddingDriftMonitor: layer '%s' is frozen; it cannot drift.",
                self._layer.name,
            )

    def on_epoch_end(self, epoch, logs=None):
        rows = _rows(self._layer)[self._watched]
        cos = _cosines(rows, self.original[self._watched])
        if cos.size == 0:
            return
        row = {
            "epoch": epoch,
            "mean_cosine": float(cos.mean()),
            "min_cosine": float(cos.min()),
            "moved_share": float(np.mean(cos < 1 - self.moved)),
            "rows": int(cos.size),
        }
        self._rows.append(row)
        if row["mean_cosine"] < self.threshold and not self.findings:
            self._report(row, epoch)

    def _report(self, row, epoch):
        finding = Finding(
            Code.EMBEDDING_DRIFT,
            "info",
            f"After epoch {epoch} the fine-tuned rows of '{self._layer.name}' "
            f"have a mean cosine of {row['mean_cosine']:.3f} to their pre-trained "
            f"values (min {row['min_cosine']:.3f}); {row['moved_share']:.1%} of "
            f"{row['rows']} rows moved.",
            "Fine-tuning moves only the rows of words in the training data, and a "
            "small data set can pull them far from the geometry the vectors "
            "learned on billions of tokens: the model then over-fits and words "
            "it saw rarely drift away from the unseen words they were close to.",
            "Train with the embedding frozen first, then fine-tune with a lower "
            "learning rate (or fewer epochs); or keep it frozen.",
            {
                "layer": self._layer.name,
                "threshold": self.threshold,
                **{k: row[k] for k in ("mean_cosine", "min_cosine", "moved_share")},
            },
            epoch=epoch,
        )
        self.findings.append(finding)
        logger.info("%s", finding)
        if self.action in ("warn", "stop"):
            warnings.warn(str(finding), LossSanityWarning, stacklevel=2)
        if self.action == "stop":
            self.model.stop_training = True
