"""Findings and reports (`lossguard.diagnosis.findings`), built by hand: the
fields a user reads, the one-line and the readable forms, and a report's
views (root causes, consequences, frame, JSON). No model, no backend."""

import dataclasses
import json

import numpy as np
import pytest

import lossguard
from lossguard.diagnosis.findings import (
    SEVERITIES,
    Finding,
    LossSanityError,
    LossSanityWarning,
    Report,
    docs_anchor,
)

pytestmark = pytest.mark.backends


def finding(code="NEGATIVE_LABELS", severity="error", **kw):
    kw.setdefault("evidence", {"output": "out"})
    return Finding(code, severity, f"{code} seen", f"why {code}", f"fix {code}", **kw)


# ----------------------------------------------------------------- Finding
def test_a_finding_holds_what_was_measured_and_where():
    f = finding(evidence={"label_min": -1.0}, epoch=2, step=7, phase="train")
    assert (f.code, f.severity, f.message) == (
        "NEGATIVE_LABELS",
        "error",
        ("NEGATIVE_LABELS seen"),
    )
    assert (f.explanation, f.fix) == ("why NEGATIVE_LABELS", "fix NEGATIVE_LABELS")
    assert f.evidence == {"label_min": -1.0}
    assert (f.epoch, f.step, f.phase, f.caused_by) == (2, 7, "train", None)
    bare = Finding("NEGATIVE_LABELS", "error", "m", "e", "f")
    assert bare.evidence == {} and bare.where == ""
    assert bare.epoch is bare.step is bare.phase is bare.caused_by is None


def test_a_finding_is_frozen_and_compares_by_value():
    f = finding()
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.severity = "info"
    assert f == finding() and f != finding(step=1)
    assert dataclasses.replace(f, step=3).step == 3 and f.step is None


def test_codes_given_as_the_enum_are_stored_as_plain_strings():
    f = Finding(lossguard.Code.EMPTY_LABEL_ROWS, "warning", "m", "e", "f")
    assert type(f.code) is str and f.code == "EMPTY_LABEL_ROWS"
    g = finding(
        "EMPTY_LABEL_ROWS", "warning", caused_by=lossguard.Code.SINGLE_UNIT_CATEGORICAL
    )
    assert type(g.caused_by) is str and g.caused_by == "SINGLE_UNIT_CATEGORICAL"
    assert json.dumps(dataclasses.asdict(g))  # plain strings serialise


def test_severity_must_be_one_of_three_and_the_error_says_which():
    assert SEVERITIES == ("error", "warning", "info")
    with pytest.raises(ValueError) as info:
        finding(severity="fatal")
    assert str(info.value) == (
        "`severity` must be one of ('error', 'warning', 'info'). "
        "Received: severity='fatal'."
    )


def test_an_undeclared_code_is_refused_with_the_known_codes():
    with pytest.raises(ValueError) as info:
        Finding("NEGATIVE_LABEL", "error", "m", "e", "f")  # a typo
    message = str(info.value)
    assert "Received: code='NEGATIVE_LABEL'" in message
    assert "NEGATIVE_LABELS" in message.split("Known codes:")[1]


@pytest.mark.parametrize(
    "where, expected",
    [
        ({}, ""),
        ({"epoch": 0}, "epoch 0"),
        ({"step": 4}, "batch 4"),  # diagnose: no epoch
        ({"epoch": 1, "step": 4}, "epoch 1, step 4"),
        ({"epoch": 1, "step": 4, "phase": "train"}, "epoch 1, step 4"),
        ({"epoch": 1, "step": 4, "phase": "validation"}, "epoch 1, validation step 4"),
        ({"step": 4, "phase": "validation"}, "validation batch 4"),
    ],
)
def test_where_names_the_epoch_and_the_batch(where, expected):
    assert finding(**where).where == expected


def test_repr_is_one_compact_line():
    f = finding(epoch=0, step=3, phase="validation")
    assert repr(f) == (
        "<Finding error NEGATIVE_LABELS at epoch 0, validation step 3: "
        "NEGATIVE_LABELS seen>"
    )
    assert repr(finding()) == "<Finding error NEGATIVE_LABELS: NEGATIVE_LABELS seen>"


