"""The fault registry drives the tests: every code has an injector, a check
that finds it with its declared severity, and a section in docs/faults.md."""

import ast
import re
from pathlib import Path

import pytest

import lossguard
from lossguard.diagnosis.findings import Finding
from lossguard.diagnosis.registry import FAULTS, STAGES, fault
from lossguard.testing import INJECTORS, NEEDS_INTERNALS, tiny_seq2seq

DOCS = Path(__file__).resolve().parents[2] / "docs" / "faults.md"  # the package's
#: Faults only trained weights show (no batch or configuration does).
AFTER_TRAINING = [code for code, f in FAULTS.items() if f.stages == ("epoch",)]
#: Codes read over many training steps together: fit sees them, diagnose cannot.
OVER_STEPS = [code for code, f in FAULTS.items() if f.stages == ("trend",)]


def test_every_code_has_an_injector_and_a_check():
    missing_injector = sorted(set(FAULTS) - set(INJECTORS))
    assert not missing_injector, (
        f"no injector in lossguard.testing for {missing_injector}: add one with "
        "@injector(CODE)"
    )
    unknown = sorted(set(INJECTORS) - set(FAULTS))
    assert not unknown, f"injectors for undeclared codes {unknown}"
    no_check = sorted(code for code, f in FAULTS.items() if not f.checks)
    assert not no_check, f"codes declared without a check: {no_check}"
    assert all(set(f.stages) <= set(STAGES) for f in FAULTS.values())
    assert [c.value for c in lossguard.Code] == list(FAULTS)


@pytest.mark.backends
@pytest.mark.parametrize(
    "code", [c for c in FAULTS if c not in AFTER_TRAINING + OVER_STEPS]
)
def test_each_injected_code_is_found_with_its_severity(code):
    model, x, y = tiny_seq2seq(code, n=32)
    report = lossguard.diagnose(model, x, y)
    finding = report.get(code)
    assert finding is not None, f"{code} not found: {report!r}"
    assert finding.severity == FAULTS[code].severity
    assert finding.evidence, "a finding shows the numbers behind it"
    assert str(finding).endswith(
        f"More: lossguard explain {code} (docs: faults.md#{code.lower()})"
    )
    undocumented = set(finding.evidence) - documented_evidence(code)
    assert not undocumented, f"{code}: evidence keys not in docs/faults.md"
    assert_root_cause_first(report, code)


def assert_root_cause_first(report, code):
    """The injected fault leads the report; every other error or warning is
    one of its declared consequences and names it (through its chain)."""
    assert report.root_causes()[0].code == code, repr(report)
    for other in report.findings:
        if other.code == code or other.severity == "info":
            continue
        chain, cause = [other.code], other.caused_by
        while cause is not None and cause != code:
            chain.append(cause)
            cause = report.get(cause).caused_by
        assert cause == code, f"{' <- '.join(chain)} does not follow from {code}"
        assert other.caused_by in FAULTS and other.code in (
            FAULTS[other.caused_by].consequences
        )
        assert other.fix.startswith(f"Fix the root cause, {other.caused_by}")


@pytest.mark.parametrize("code", ["SINGLE_UNIT_CATEGORICAL", "NEGATIVE_LABELS"])
def test_each_injected_cause_leads_the_report_in_fit(code):
    model, x, y = tiny_seq2seq(code, n=32)
    cb = lossguard.LossSanityCallback(action="record")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[cb])
    assert_root_cause_first(cb.report, code)
    assert cb.report.consequences(code), "the injected cause shows a consequence"


@pytest.mark.backends
@pytest.mark.parametrize("code", AFTER_TRAINING)
def test_codes_seen_after_training_are_found_in_fit(code):
    model, x, y = tiny_seq2seq(code)
    monitor = lossguard.EmbeddingDriftMonitor(threshold=0.95, action="record")
    model.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[monitor])
    finding = monitor.report.get(code)
    assert finding is not None and finding.severity == FAULTS[code].severity


