"""What lossguard's callbacks share: findings, a report, and one way to act."""

from __future__ import annotations

import logging
import warnings

import keras

from lossguard.diagnosis.findings import (
    SEVERITIES,
    Finding,
    LossSanityError,
    LossSanityWarning,
    Report,
)

logger = logging.getLogger("lossguard")

_LOG = {"error": logger.error, "warning": logger.warning, "info": logger.info}


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

    def set_model(self, model):
        super().set_model(model)
        # On JAX, `self.model` writes the whole training state back to the
        # variables on every access (Keras does so for checkpointing
        # callbacks): the hooks use this reference, which never syncs.
        self._keras_model = model

    @property
    def report(self) -> Report:
        return Report(self.findings)

    def _add(self, finding: Finding, stacklevel=3) -> bool:
        """Record a finding (the first of its code only), log it and act.

        Returns whether it was new.
        """
        if any(f.code == finding.code for f in self.findings):
            return False
        self.findings.append(finding)
        self._on_finding(finding)
        _LOG[finding.severity]("%s", finding)
        rank = SEVERITIES.index(finding.severity)
        if self.action in ("warn", "stop") and rank <= self._warn_bar:
            warnings.warn(str(finding), LossSanityWarning, stacklevel=stacklevel)
        if self.action == "stop" and rank <= self._act_bar:
            self._keras_model.stop_training = True
        elif self.action == "raise" and rank <= self._act_bar:
            self._before_raise()
            raise LossSanityError(self.report)
        return True

    def _on_finding(self, finding: Finding):
        """Hook: a new finding was recorded (e.g. write it to TensorBoard)."""

    def _before_raise(self):
        """Hook: `action="raise"` is about to end training."""