def test_str_tells_the_story_and_ends_with_where_to_read_more():
    text = str(finding("EMPTY_LABEL_ROWS", "warning", epoch=2, step=5))
    assert text.splitlines() == [
        "[WARNING] EMPTY_LABEL_ROWS (epoch 2, step 5)",
        "  EMPTY_LABEL_ROWS seen",
        "  Why: why EMPTY_LABEL_ROWS",
        "  Fix: fix EMPTY_LABEL_ROWS",
        "  More: lossguard explain EMPTY_LABEL_ROWS (docs: faults.md#empty_label_rows)",
    ]
    assert str(finding()).splitlines()[0] == "[ERROR] NEGATIVE_LABELS"
    assert docs_anchor("NEGATIVE_LABELS") == "faults.md#negative_labels"


def test_to_dict_has_every_field():
    f = finding(evidence={"label_min": -2.0}, step=1)
    d = f.to_dict()
    assert list(d) == [field.name for field in dataclasses.fields(Finding)]
    assert d["evidence"] == {"label_min": -2.0} and d["step"] == 1
    assert Finding(**d) == f


# ------------------------------------------------------------------ Report
@pytest.fixture
def chain():
    """A root cause, a consequence of it, one of that, and an unrelated root."""
    return [
        finding("LABELS_OUT_OF_RANGE", caused_by="SINGLE_UNIT_SOFTMAX", step=0),
        finding("PADDING_NOT_MASKED", "warning"),  # an unrelated root
        finding("SINGLE_UNIT_SOFTMAX", caused_by="SINGLE_UNIT_CATEGORICAL"),
        finding("LOSS_UNBOUNDED_BELOW", "info"),
        finding("SINGLE_UNIT_CATEGORICAL"),
    ]


def test_a_report_answers_what_was_found(chain):
    report = Report(chain)
    assert len(report) == 5 and list(report) == chain
    assert report.codes == {f.code for f in chain}
    assert [f.code for f in report.errors] == [
        "LABELS_OUT_OF_RANGE",
        "SINGLE_UNIT_SOFTMAX",
        "SINGLE_UNIT_CATEGORICAL",
    ]
    assert [f.code for f in report.warnings] == ["PADDING_NOT_MASKED"]
    assert report.get("PADDING_NOT_MASKED") is chain[1]
    assert report.get("NEGATIVE_LABELS") is None
    assert "PADDING_NOT_MASKED" in report
    assert lossguard.Code.SINGLE_UNIT_SOFTMAX in report
    assert lossguard.Code.NEGATIVE_LABELS not in report


@pytest.mark.parametrize(
    "severities, bar, expected",
    [
        (["info"], "error", False),
        (["info"], "info", True),
        (["warning", "info"], "warning", True),
        (["warning"], "error", False),
        (["error"], "error", True),
        ([], "info", False),
    ],
)
def test_has_means_at_that_severity_or_worse(severities, bar, expected):
    codes = ["NEGATIVE_LABELS", "EMPTY_LABEL_ROWS", "LOSS_UNBOUNDED_BELOW"]
    report = Report([finding(c, s) for c, s in zip(codes, severities, strict=False)])
    assert report.has(bar) is expected
    if bar == "error":
        assert report.has() is expected  # errors by default


def test_root_causes_are_what_nothing_else_explains_worst_first(chain):
    report = Report(chain)
    assert [f.code for f in report.root_causes()] == [
        "SINGLE_UNIT_CATEGORICAL",
        "PADDING_NOT_MASKED",
        "LOSS_UNBOUNDED_BELOW",
    ]
    assert [f.code for f in report.root_causes("warning")] == [
        "SINGLE_UNIT_CATEGORICAL",
        "PADDING_NOT_MASKED",
    ]
    assert [f.code for f in report.consequences("SINGLE_UNIT_CATEGORICAL")] == [
        "SINGLE_UNIT_SOFTMAX"
    ]
    assert [f.code for f in report.consequences("SINGLE_UNIT_SOFTMAX")] == [
        "LABELS_OUT_OF_RANGE"
    ]
    assert report.consequences("PADDING_NOT_MASKED") == []