@pytest.mark.backends
@pytest.mark.parametrize("code", OVER_STEPS)
def test_codes_read_over_many_steps_are_found_in_fit_and_lead(code):
    model, x, y = tiny_seq2seq(code, n=256)
    cb = lossguard.LossSanityCallback(
        action="record", internals=code in NEEDS_INTERNALS
    )
    model.fit(x, y, batch_size=1, epochs=1, verbose=0, callbacks=[cb])
    finding = cb.report.get(code)
    assert finding is not None, f"{code} not found: {cb.report!r}"
    assert finding.severity == FAULTS[code].severity
    assert set(finding.evidence) <= documented_evidence(code)
    assert_root_cause_first(cb.report, code)


def test_a_code_is_declared_once_and_findings_need_a_declared_code():
    with pytest.raises(ValueError, match="declared twice"):
        fault("NEGATIVE_LABELS", "error", "again", "again")
    with pytest.raises(ValueError, match="NOT_A_CODE"):
        Finding("NOT_A_CODE", "error", "m", "e", "f")


def _sections():
    text = DOCS.read_text()
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return {p.split("\n", 1)[0].strip(): p.split("\n", 1)[1] for p in parts}


def test_the_catalogue_page_has_every_code_and_only_those():
    sections = {k: v for k, v in _sections().items() if k.isupper()}
    assert sorted(set(FAULTS) - set(sections)) == [], "codes without a docs section"
    assert sorted(set(sections) - set(FAULTS)) == [], "docs sections without a code"
    toc = DOCS.read_text().split("\n## ", 1)[0]
    for code, body in sections.items():
        assert body.startswith(f"**Severity:** {FAULTS[code].severity}\n"), code
        for part in ("**Mechanism.**", "**Evidence.**", "**Fix.**", "**Reproduce.**"):
            assert f"\n{part}" in body, f"{code}: no {part} paragraph"
        assert f'"{code}"' in body.split("**Reproduce.**")[1], code
        assert f"[{code}](#{code.lower()})" in toc, f"{code} not in the contents"


def documented_evidence(code, listed_only=False) -> set[str]:
    """The evidence keys the code's **Evidence.** paragraph names: every
    identifier in backticks (`listed_only`: outside parentheses, which
    describe values, and without `step`, the finding's own field)."""
    paragraph = _sections()[code].split("**Evidence.**", 1)[1].split("\n\n")[0]
    if listed_only:
        while re.search(r"\([^()]*\)", paragraph):  # innermost first
            paragraph = re.sub(r"\([^()]*\)", "", paragraph)
    keys = set(re.findall(r"`([a-z_][a-z0-9_]*)`", paragraph))
    return keys - {"step"} if listed_only else keys


def test_every_documented_evidence_key_is_emitted_by_a_check():
    """Each key a code's docs list is written by the code that makes its
    findings (a string in its family's module, or the shared runners')."""
    faults_dir = Path(lossguard.diagnosis.faults.__file__).parent
    emitted = set()
    for path in [*faults_dir.glob("*.py"), faults_dir.parent / "crashes.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                emitted.add(node.value)
    missing = {
        code: sorted(documented_evidence(code, listed_only=True) - emitted)
        for code in FAULTS
    }
    assert {code: keys for code, keys in missing.items() if keys} == {}


def test_the_catalogue_page_lists_every_declared_consequence():
    text = DOCS.read_text()
    table = text.split("## Root causes and their consequences", 1)[1]
    table = table.split("\n## ", 1)[0]
    rows = re.findall(
        r"^\| \[(\w+)\]\(#\w+\) \| \[(\w+)\]\(#\w+\) \| (.+) \|$", table, re.M
    )
    declared = [
        (cause, effect, why)
        for cause, f in FAULTS.items()
        for effect, why in f.consequences.items()
    ]
    assert sorted(rows) == sorted(declared)


def test_causes_cannot_run_in_a_circle():
    from lossguard.diagnosis.registry import FAULTS as faults

    with pytest.raises(ValueError, match="circle"):
        faults["NEGATIVE_LOSS"].explains(faults["NEGATIVE_LABELS"], "no")
