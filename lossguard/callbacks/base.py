"""What lossguard's callbacks share: findings, a report, and one way to act."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import warnings

import keras

from lossguard.diagnosis.causes import adopt, link
from lossguard.diagnosis.findings import (
    SEVERITIES,
    Finding,
    LossSanityError,
    LossSanityWarning,
    Report,
)

logger = logging.getLogger("lossguard")

_LOG = {"error": logger.error, "warning": logger.warning, "info": logger.info}


def _rank(finding: Finding) -> int:
    return SEVERITIES.index(finding.severity)


def _warning_text(root: Finding, batch) -> str:
    """A root cause as a warning: what, where, the fix, and where to read why.

    The report holds the whole story (`print(callback.report)`), so the
    warning stays short instead of printing every explanation twice.
    """
    at = f" ({root.where})" if root.where else ""
    lines = [
        f"[{root.severity.upper()}] {root.code}{at}: {root.message}",
        f"  Fix: {root.fix}",
    ]
    follow = [f.code for f in batch if f.caused_by == root.code]
    if follow:
        lines.append(f"  Follows from it: {', '.join(follow)}.")
    lines.append(
        f"  Why, and the numbers: print(callback.report), or run "
        f"`lossguard explain {root.code}`."
    )
    return "\n".join(lines)


#: Folders whose frames are not the user's: a warning points past them.
_INTERNAL = tuple(
    os.path.dirname(os.path.abspath(getattr(module, "__file__", "") or "")) + os.sep
    for module in (keras, contextlib, threading)
) + (os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,)


def _user_stacklevel() -> int:
    """The `stacklevel` that makes a warning point at the user's code (the
    `fit` call), past lossguard's, Keras', its backends' and the standard
    library's threading frames; 2 where the hook runs in Keras' own thread."""
    frame, level = sys._getframe(1), 1
    while frame is not None:
        name = os.path.abspath(frame.f_code.co_filename)
        if not (name.startswith(_INTERNAL) or _is_backend(name)):
            return level
        frame, level = frame.f_back, level + 1
    return 2


def _is_backend(path: str) -> bool:
    return any(
        f"{os.sep}{package}{os.sep}" in path
        for package in ("tensorflow", "jax", "jaxlib", "torch", "absl")
    )


class FindingsCallback(keras.callbacks.Callback):
    """A callback that reports findings, each code once, and acts on them.

    `action` says what a finding does beyond being recorded in `findings`
    and logged to the `lossguard` logger: `"warn"` emits one
    `LossSanityWarning` per code (at `warn_from` severity or worse);
    `"stop"` warns the same way and also sets `model.stop_training` on a
    finding at `act_from` severity or worse, where `"raise"` raises
    `LossSanityError` with the report instead.
    """

    ACTIONS = ("warn", "raise", "stop", "record")

    def __init__(self, action="warn", *, warn_from="warning", act_from="error"):
        super().__init__()
        if action not in self.ACTIONS:
            raise ValueError(
                f"`action` must be one of {self.ACTIONS}. Received: action={action!r}."
            )
        self.action = action
        self._warn_bar = SEVERITIES.index(warn_from)
        self._act_bar = SEVERITIES.index(act_from)
        self.findings: list[Finding] = []
        self._keras_model = None  # the model set_model was given (below)

    def set_model(self, model):
        super().set_model(model)
        # On JAX, `self.model` writes the whole training state back to the
        # variables on every access (Keras does so for checkpointing
        # callbacks): the hooks use this reference, which never syncs.
        self._keras_model = model

    @property
    def report(self) -> Report:
        return Report(self.findings, history=self._report_history)

    #: What a report draws inline in a notebook (None: nothing); a callback
    #: with a per-batch history passes a callable that returns it.
    _report_history = None

    def _add(self, finding: Finding) -> bool:
        """Record one finding (see `_add_all`); returns whether it was new."""
        return bool(self._add_all([finding]))

    def _warn(self, message: str) -> None:
        """One `LossSanityWarning`, pointing at the user's `fit` call."""
        warnings.warn(message, LossSanityWarning, stacklevel=_user_stacklevel())

    def _add_all(self, findings) -> list[Finding]:
        """Record the findings of one batch (each code once), then act once.

        Each new finding is linked to the cause that explains it (among
        these and the findings recorded before: `lossguard.diagnosis.causes`)
        and logged. Only root causes warn (a consequence is shown under its
        cause in the report); `"stop"` and `"raise"` act once per batch,
        after its findings are recorded, so the error's report names every
        root cause the batch showed. Returns the new findings.
        """
        recorded = {f.code for f in self.findings}
        fresh = [f for f in findings if f.code not in recorded]
        new = []
        for finding in link(fresh, self.findings):
            if finding.code in recorded:  # the same code twice in one batch
                continue
            recorded.add(finding.code)
            new.append(finding)
        self.findings = adopt(self.findings, new) + new
        for finding in new:
            self._on_finding(finding)
            _LOG[finding.severity]("%s", finding)
        roots = [f for f in new if f.caused_by is None]
        for root in roots:
            if self.action in ("warn", "stop") and _rank(root) <= self._warn_bar:
                self._warn(_warning_text(root, new))
        if any(_rank(finding) <= self._act_bar for finding in new):
            if self.action == "stop":
                self._keras_model.stop_training = True
            elif self.action == "raise":
                self._before_raise()
                raise LossSanityError(self.report)
        return new

    def _on_finding(self, finding: Finding):
        """Hook: a new finding was recorded (e.g. write it to TensorBoard)."""

    def _before_raise(self):
        """Hook: `action="raise"` is about to end training."""
