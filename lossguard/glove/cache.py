"""The binary cache: a parsed text file's matrix, mapped on reload.

The copy is keyed on the source's absolute path, size and modification
time, so an edited file is parsed again; a writer killed half-way leaves
nothing that loads; a folder that cannot be written means no cache, said in
one INFO log line.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import time

import numpy as np
import pandas as pd

from .text import log_skipped
from .vectors import GloveVectors

#: The folder `load_glove(..., cache=True)` makes beside the source file.
CACHE_FOLDER = ".lossguard-cache"

logger = logging.getLogger("lossguard")

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
        log_skipped(stamp["source"], skipped, line, text)
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


def load_cached(source, member, cache, parse) -> GloveVectors:
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
