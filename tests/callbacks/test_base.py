"""What lossguard's callbacks share (`lossguard/callbacks/base.py`): each code
recorded once, root causes before their consequences, and one way to act on
a batch's findings (`action`), on findings built by hand and a stand-in
model: no fit."""

import logging
import warnings
from types import SimpleNamespace

import pytest

from lossguard.callbacks.base import FindingsCallback
from lossguard.diagnosis.findings import (
    Finding,
    LossSanityError,
    LossSanityWarning,
    Report,
)
from lossguard.diagnosis.registry import FAULTS

pytestmark = pytest.mark.backends


def finding(code, step=0, output="out"):
    """A finding of `code` at its registered severity, on batch `step`."""
    return Finding(
        code,
        FAULTS[code].severity,
        f"{code} seen",
        "why",
        f"fix {code}",
        {"output": output},
        epoch=0,
        step=step,
        phase="train",
    )


class Watching(FindingsCallback):
    """A callback on a stand-in model with only `stop_training`, noting what
    its hooks were told."""

    def __init__(self, action, **kwargs):
        super().__init__(action, **kwargs)
        self.stand_in = SimpleNamespace(stop_training=False)
        self.set_model(self.stand_in)
        self.noted = []
        self.raised_at = None

    def _on_finding(self, finding):
        self.noted.append(finding.code)

    def _before_raise(self):
        self.raised_at = list(self.noted)


def add(cb, *findings):
    """`cb._add_all(findings)` and the LossSanityWarnings it emitted."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        new = cb._add_all(findings)
    said = [w for w in caught if issubclass(w.category, LossSanityWarning)]
    return new, said


def test_action_must_be_one_of_four():
    with pytest.raises(ValueError, match=r"Received: action='loud'\."):
        Watching("loud")


def test_a_root_cause_warns_once_and_its_consequences_not_at_all():
    cb = Watching("warn")
    new, said = add(cb, finding("LABEL_SUM_NOT_ONE"), finding("NEGATIVE_LABELS"))
    assert [f.code for f in new] == ["NEGATIVE_LABELS", "LABEL_SUM_NOT_ONE"]
    assert new[1].caused_by == "NEGATIVE_LABELS"
    assert len(said) == 1
    text = str(said[0].message)
    assert text.startswith("[ERROR] NEGATIVE_LABELS (epoch 0, step 0)")
    assert "Fix: fix NEGATIVE_LABELS" in text
    assert "Follows from it: LABEL_SUM_NOT_ONE." in text
    assert "lossguard explain NEGATIVE_LABELS" in text
    assert said[0].filename == __file__  # it points at the user's code
    # The same codes on a later batch: nothing new, nothing said.
    new, said = add(cb, finding("NEGATIVE_LABELS", step=5))
    assert new == [] and said == []
    assert [f.step for f in cb.findings] == [0, 0]
    assert cb.noted == ["NEGATIVE_LABELS", "LABEL_SUM_NOT_ONE"]


def test_a_consequence_of_an_earlier_batchs_cause_is_not_warned():
    cb = Watching("warn")
    add(cb, finding("NEGATIVE_LABELS", step=1))
    new, said = add(cb, finding("LABEL_SUM_NOT_ONE", step=4))
    assert new[0].caused_by == "NEGATIVE_LABELS" and said == []


def test_a_code_twice_in_one_batch_is_recorded_once():
    cb = Watching("record")
    new, _ = add(cb, finding("NEGATIVE_WEIGHTS"), finding("NEGATIVE_WEIGHTS", 0, "b"))
    assert len(new) == 1 and len(cb.findings) == 1


def test_warn_from_sets_the_least_severity_that_warns():
    info = finding("LOSS_UNBOUNDED_BELOW")
    assert info.severity == "info"
    assert add(Watching("warn"), info)[1] == []
    (said,) = add(Watching("warn", warn_from="info"), info)[1]
    assert str(said.message).startswith("[INFO] LOSS_UNBOUNDED_BELOW")


def test_raise_raises_once_the_batch_is_recorded_with_every_root_cause():
    cb = Watching("raise")
    with pytest.raises(LossSanityError) as caught:
        add(cb, finding("NEGATIVE_LABELS"), finding("NEGATIVE_WEIGHTS"))
    codes = [f.code for f in caught.value.report.findings]
    assert codes == ["NEGATIVE_LABELS", "NEGATIVE_WEIGHTS"]
    assert cb.raised_at == codes  # the hook ran after both were recorded
    assert cb.stand_in.stop_training is False


def test_raise_and_stop_act_on_errors_only_by_default():
    warning = finding("EMPTY_LABEL_ROWS")
    assert warning.severity == "warning"
    cb = Watching("raise")
    add(cb, warning)  # recorded, no raise
    assert cb.findings == [warning] and cb.raised_at is None
    stop = Watching("stop")
    _, said = add(stop, warning)
    assert stop.stand_in.stop_training is False and len(said) == 1
    strict = Watching("raise", act_from="warning")
    with pytest.raises(LossSanityError):
        add(strict, warning)


def test_stop_warns_and_stops_the_model():
    cb = Watching("stop")
    _, said = add(cb, finding("NEGATIVE_AUX_LOSS"))
    assert cb.stand_in.stop_training is True
    assert [str(w.message).split()[1] for w in said] == ["NEGATIVE_AUX_LOSS"]


def test_record_only_records_and_logs(caplog):
    cb = Watching("record")
    with caplog.at_level(logging.INFO, logger="lossguard"):
        new, said = add(cb, finding("NEGATIVE_LABELS"), finding("EMPTY_LABEL_ROWS"))
    assert len(new) == 2 and said == [] and cb.stand_in.stop_training is False
    levels = {r.getMessage().split()[1]: r.levelname for r in caplog.records}
    assert levels == {"NEGATIVE_LABELS": "ERROR", "EMPTY_LABEL_ROWS": "WARNING"}


def test_the_report_holds_every_finding_and_the_history():
    cb = Watching("record")
    assert isinstance(cb.report, Report) and cb.report.findings == []
    add(cb, finding("NEGATIVE_WEIGHTS"))
    assert cb.report.codes == {"NEGATIVE_WEIGHTS"}
    assert cb.report.history is None  # this callback keeps no history
    cb._report_history = lambda: "the history"
    assert cb.report.history == "the history"
