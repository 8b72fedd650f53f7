"""Root causes and consequences (`lossguard.diagnosis.causes`), on findings
built by hand: no model, no backend."""

import pytest

import lossguard
from lossguard.diagnosis.causes import link
from lossguard.diagnosis.findings import Finding, Report


def finding(code, severity="error", output="out", **kw):
    evidence = {} if output is None else {"output": output}
    return Finding(code, severity, f"{code} seen", "why", f"fix {code}", evidence, **kw)


def test_a_declared_consequence_names_its_cause_and_takes_its_fix():
    cause = finding("SINGLE_UNIT_CATEGORICAL")
    empty = finding("EMPTY_LABEL_ROWS", "warning", step=3)
    linked = link([empty, cause])
    assert [f.code for f in linked] == ["SINGLE_UNIT_CATEGORICAL", "EMPTY_LABEL_ROWS"]
    consequence = linked[1]
    assert consequence.caused_by == "SINGLE_UNIT_CATEGORICAL"
    assert consequence.fix == "Fix the root cause, SINGLE_UNIT_CATEGORICAL: fix " + (
        "SINGLE_UNIT_CATEGORICAL"
    )
    assert "It follows from SINGLE_UNIT_CATEGORICAL: with one unit" in (
        consequence.explanation
    )
    assert consequence.evidence == {"output": "out"} and consequence.step == 3


def test_a_cause_on_another_output_explains_nothing_here():
    linked = link([finding("SINGLE_UNIT_CATEGORICAL", output="a")], [])
    other = link([finding("EMPTY_LABEL_ROWS", "warning", output="b")], linked)
    assert other[0].caused_by is None


def test_a_whole_model_finding_follows_from_an_output_cause():
    earlier = [finding("NEGATIVE_LABELS", output="tags")]
    (negative,) = link([finding("NEGATIVE_LOSS", "warning", output=None)], earlier)
    assert negative.caused_by == "NEGATIVE_LABELS"


def test_undeclared_pairs_stay_root_causes():
    linked = link([finding("DECODER_TARGET_NOT_SHIFTED"), finding("NEGATIVE_WEIGHTS")])
    assert [f.caused_by for f in linked] == [None, None]


def test_chains_lead_to_the_root_and_the_report_nests_them():
    root = finding("SINGLE_UNIT_CATEGORICAL")
    linked = link(
        [
            finding("PADDING_NOT_MASKED", "warning"),
            finding("SINGLE_UNIT_SOFTMAX"),
            finding("LABELS_OUT_OF_RANGE"),
            root,
        ]
    )
    causes = {f.code: f.caused_by for f in linked}
    assert causes["SINGLE_UNIT_SOFTMAX"] == "SINGLE_UNIT_CATEGORICAL"
    assert causes["PADDING_NOT_MASKED"] == "SINGLE_UNIT_CATEGORICAL"
    assert causes["LABELS_OUT_OF_RANGE"] == "SINGLE_UNIT_SOFTMAX"
    report = Report(linked)
    assert [f.code for f in report.root_causes()] == ["SINGLE_UNIT_CATEGORICAL"]
    assert [f.code for f in report.ordered()][0] == "SINGLE_UNIT_CATEGORICAL"
    text = str(report)
    assert text.startswith("lossguard found 1 root cause(s) and 3 finding(s)")
    assert "-> follows from SINGLE_UNIT_SOFTMAX: [ERROR] LABELS_OUT_OF_RANGE" in text
    assert text.splitlines()[-1].startswith(
        "First thing to fix (SINGLE_UNIT_CATEGORICAL)"
    )
    frame = report.to_frame()
    assert frame["caused_by"].isna().tolist() == [True, False, False, False]
    assert frame["code"].tolist()[0] == "SINGLE_UNIT_CATEGORICAL"


def test_root_causes_by_severity_count_what_follows_from_them():
    cause = finding("SINGLE_UNIT_CATEGORICAL", "warning")  # milder than usual
    report = Report(link([cause, finding("PREDICTIONS_NOT_PROBABILITIES")]))
    assert [f.code for f in report.root_causes("error")] == ["SINGLE_UNIT_CATEGORICAL"]
    assert Report([finding("EMPTY_LABEL_ROWS", "warning")]).root_causes("error") == []


def test_a_consequence_whose_cause_is_missing_counts_as_a_root():
    orphan = finding("EMPTY_LABEL_ROWS", "warning", caused_by="SINGLE_UNIT_CATEGORICAL")
    assert Report([orphan]).root_causes() == [orphan]


def test_caused_by_must_be_another_declared_code():
    with pytest.raises(ValueError, match="caused_by"):
        finding("EMPTY_LABEL_ROWS", caused_by="EMPTY_LABEL_ROWS")
    with pytest.raises(ValueError, match="caused_by"):
        finding("EMPTY_LABEL_ROWS", caused_by="NOT_A_CODE")


def test_notes_say_what_was_not_checked():
    report = lossguard.Report([], notes=["the model has no call()"])
    assert str(report).splitlines() == [
        "lossguard: no findings in what it could check.",
        "Not checked: the model has no call()",
    ]
    assert "1 note(s)" in repr(report)
