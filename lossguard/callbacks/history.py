"""The callback's history as typed columns: bounded memory at any run length.

One float32 matrix row per batch (the packed statistics, as the train step
wrote them) plus small typed columns (epoch, step, phase, Keras' running
loss), grown in chunks; findings are kept only for the batches that show
any. A single-output model costs about 170 bytes a batch
(`benchmarks/bench_memory.py` measures it), instead of a dict of Python
floats. `keep` bounds the rows held in memory (the log file has them all).
"""

from __future__ import annotations

import numpy as np

PHASES = ("train", "validation")
#: The history's first columns (SPEC); the model-level statistics follow.
LEADING = ("epoch", "step", "phase", "loss", "data_loss", "aux_loss", "running_loss")
#: Rows allocated at once.
CHUNK = 1024


class History:
    """Append-only columns of batch statistics; `frame()` makes the DataFrame."""

    def __init__(self, keys, keep=None):
        self.keys = list(keys)
        self.keep = keep
        self._stats: list[np.ndarray] = []  # chunks of (CHUNK, len(keys)) float32
        self._meta: list[np.ndarray] = []  # chunks of the structured meta columns
        self._filled = 0  # rows in the last chunk
        self.dropped = 0  # rows left out of memory (keep=)
        self.findings: dict[int, str] = {}  # row number -> "CODE;CODE"

    _META = np.dtype(
        [
            ("epoch", "int32"),
            ("step", "int32"),
            ("phase", "int8"),
            ("running_loss", "float32"),
            ("global_step", "int32"),
        ]
    )

    def __len__(self) -> int:
        """Rows held in memory."""
        return (
            max(0, (len(self._stats) - 1) * CHUNK + self._filled) if self._stats else 0
        )

    @property
    def total(self) -> int:
        """Rows recorded, held or not."""
        return self.dropped + len(self)

    def append(self, stats, epoch, steps, phase, running, global_steps) -> range:
        """Append a block of rows; returns their row numbers."""
        stats = np.asarray(stats, dtype="float32").reshape(-1, len(self.keys))
        m = len(stats)
        first = self.total
        done = 0
        while done < m:
            if not self._stats or self._filled == CHUNK:
                self._stats.append(np.empty((CHUNK, len(self.keys)), "float32"))
                self._meta.append(np.empty(CHUNK, self._META))
                self._filled = 0
            take = min(CHUNK - self._filled, m - done)
            at = slice(self._filled, self._filled + take)
            self._stats[-1][at] = stats[done : done + take]
            meta = self._meta[-1][at]
            meta["epoch"] = -1 if epoch is None else epoch
            meta["step"] = np.asarray(steps)[done : done + take]
            meta["phase"] = PHASES.index(phase)
            meta["running_loss"] = np.asarray(running)[done : done + take]
            meta["global_step"] = np.asarray(global_steps)[done : done + take]
            self._filled += take
            done += take
        return range(first, first + m)

    def trim(self, written):
        """Drop whole chunks of rows already `written` to the log while the
        rest still holds `keep` rows."""
        if self.keep is None:
            return
        while (
            len(self._stats) > 1
            and len(self) - CHUNK >= self.keep
            and self.dropped + CHUNK <= written
        ):
            self._stats.pop(0)
            self._meta.pop(0)
            self.dropped += CHUNK
        first = self.dropped
        self.findings = {k: v for k, v in self.findings.items() if k >= first}

    def columns(self, start=0):
        """(stats matrix, meta array) of the rows from row number `start`."""
        if not self._stats:
            return np.empty((0, len(self.keys)), "float32"), np.empty(0, self._META)
        # Only the chunks that hold rows from `start`: a flush every few
        # hundred rows must not copy the whole history each time.
        skip = max(0, start - self.dropped)
        first = min(skip // CHUNK, len(self._stats) - 1)
        stats = np.concatenate(self._stats[first:])[: len(self) - first * CHUNK]
        meta = np.concatenate(self._meta[first:])[: len(self) - first * CHUNK]
        skip -= first * CHUNK
        return stats[skip:], meta[skip:]

    def frame(self, leading, extra=None, start=None):
        """The rows from row number `start` as a DataFrame, `leading` columns
        first.

        `extra` adds constant columns (e.g. each output's dtype). Epochs of
        `model.evaluate` outside `fit` are NaN. `start=None` is the user's
        view: every row, or with `keep` the last `keep` (memory holds whole
        chunks, the view what was asked for); a number (the log file's) is
        every row from there still in memory.
        """
        import pandas as pd

        if start is None:
            start = 0 if self.keep is None else max(0, self.total - self.keep)
        stats, meta = self.columns(start)
        first = max(start, self.dropped)
        data = {
            "epoch": np.where(meta["epoch"] < 0, np.nan, meta["epoch"]),
            "step": meta["step"],
            "phase": np.asarray(PHASES, dtype=object)[meta["phase"]],
            "running_loss": meta["running_loss"],
            "global_step": meta["global_step"],
        }
        data.update({key: stats[:, i] for i, key in enumerate(self.keys)})
        frame = pd.DataFrame(data)
        if frame.epoch.notna().all():
            frame["epoch"] = frame.epoch.astype("int64")
        for key, value in (extra or {}).items():
            frame[key] = value
        frame["findings"] = [
            self.findings.get(row, "") for row in range(first, first + len(frame))
        ]
        lead = [c for c in leading if c in frame.columns]
        frame = frame[lead + [c for c in frame.columns if c not in lead]]
        frame.index = pd.RangeIndex(first, first + len(frame))
        frame.attrs["partial"] = first > 0
        frame.attrs["rows_dropped"] = first
        return frame


def model_frame(store, specs, single, model_columns, start=None):
    """The callback's history from row `start` (None: the user's view; an
    empty frame before any row):
    `store`'s frame with each output's dtype, `LEADING` columns first, then
    the model-level statistics, `model_columns` (statistic -> how several
    outputs combine: min or max), in their order."""
    import pandas as pd

    leading = (*LEADING, *model_columns)
    if store is None:
        return pd.DataFrame(columns=list(leading))
    prefix = "" if single else "{}/"
    dtypes = {prefix.format(s.name) + "pred_dtype": s.dtype for s in specs}
    frame = store.frame(leading, dtypes, start=start)
    if not single:
        for key, how in model_columns.items():
            values = frame[[f"{s.name}/{key}" for s in specs]]
            frame[key] = values.min(axis=1) if how == "min" else values.max(axis=1)
        lead = [c for c in leading if c in frame.columns]
        frame = frame[lead + [c for c in frame.columns if c not in lead]]
    return frame
