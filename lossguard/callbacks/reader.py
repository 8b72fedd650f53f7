"""Reading what the steps wrote: block by block, into the history.

The batch hooks end here: `BlockReader` counts each step in the ledger and,
when a block is due, takes the rows written since the last read out of the
instrumented buffer, keeps the new ones (the ledger says which), numbers
them, appends them to the history, runs the checks over the whole block and
hands the block to the sinks. Where a step never wrote a row (a trainer that
does not call `compute_loss`), it records Keras' running loss alone, and
says once why. It is given what it works with and calls back through plain
functions: it never sees the callback.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import numpy as np

from lossguard.callbacks import state
from lossguard.callbacks.instrument import steps_per_call
from lossguard.callbacks.ledger import PHASES, logged_loss
from lossguard.callbacks.sinks import Block
from lossguard.diagnosis.faults import TREND_ROWS, check_block, check_trend

logger = logging.getLogger("lossguard")


class BlockReader:
    """Reads, records and checks blocks of rows.

    Args:
        instrumenter: The `Instrumenter` whose buffer the steps write.
        ledger: The `StepLedger` counting the steps.
        sinks: The `Sinks` each block goes to.
        warn: Says something to the user once (a `LossSanityWarning`).
        add: `add(findings, global_step)`: records findings of one batch.
        before_block: Called before a block is recorded (the callback checks
            the configuration again once a batch refined the outputs).
        flush_every: Rows between flushes of a log file, or None (a read
            comes at least that often).
    """

    def __init__(
        self, instrumenter, ledger, sinks, warn, add, before_block, flush_every
    ):
        self.instrumenter = instrumenter
        self.ledger = ledger
        self.sinks = sinks
        self.warn = warn
        self.add = add
        self.before_block = before_block
        self.flush_every = flush_every
        self.store = None  # the History the rows go to (set by the callback)
        self.known = frozenset()  # codes the configuration already showed
        self.trends = True  # the checks over many steps run (until one fails)
        # Keras may run the batch hooks in a thread (JAX, PyTorch): they
        # count steps, and read under this lock.
        self.lock = threading.RLock()

    def batch_begin(self, model, batch, phase) -> None:
        """Where the end hooks lag the steps (JAX, PyTorch), a due block is
        read here: the begin hooks run on the loop's thread, between steps,
        so reading cannot race a step."""
        self.ledger.begun[phase] = batch
        if not self.instrumenter.between_steps:
            return
        with self.lock:
            if not self.instrumenter.installed or phase in self.ledger.blind:
                return
            pending = self.ledger.begin(phase, steps_per_call(model))
            if pending:
                self.read(model, self.ledger.last_logs[phase] or {}, phase, pending)

    def batch_end(self, model, logs, phase) -> None:
        """Count the step(s); read when a block is due."""
        ledger = self.ledger
        if self.instrumenter.in_step and phase not in ledger.blind:  # no lock
            ledger.hooks[phase] += 1
            if ledger.count(phase, logs, 1, logged_loss(logs)):
                self.read(model, logs, phase)
            return
        with self.lock:
            ledger.hooks[phase] += 1
            if phase in ledger.blind:
                self.blind_row(logs, phase)
            elif self.instrumenter.installed:
                lagging = self.instrumenter.between_steps
                running = None if lagging else logged_loss(logs)
                if ledger.count(phase, logs, steps_per_call(model), running):
                    self.read(model, logs, phase)

    def read(self, model, logs, phase, carried=0) -> None:
        """Record, as one block, the rows written since the last read.

        `logs` is None at the end of a phase (every row is taken); in the
        middle of one, the rows up to the steps the hooks accounted for, or
        every row where a begin hook counted the steps itself (`carried`).
        """
        ledger = self.ledger
        pending = carried or ledger.take_pending(at_end=logs is None)
        if carried and logs is None:
            ledger.unread = 0
        if not self.instrumenter.installed or (pending == 0 and logs is not None):
            return
        buffer = self.instrumenter.read(model)
        steps = buffer[:, 0]
        fresh = ledger.fresh(steps, middle=logs is not None, carried=carried)
        if fresh.size == 0:
            if pending and logs is not None:
                self.go_blind(model, phase, logs)
            return
        lost = ledger.read(int(steps[fresh[0]]), int(steps[fresh[-1]]))
        if lost:
            # The lost steps ran just before the first row kept (in its phase).
            ledger.skip(PHASES[int(buffer[fresh[0], 1])], lost)
            logger.warning(
                "lossguard lost %d steps' statistics (more steps ran between "
                "reads than capacity=%d holds).",
                lost,
                self.instrumenter.capacity,
            )
        self.before_block()
        self.record(model, buffer[fresh])
        limit = self.instrumenter.rows.read_every_max
        if self.flush_every:  # the log is flushed at reads
            limit = min(limit, self.flush_every)
        ledger.adapt(len(fresh), time.perf_counter(), limit)

    def record(self, model, block) -> None:
        """Append a read block to the history, phase by phase (a block at the
        end of an epoch holds both, in step order), check it, and hand it to
        the sinks."""
        phases = block[:, 1].astype(int)
        values = block[:, len(state.HEADER) :]
        lagging = self.instrumenter.between_steps
        per_call = steps_per_call(model)
        keys = self.instrumenter.collector.keys
        for code in np.unique(phases):
            phase = PHASES[code]
            rows = values[phases == code]
            n = len(rows)
            if lagging:
                running = block[phases == code, 2]
            else:
                running = self.ledger.running_column(phase, n, per_call)
            steps, global_steps = self.ledger.number(phase, n)
            numbers = self.store.append(
                rows, self.ledger.epoch, steps, phase, running, global_steps
            )
            # The trends first: a cause seen over many steps (the gradient
            # norm that grew before the loss became NaN) is then recorded
            # before the batch findings it explains.
            if phase == "train":
                self.say_unseen_gradients(model, rows)
            if phase == "train" and self.trends:
                self.trend()
            self.check(rows, numbers, steps, phase, global_steps)
            self.sinks.call(
                "write_block", Block(rows, keys, phase, steps, global_steps)
            )

    def check(self, rows, numbers, steps, phase, global_steps) -> None:
        """Run the checks over a block; each batch's findings are added with
        the batch they were seen on."""
        keys = self.instrumenter.collector.keys
        columns = {key: rows[:, i] for i, key in enumerate(keys)}
        by_batch = {}
        specs = self.instrumenter.collector.specs
        for i, finding in check_block(columns, specs, known=self.known):
            by_batch.setdefault(i, []).append(finding)
        for i, batch in by_batch.items():
            self.store.findings[numbers[i]] = ";".join(f.code for f in batch)
            where = {"epoch": self.ledger.epoch, "step": int(steps[i]), "phase": phase}
            found = [dataclasses.replace(f, **where) for f in batch]
            self.add(found, int(global_steps[i]))

    def say_unseen_gradients(self, model, rows) -> None:
        """Where the steps wrote no gradient norms, say once why."""
        reason = self.instrumenter.unseen_gradients(model, rows)
        if reason is not None:
            self.warn(
                f"lossguard cannot see this model's gradients: {reason}. It "
                "does not check EXPLODING_GRADIENTS or VANISHING_GRADIENTS "
                "here; everything else it checks as before."
            )

    def trend(self) -> None:
        """Run the trend checks over the last training batches held (a few
        hundred rows, whatever the history's length)."""
        start = max(self.store.dropped, self.store.total - 4 * TREND_ROWS)
        stats, meta = self.store.columns(start)
        train = meta["phase"] == PHASES.index("train")
        stats, meta = stats[train][-TREND_ROWS:], meta[train][-TREND_ROWS:]
        if len(stats) == 0:
            return
        columns = {key: stats[:, i] for i, key in enumerate(self.store.keys)}
        specs = self.instrumenter.collector.specs
        try:
            found = check_trend(columns, specs, meta["step"], meta["epoch"])
        except Exception as error:  # noqa: BLE001 - never break the user's fit
            self.trends = False
            self.warn(
                "lossguard's checks over many training steps failed "
                f"({type(error).__name__}: {error}); it keeps checking each batch."
            )
            return
        if found:
            self.add(found, int(meta["global_step"][-1]))

    def go_blind(self, model, phase, logs) -> None:
        """A step never called compute_loss: say so once per phase."""
        reason = self.instrumenter.blind_reason(model, phase)
        self.warn(
            f"lossguard cannot see the {phase} batches of this model: {reason}. "
            "It records only Keras' running-mean loss "
            "(history['running_loss']), so it cannot check labels, "
            "predictions or weights there."
        )
        # A row for each step whose hook has run and that has none (on JAX
        # the hooks lag: the later ones add theirs as they come).
        owed = self.ledger.go_blind(phase, reason)
        for i in range(owed):
            self.blind_row(logs if i == owed - 1 else None, phase)

    def blind_row(self, logs, phase) -> None:
        """A row with Keras' running loss only, for a batch lossguard cannot see."""
        nan = np.full((1, len(self.store.keys)), np.nan, "float32")
        steps, global_steps = self.ledger.number(phase, 1)
        self.store.append(
            nan, self.ledger.epoch, steps, phase, [logged_loss(logs)], global_steps
        )
