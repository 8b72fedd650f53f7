"""The step ledger: which steps ran, which were read, and when to read next.

Plain Python (no Keras, no tensors): the callback tells it what its hooks
saw, and it answers when a block of rows is due and which rows of a read
buffer are new. It holds every counter the callback's reading depends on,
per phase ("train", "validation"):

- `rows`: the rows recorded into the history (the next row's step number);
- `hooks`: the batch-end hooks Keras ran (one per step-function call);
- `pending`: steps counted by end hooks since the last read;
- `unread`, `open_phase`: where the hooks lag the steps (JAX, PyTorch), the
  steps the begin hooks saw begin since the last read, and the phase whose
  step the last begin hook opened;
- `seen`: the step number of the last row read (numbers count every step
  the model ran in this callback's watch, across fits);
- `expected`: the step number the hooks so far account for (a read in the
  middle of a phase takes rows up to it: on JAX and PyTorch the next step
  may already have written its row when a hook runs in a thread);
- `running`: Keras' running-mean loss of each end hook, for the history;
- `blind`: phases lossguard cannot see, with the reason;
- `begun`: the batch index of the last begin hook (a crash's batch);
- `train_rows`: training rows recorded (the global step of the history).

How often to read: `check_every` steps, or ("auto") about every
`READ_EVERY_S` of training, measured from the reads themselves.
"""

from __future__ import annotations

import math

import numpy as np

PHASES = ("train", "validation")
#: With check_every="auto", the buffer is read about this often (seconds of
#: training): the most `action="raise"`/`"stop"` can lag behind a bad batch.
READ_EVERY_S = 0.5


class StepLedger:
    """Counts steps and decides reads; see the module docstring."""

    def __init__(self, check_every="auto"):
        self.check_every = check_every
        self.seen = 0
        self.train_rows = 0
        self.epoch = None
        self.rows = dict.fromkeys(PHASES, 0)
        self.hooks = dict.fromkeys(PHASES, 0)
        self.pending = 0
        self.unread = 0
        self.open_phase = None
        self.expected = 0
        self.running = {phase: [] for phase in PHASES}
        self.last_logs = {phase: {} for phase in PHASES}
        self.blind = {}
        self.begun = dict.fromkeys(PHASES)
        self.every = 1
        self.last_read = None

    # ---------------------------------------------------------- a new run
    def start(self, fit: bool) -> None:
        """`fit` (or `evaluate`) begins: every per-run counter starts over;
        `seen` and `train_rows` go on."""
        self.epoch = 0 if fit else None
        self.rows = dict.fromkeys(PHASES, 0)
        self.hooks = dict.fromkeys(PHASES, 0)
        self.pending = self.unread = 0
        self.open_phase = None
        self.expected = self.seen
        self.running = {phase: [] for phase in PHASES}
        self.last_logs = {phase: {} for phase in PHASES}
        self.blind = {}
        self.begun = dict.fromkeys(PHASES)
        self.every = 1 if self.check_every == "auto" else self.check_every
        self.last_read = None

    def new_history(self) -> None:
        """The history starts over (another model's statistics)."""
        self.train_rows = 0

    def epoch_begins(self, epoch) -> None:
        self.epoch = epoch
        self.rows["train"] = self.hooks["train"] = 0
        self.open_phase = None

    def validation_begins(self) -> None:
        self.rows["validation"] = self.hooks["validation"] = 0
        self.open_phase = None

    def go_blind(self, phase, reason) -> int:
        """`phase` cannot be seen; the rows owed to hooks that already ran."""
        self.blind[phase] = reason
        return self.hooks[phase] - self.rows[phase]

    # -------------------------------------------------------------- hooks
    def begin(self, phase, steps_per_call) -> int:
        """A begin hook where the end hooks lag the steps: counts the
        previous call's steps; returns the steps to read now (0: none due)."""
        if self.open_phase == phase:  # the previous begin's step has run
            self.unread += steps_per_call
        self.open_phase = phase
        if self.unread >= self.every:
            pending, self.unread = self.unread, 0
            return pending
        return 0

    def count(self, phase, logs, steps, running_loss=None) -> bool:
        """An end hook counted `steps` steps; True when a read is due.

        `running_loss`: Keras' running mean at this hook, where the hooks
        report it (None where the step writes it itself)."""
        self.pending += steps
        self.expected += steps
        self.last_logs[phase] = logs or {}
        if running_loss is None:
            return False
        self.running[phase].append(running_loss)
        return self.pending >= self.every

    def take_pending(self, at_end: bool) -> int:
        """The steps counted since the last read (and, at the end of a phase,
        forget the unread begins too)."""
        pending, self.pending = self.pending, 0
        if at_end:
            self.unread = 0
        return pending

    # ------------------------------------------------------------ reading
    def fresh(self, step_numbers, middle: bool, carried: bool):
        """Indices of the buffer's rows not read yet, in step order.

        In the `middle` of a phase only the steps the hooks accounted for
        are taken, unless the read `carried` its own count (begin hooks).
        """
        due = step_numbers > self.seen
        if middle and not carried:
            due &= step_numbers <= self.expected
        fresh = np.flatnonzero(due)
        return fresh[np.argsort(step_numbers[fresh])]

    def read(self, first: int, last: int) -> int:
        """Rows numbered `first`..`last` were read; how many were lost
        before them (more steps ran between reads than the buffer holds)."""
        lost = max(0, first - self.seen - 1)
        self.seen = last
        self.expected = max(self.expected, last)
        return lost

    def skip(self, phase, lost: int) -> None:
        """`lost` steps of `phase` ran but their rows were overwritten: the
        rows after them keep their own step numbers."""
        self.rows[phase] += lost
        if phase == "train":
            self.train_rows += lost

    def adapt(self, steps: int, now: float, limit: int) -> None:
        """check_every="auto": read about every READ_EVERY_S of training,
        at most every `limit` steps."""
        if self.check_every == "auto" and self.last_read is not None and steps:
            per_step = (now - self.last_read) / steps
            self.every = int(min(limit, max(1, READ_EVERY_S / max(per_step, 1e-6))))
        self.last_read = now

    def number(self, phase, n):
        """(step within the phase, global step) of `n` new rows of `phase`;
        the counters move on."""
        steps = self.rows[phase] + np.arange(n)
        self.rows[phase] += n
        before = self.train_rows
        if phase == "train":
            self.train_rows += n
            return steps, before + np.arange(n)
        return steps, np.full(n, before)

    def running_column(self, phase, n, steps_per_call):
        """Keras' running loss of each end hook, on the last row it covered
        (every row, unless steps_per_execution > 1); NaN elsewhere. Every
        call covers `steps_per_call` rows but a phase's last, which may
        cover fewer (its hook's value then sits on the block's last row)."""
        column = np.full(n, np.nan, "float32")
        seen, self.running[phase] = self.running[phase], []
        values = seen[-max(1, -(-n // steps_per_call)) :]  # ceil(n / calls)
        at = np.minimum(n - 1, steps_per_call * np.arange(1, len(values) + 1) - 1)
        column[at] = values
        return column


def logged_loss(logs) -> float:
    """Keras' `logs["loss"]` as a float (NaN where absent or not a number)."""
    value = (logs or {}).get("loss", math.nan)
    if type(value) is float:  # Keras' logs, made Python numbers: every step
        return value
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return math.nan
