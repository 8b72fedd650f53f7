"""Words and their vectors: what every loader returns."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd


@dataclasses.dataclass
class GloveVectors:
    """Words (a pandas Index) and their vectors (float32, one row per word).

    `duplicates` counts the later vectors of repeated words (dropped: the
    first is kept); `skipped` counts malformed lines (too few fields, or
    values that are not numbers) that were left out.
    """

    index: pd.Index
    vectors: np.ndarray
    duplicates: int = 0
    skipped: int = 0

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, word) -> bool:
        return word in self.index

    def vector(self, word: str) -> np.ndarray:
        """The word's vector; `KeyError` naming the word if it has none."""
        try:
            return self.vectors[self.index.get_loc(word)]
        except KeyError:
            raise KeyError(
                f"{word!r} has no vector in these {len(self)} words."
            ) from None

    def __repr__(self) -> str:
        return f"<GloveVectors {len(self)} words x {self.dim} dims>"


#: Rows moved at once when rows are dropped in place (bounds the copy).
_MOVE_ROWS = 8_192


def compact(matrix: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """`matrix[keep]` without a second matrix: kept rows move up in place."""
    edges = np.flatnonzero(np.diff(keep.astype(np.int8), prepend=0, append=0))
    to = 0
    for start, stop in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
        if start != to:
            for at in range(start, stop, _MOVE_ROWS):
                end = min(at + _MOVE_ROWS, stop)
                matrix[to + at - start : to + end - start] = matrix[at:end]
        to += stop - start
    if matrix.base is None and matrix.flags.writeable:
        matrix.resize((to, *matrix.shape[1:]), refcheck=False)
        return matrix
    return matrix[:to]


def vectors_from(words, vectors, skipped=0) -> GloveVectors:
    index = pd.Index(words, dtype=object)
    duplicated = index.duplicated(keep="first")
    count = int(duplicated.sum())
    vectors = np.ascontiguousarray(vectors, dtype="float32")
    if count:
        index, vectors = index[~duplicated], compact(vectors, ~duplicated)
    return GloveVectors(index, vectors, count, skipped)