def test_ordered_puts_each_root_before_what_follows_from_it(chain):
    assert [f.code for f in Report(chain).ordered()] == [
        "SINGLE_UNIT_CATEGORICAL",
        "SINGLE_UNIT_SOFTMAX",
        "LABELS_OUT_OF_RANGE",
        "PADDING_NOT_MASKED",
        "LOSS_UNBOUNDED_BELOW",
    ]


def test_to_frame_has_fixed_columns_one_row_per_finding_in_story_order(chain):
    frame = Report(chain).to_frame()
    assert list(frame.columns) == list(Report.COLUMNS)
    assert frame["code"].tolist()[:3] == [
        "SINGLE_UNIT_CATEGORICAL",
        "SINGLE_UNIT_SOFTMAX",
        "LABELS_OUT_OF_RANGE",
    ]
    row = frame.iloc[2]
    assert row["caused_by"] == "SINGLE_UNIT_SOFTMAX" and row["step"] == 0
    assert row["evidence"] == {"output": "out"}
    empty = Report().to_frame()
    assert list(empty.columns) == list(Report.COLUMNS) and len(empty) == 0


def test_to_json_carries_numpy_numbers_and_names_the_roots():
    evidence = {
        "label_min": np.float32(-1.5),
        "rows": np.int64(3),
        "dtype": np.dtype("f"),
    }
    report = Report([finding(evidence=evidence)], notes=["no labels"])
    data = json.loads(report.to_json())
    assert data["root_causes"] == ["NEGATIVE_LABELS"]
    assert data["findings"][0]["evidence"] == {
        "label_min": -1.5,
        "rows": 3,
        "dtype": "float32",
    }
    assert data["notes"] == ["no labels"]
    assert json.loads(report.to_json(indent=2)) == data


def test_repr_counts_by_severity_and_names_the_roots(chain):
    assert repr(Report(chain)) == (
        "<Report 3 error(s), 1 warning(s), 1 info; root causes: "
        "SINGLE_UNIT_CATEGORICAL, PADDING_NOT_MASKED, LOSS_UNBOUNDED_BELOW>"
    )
    assert repr(Report()) == "<Report 0 error(s), 0 warning(s), 0 info; root causes: ->"


def test_str_of_a_report_leads_with_the_cause_and_ends_with_its_fix(chain):
    text = str(Report(chain))
    lines = text.splitlines()
    assert lines[0] == (
        "lossguard found 3 root cause(s) and 2 finding(s) that follow from them:"
    )
    assert lines[2] == "[ERROR] SINGLE_UNIT_CATEGORICAL"
    assert "  -> follows from SINGLE_UNIT_CATEGORICAL: [ERROR] SINGLE_UNIT_SOFTMAX" in (
        lines
    )
    assert (
        "     -> follows from SINGLE_UNIT_SOFTMAX: [ERROR] LABELS_OUT_OF_RANGE "
        + ("(batch 0)")
        in lines
    )
    assert lines[-1] == (
        "First thing to fix (SINGLE_UNIT_CATEGORICAL): fix SINGLE_UNIT_CATEGORICAL"
    )
    assert text.count("More: lossguard explain") == 3  # one per root cause


def test_an_empty_report_says_the_loss_is_explained():
    assert str(Report()) == "lossguard: no findings. The loss is explained by the data."


def test_history_is_read_when_asked_for():
    calls = []

    def history():
        calls.append(1)
        return "frame"

    report = Report(history=history)
    assert calls == [] and report.history == "frame" and calls == [1]
    assert Report(history="given").history == "given"
    assert Report().history is None


def test_the_error_carries_the_report_and_tells_its_story(chain):
    report = Report(chain)
    error = LossSanityError(report)
    assert isinstance(error, RuntimeError) and error.report is report
    assert str(error) == str(report)
    assert issubclass(LossSanityWarning, UserWarning)  # filterable as usual
