"""Embedding matrices in a tokenizer's id order, with a coverage report,
and the Keras layer made from them."""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np

from .load import bundled_glove  # noqa: F401 - the examples use it
from .vectors import GloveVectors


@dataclasses.dataclass
class Coverage:
    """How much of a vocabulary the vectors cover."""

    hit_rate: float
    found: int
    total: int
    missing: list
    missing_counts: dict

    def __str__(self) -> str:
        head = ", ".join(map(str, self.missing[:10]))
        return (
            f"{self.found}/{self.total} words have a vector "
            f"({100 * self.hit_rate:.1f}%); missing: {head or '-'}"
        )


def _id_map(vocabulary) -> dict:
    if isinstance(vocabulary, dict):
        return dict(vocabulary)
    return {word: i for i, word in enumerate(vocabulary)}


RESERVED = ("", "[UNK]", "<pad>", "<unk>", "<PAD>", "<UNK>", "<start>", "<end>")


def embedding_matrix(
    vocabulary,
    vectors: GloveVectors,
    *,
    oov="zeros",
    lowercase=False,
    counts=None,
    seed=0,
):
    """Rows in the vocabulary's id order, and a coverage report.

    Args:
        vocabulary: A list of words (id = position, e.g. a `TextVectorization`
            vocabulary with "" at 0 and "[UNK]" at 1) or a word -> id dict.
        vectors: A `GloveVectors`.
        oov: Rows for words without a vector: "zeros", "random" (normal with
            the vectors' std) or "mean" (the mean vector).
        lowercase: Look words up lower-cased, as the 6B vectors were trained.
        counts: Optional word -> frequency, to order the missing words.
        seed: For `oov="random"`.

    Returns:
        `(matrix, coverage)`: a float32 `(max_id + 1, dim)` array and a
        `Coverage`. Reserved tokens ("", "[UNK]", ...) get zero rows and are
        not counted as missing.

    Raises:
        ValueError: On an unknown `oov`.
    """
    if oov not in ("zeros", "random", "mean"):
        raise ValueError(
            f"`oov` must be 'zeros', 'random' or 'mean'. Received: oov={oov!r}."
        )
    ids = _id_map(vocabulary)
    matrix = np.zeros((max(ids.values()) + 1, vectors.dim), "float32")
    fill = _oov_rows(oov, vectors, seed)
    missing = []
    real = {w: i for w, i in ids.items() if w not in RESERVED}
    for word, i in real.items():
        key = word.lower() if lowercase else word
        if key in vectors.index:
            matrix[i] = vectors.vector(key)
        else:
            matrix[i] = fill()
            missing.append(word)
    if counts:
        missing.sort(key=lambda w: -counts.get(w, 0))
    found = len(real) - len(missing)
    coverage = Coverage(
        hit_rate=found / max(len(real), 1),
        found=found,
        total=len(real),
        missing=missing,
        missing_counts={w: counts.get(w, 0) for w in missing} if counts else {},
    )
    return matrix, coverage


def _oov_rows(oov, vectors, seed):
    """A function giving the row of each word without a vector."""
    rng = np.random.default_rng(seed)
    return {
        "zeros": lambda: np.zeros(vectors.dim, "float32"),
        "random": lambda: rng.normal(0, vectors.vectors.std(), vectors.dim),
        "mean": lambda: vectors.vectors.mean(axis=0),
    }[oov]


#: layer -> (vocabulary, GloveVectors, lowercase), recorded by glove_embedding().
_SOURCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def remember_source(layer, vocabulary, vectors, lowercase=False):
    """Record what an embedding layer was built from, for later checks."""
    _SOURCES[layer] = (vocabulary, vectors, lowercase)


def embedding_source(layer):
    """`(vocabulary, vectors, lowercase)` a layer was built from, or None."""
    try:
        return _SOURCES.get(layer)
    except TypeError:  # not weak-referenceable: nothing was recorded
        return None


def glove_embedding(
    vocabulary,
    vectors: GloveVectors,
    trainable=False,
    mask_zero=True,
    name="glove_embedding",
    **matrix_kwargs,
):
    """A Keras `Embedding` initialised with the GloVe rows, the Keras 3 way.

    Keras 3's `Embedding` has no `input_length` or `weights=`; the rows go in
    through a `Constant` initializer, so the layer is ready before it is built.

    Returns:
        `(layer, coverage)`.

    Example:

    >>> layer, coverage = glove_embedding(["", "[UNK]", "the", "city"], bundled_glove())
    >>> layer.input_dim, layer.output_dim, coverage.hit_rate
    (4, 50, 1.0)
    """
    import keras

    matrix, coverage = embedding_matrix(vocabulary, vectors, **matrix_kwargs)
    layer = keras.layers.Embedding(
        matrix.shape[0],
        matrix.shape[1],
        embeddings_initializer=keras.initializers.Constant(matrix),
        trainable=trainable,
        mask_zero=mask_zero,
        name=name,
    )
    remember_source(
        layer, vocabulary, vectors, lowercase=matrix_kwargs.get("lowercase", False)
    )
    return layer, coverage
