"""The pytest plugin, tested as pytest plugins are: downstream-style test files
run by `pytester` in a subprocess (TensorFlow state must not leak)."""

import subprocess
import sys
import textwrap

import pytest

from lossguard.diagnosis.registry import FAULTS as REGISTRY
from lossguard.testing import FAULTS

INFO = {code for code, fault in REGISTRY.items() if fault.severity == "info"}
#: diagnose() runs no training: faults only seen after an epoch (drift) are
#: found in fit by EmbeddingDriftMonitor, those read over many training steps
#: (a loss stuck at ln K) by the callback.
SEEN_BY_DIAGNOSE = [
    f for f in FAULTS if REGISTRY[f].stages not in (("epoch",), ("trend",))
]


def sections(output):
    """Failure text per test id, from pytest's '___ test_id ___' headers."""
    found, current = {}, None
    for line in output.splitlines():
        stripped = line.strip("_ ")
        if line.startswith("____") and stripped:
            current = stripped
            found[current] = ""
        elif current:
            found[current] += line + "\n"
    return found


def test_loading_the_plugin_imports_no_tensorflow(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys, pytest
        pytest.main(["--co", "-q", "-p", "no:cacheprovider", {str(tmp_path)!r}])
        print("PLUGIN", "lossguard_pytest" in sys.modules)
        print("TF", "tensorflow" in sys.modules, "keras" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "PLUGIN True" in out
    assert "TF False False" in out


@pytest.mark.backends
def test_each_injected_fault_fails_with_its_code(pytester):
    pytester.makepyfile(
        test_downstream=f"""
        import pytest

        def test_healthy(lossguard_check, lossguard_tiny_seq2seq):
            report = lossguard_check(*lossguard_tiny_seq2seq())
            assert report.codes == set()

        @pytest.mark.parametrize("fault", {SEEN_BY_DIAGNOSE!r})
        def test_fault(lossguard_check, lossguard_tiny_seq2seq, fault):
            lossguard_check(*lossguard_tiny_seq2seq(fault=fault))
        """
    )
    result = pytester.runpytest_subprocess(
        "--lossguard-fail-on=warning", "-p", "no:cacheprovider"
    )
    failing = [f for f in SEEN_BY_DIAGNOSE if f not in INFO]
    result.assert_outcomes(
        passed=1 + len(SEEN_BY_DIAGNOSE) - len(failing), failed=len(failing)
    )
    text = sections(result.stdout.str())
    for fault in failing:
        body = text[f"test_fault[{fault}]"]
        assert f"lossguard found {fault}" in body, body[-2000:]
        assert "First thing to fix" in body


def test_default_bar_marker_fixtures_and_opt_out(pytester):
    pytester.makepyfile(
        test_downstream="""
        import pytest
        import lossguard

        def test_warning_passes_at_the_default_bar(
            lossguard_check, lossguard_tiny_seq2seq
        ):
            setup = lossguard_tiny_seq2seq(fault="PADDING_NOT_MASKED")
            assert lossguard_check(*setup).codes == {"PADDING_NOT_MASKED"}

        def test_error_fails(lossguard_check, lossguard_tiny_seq2seq):
            lossguard_check(*lossguard_tiny_seq2seq(fault="NEGATIVE_WEIGHTS"))

        def test_failure_names_only_codes_at_the_bar(lossguard_check, monkeypatch):
            from lossguard.diagnosis.registry import FAULTS

            report = lossguard.Report(
                [
                    FAULTS[code].finding("measured", "why", "fix")
                    for code in ("NEGATIVE_LABELS", "EMPTY_LABEL_ROWS")
                ]
            )
            monkeypatch.setattr(lossguard, "diagnose", lambda *a, **k: report)
            lossguard_check(None, None)

        def test_glove_and_callback(lossguard_glove, lossguard_callback):
            assert len(lossguard_glove) == 3000 and lossguard_glove.dim == 50
            assert lossguard_callback.action == "raise"

        @pytest.mark.lossguard
        def test_marked_fit_of_a_broken_setup(lossguard_tiny_seq2seq):
            model, x, y = lossguard_tiny_seq2seq(fault="NEGATIVE_LABELS")
            model.fit(x, y, batch_size=16, verbose=0)

        @pytest.mark.lossguard
        def test_marked_fit_of_a_healthy_setup(
            lossguard_tiny_seq2seq, _lossguard_watch_fit
        ):
            model, x, y = lossguard_tiny_seq2seq()
            model.fit(x, y, batch_size=16, epochs=2, verbose=0)
            (callback,) = _lossguard_watch_fit
            assert len(callback.history) == 8 and callback.findings == []

        @pytest.mark.lossguard(action="record")
        def test_marker_options(lossguard_tiny_seq2seq, _lossguard_watch_fit):
            model, x, y = lossguard_tiny_seq2seq(fault="NEGATIVE_LABELS")
            model.fit(x, y, batch_size=16, verbose=0)
            assert "NEGATIVE_LABELS" in _lossguard_watch_fit[0].report.codes
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=3)
    text = sections(result.stdout.str())
    at_bar = text["test_failure_names_only_codes_at_the_bar"]
    assert "lossguard found NEGATIVE_LABELS (failing" in at_bar
    assert "[WARNING] EMPTY_LABEL_ROWS" in at_bar  # in the report, not the list
    assert "lossguard found NEGATIVE_WEIGHTS (failing" in text["test_error_fails"]
    marked = text["test_marked_fit_of_a_broken_setup"]
    assert "LossSanityError" in marked and "NEGATIVE_LABELS" in marked

    opted_out = pytester.runpytest_subprocess(
        "-p", "no:lossguard", "-p", "no:cacheprovider"
    )
    assert "fixture 'lossguard_check' not found" in opted_out.stdout.str()


def test_fixtures_are_documented(pytester):
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    out = result.stdout.str()
    for name in (
        "lossguard_check",
        "lossguard_callback",
        "lossguard_glove",
        "lossguard_tiny_seq2seq",
    ):
        assert name in out
    assert "fail" in out and "the test" in out and "injects that fault" in out
