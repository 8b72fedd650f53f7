"""Where a watched run's rows and findings go besides the history.

Every sink answers one interface, called by the callback:

- `start(model)`: a run begins (`fit`, or `evaluate` on its own);
- `write_block(block)`: a block of rows was recorded (`Block`);
- `finding(finding, report, step)`: a new finding, first seen at global
  training step `step` (`report`: every finding so far);
- `flush()`: an epoch ended;
- `end(report)`: the run ended (or `action="raise"` ends it).

A new sink is one class here and one argument of `LossSanityCallback`. A
sink's failure never reaches the user's training: the callback says so once
and drops the sink (`Sinks`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Block:
    """Rows of one phase, just recorded: statistics (rows x keys), their
    step within the phase and their global training step."""

    rows: np.ndarray
    keys: list
    phase: str
    steps: np.ndarray
    global_steps: np.ndarray


class Sink:
    """The interface, doing nothing: subclasses answer what they need."""

    def start(self, model) -> None:
        """A run begins."""

    def write_block(self, block: Block) -> None:
        """A block of rows was recorded."""

    def finding(self, finding, report, step) -> None:
        """A new finding, first seen at global step `step`."""

    def flush(self) -> None:
        """An epoch ended: write out what is buffered."""

    def end(self, report) -> None:
        """The run ended."""


class LogFile(Sink):
    """The history as a `.csv` (appended, every `flush_every` rows and every
    epoch) or `.parquet` (rewritten) file; only the chief process writes.

    `frame(start)` is the history from row `start` as a DataFrame, `total()`
    the rows recorded, `trim(written)` drops written rows from memory, and
    `is_chief(model)` says whether this process writes.
    """

    def __init__(self, path, flush_every, frame, total, trim, is_chief):
        self.path = path
        self.flush_every = flush_every
        self.frame, self.total, self.trim = frame, total, trim
        self.is_chief = is_chief
        self.written = 0
        self.model = None

    def start(self, model):
        self.model = model

    def restart(self):
        """The history started over: the file does too."""
        self.written = 0

    def write_block(self, block):
        if self.total() - self.written >= self.flush_every:
            self.flush()

    def flush(self):
        total = self.total()
        if self.written == total:
            return
        if self.model is not None and not self.is_chief(self.model):
            self.written = total  # the chief writes the log
            self.trim(self.written)
            return
        if self.path.endswith(".parquet"):
            self.frame(0).to_parquet(self.path, index=False)
        else:
            self.frame(self.written).to_csv(
                self.path,
                mode="a" if self.written else "w",
                header=self.written == 0,
                index=False,
            )
        self.written = total
        self.trim(self.written)

    def end(self, report):
        self.flush()


class TensorBoard(Sink):
    """Every numeric statistic as a scalar (`lossguard/<key>`, validation
    rows under `lossguard/validation/`) at its global step, and each finding
    as text (`lossguard/findings`) where it was first seen; chief only, the
    writer made on first use."""

    def __init__(self, folder, is_chief):
        self.folder = folder
        self.is_chief = is_chief
        self.model = None
        self.writer = None

    def start(self, model):
        self.model = model

    def _writer(self):
        if self.model is None or not self.is_chief(self.model):
            return None
        if self.writer is None:
            import tensorflow as tf

            self.writer = tf.summary.create_file_writer(self.folder)
        return self.writer

    def write_block(self, block):
        writer = self._writer()
        if writer is None:
            return
        import tensorflow as tf

        tag = "lossguard" if block.phase == "train" else "lossguard/validation"
        for values, step in zip(block.rows, block.global_steps, strict=True):
            with writer.as_default(step=int(step)):
                for key, value in zip(block.keys, values, strict=True):
                    if math.isfinite(value):
                        tf.summary.scalar(f"{tag}/{key}", float(value))

    def finding(self, finding, report, step):
        writer = self._writer()
        if writer is None:
            return
        import tensorflow as tf

        with writer.as_default(step=int(step)):
            tf.summary.text(
                "lossguard/findings",
                f"**{finding.code}** ({finding.severity}): "
                f"{finding.message}\n\nWhy: {finding.explanation}\n\n"
                f"Fix: {finding.fix}",
            )
        writer.flush()

    def flush(self):
        if self.writer is not None:
            self.writer.flush()

    def end(self, report):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Sinks:
    """The callback's sinks, called together; one that fails is said once
    (`warn`) and dropped, and training goes on."""

    def __init__(self, sinks, warn):
        self.sinks = list(sinks)
        self.warn = warn

    def call(self, what, *args):
        for sink in list(self.sinks):
            try:
                getattr(sink, what)(*args)
            except Exception as error:  # noqa: BLE001 - never break the user's fit
                self.sinks.remove(sink)
                self.warn(
                    f"lossguard stopped writing to {type(sink).__name__} "
                    f"({type(error).__name__}: {error}); it watches the "
                    "training as before."
                )

    def find(self, kind):
        return next((s for s in self.sinks if isinstance(s, kind)), None)
