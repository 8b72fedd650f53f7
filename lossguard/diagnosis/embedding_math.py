"""Embedding rows and how far they are from others: the maths behind the
embedding checks and `EmbeddingDriftMonitor`, with no fault of its own."""

from __future__ import annotations

import keras
import numpy as np


def embedding_layers(model) -> list:
    """Every `keras.layers.Embedding` in the model, nested models included."""
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.Embedding):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found += embedding_layers(layer)
    return found


def words_by_id(vocabulary) -> list:
    if isinstance(vocabulary, dict):
        words = [None] * (max(vocabulary.values()) + 1)
        for word, i in vocabulary.items():
            words[i] = word
        return words
    return list(vocabulary)


def embedding_rows(layer_or_matrix) -> np.ndarray:
    """The rows of an `Embedding` layer (or a matrix) as a float32 array.

    A layer not built yet (fresh from `glove_embedding`, before the model
    ran) is read from its `Constant` initializer, which holds the rows it
    will start with; any other unbuilt layer is built first.
    """
    if isinstance(layer_or_matrix, keras.layers.Embedding):
        layer = layer_or_matrix
        if not layer.built:
            start = layer.embeddings_initializer
            shape = (layer.input_dim, layer.output_dim)
            if isinstance(start, keras.initializers.Constant):
                return np.asarray(
                    keras.ops.convert_to_numpy(start(shape=shape)), "float32"
                )
            layer.build()
        return np.asarray(keras.ops.convert_to_numpy(layer.embeddings))
    return np.asarray(layer_or_matrix, dtype="float32")


def cosines(a, b) -> np.ndarray:
    """Row-wise cosine similarity of two matrices."""
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    return np.sum(a * b, axis=-1) / np.maximum(na * nb, 1e-12)


def drift(rows, original, moved) -> dict | None:
    """How far fine-tuned `rows` moved from their `original` values.

    Returns the mean and minimum cosine to the original, the share of rows
    that moved (cosine below `1 - moved`) and the row count; None for no rows.
    """
    cos = cosines(rows, original)
    if cos.size == 0:
        return None
    return {
        "mean_cosine": float(cos.mean()),
        "min_cosine": float(cos.min()),
        "moved_share": float(np.mean(cos < 1 - moved)),
        "rows": int(cos.size),
    }
