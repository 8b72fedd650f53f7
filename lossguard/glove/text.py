"""GloVe text files parsed fast: pandas' C parser in blocks, in parallel byte
ranges, the 840B files' quirks (words with spaces, malformed lines) handled
line by line without leaving that fast path for the rest."""

from __future__ import annotations

import collections
import csv
import io
import logging
import os
import zipfile

import numpy as np
import pandas as pd

from .vectors import compact, vectors_from

logger = logging.getLogger("lossguard")


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


def parse_line(line: bytes, dim: int):
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
        parsed = parse_line(lines[i], dim)
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


def read_text(opener, path=None, threads=None, name=""):
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
        log_skipped(name, skipped, *first)
    if None in words:  # malformed or blank lines: their rows go
        keep = np.fromiter((word is not None for word in words), bool, rows)
        matrix = compact(matrix, keep)
        words = [word for word in words if word is not None]
    return vectors_from(words, matrix, skipped), first


def log_skipped(name, skipped, line, text):
    logger.info(
        "load_glove(%r) skipped %d malformed line(s) (too few fields, or values "
        "that are not numbers), the first at line %d: %r; .skipped counts them.",
        name,
        skipped,
        line,
        text,
    )


class ZipMember(io.RawIOBase):
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
