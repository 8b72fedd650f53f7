"""lossguard on real users' bug threads (tests/realworld/threads/).

For every thread whose cause is in the catalogue, the cause is the first
root cause lossguard reports, in `fit` and in `diagnose`, and no error or
warning points anywhere else. A thread whose cause is outside the catalogue
(or whose loss is healthy, e.g. negative by design) gets no error or
warning. `fit` with the callback never fails where plain Keras does not,
and where Keras itself stops (the thread's crash) the error still reaches
the user, explained first.
"""

from __future__ import annotations

import functools
import warnings

import keras
import pytest

import lossguard
from tests.realworld.threads import THREADS

SEED = 1234
NAMES = list(THREADS)


def build(name):
    keras.utils.set_random_seed(SEED)
    return THREADS[name]()


@functools.cache
def fitted(name):
    """(the thread, the callback, the error fit raised or None)."""
    case = build(name)
    cb = lossguard.LossSanityCallback(action="record", **case.callback_kwargs)
    kwargs = {"verbose": 0, "epochs": 1, **case.fit_kwargs}
    callbacks = [cb, *kwargs.pop("callbacks", [])]
    error = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            case.model.fit(case.x, case.y, callbacks=callbacks, **kwargs)
        except Exception as raised:  # noqa: BLE001 - checked in the tests
            error = raised
    return case, cb, error


def root_of(report, finding):
    while finding.caused_by is not None and report.get(finding.caused_by):
        finding = report.get(finding.caused_by)
    return finding


def assert_verdict(case, report, expected):
    """The thread's cause first; nothing loud that does not follow from it
    (or from another real fault of the thread's own setup, `case.also`)."""
    loud = [f for f in report.findings if f.severity in ("error", "warning")]
    wrong = [
        f.code for f in loud if root_of(report, f).code not in (expected, *case.also)
    ]
    assert wrong == [], f"{case.name}: wrong-cause finding(s) {wrong}:\n{report}"
    if expected is not None:
        roots = report.root_causes()
        assert roots and roots[0].code == expected, (
            f"{case.name}: expected {expected} first:\n{report}"
        )
    if case.expected_info is not None:
        assert case.expected_info in report.codes, report


@pytest.mark.parametrize("name", NAMES)
def test_fit_names_the_threads_cause_first(name):
    case, cb, error = fitted(name)
    if case.crashes:
        assert error is not None, "Keras stops this fit itself"
    else:
        assert error is None, f"fit failed with lossguard: {error!r}"
    assert_verdict(case, cb.report, case.expected)


@pytest.mark.parametrize("name", NAMES)
def test_diagnose_names_the_threads_cause_first(name):
    case = build(name)
    if case.diagnose_args is None:
        pytest.skip("diagnose cannot run this model before training")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = lossguard.diagnose(
            case.model, *case.diagnose_args, **case.diagnose_kwargs
        )
    # A loss that only diverges after some steps cannot show before training:
    # diagnose must then name nothing else.
    assert_verdict(case, report, case.expected if case.seen_before_training else None)


def test_the_benchmark_has_twenty_threads_with_their_sources():
    cases = [THREADS[name] for name in NAMES]
    assert len(cases) >= 20
    for builder in cases:
        assert builder.__doc__ and "Cause" in builder.__doc__, builder.__name__


def test_the_docs_table_lists_every_thread_with_its_catalogue_code():
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "threads.md"
    rows = [line for line in page.read_text().splitlines() if line.startswith("| [")]
    names = [row.split("]")[0].removeprefix("| [") for row in rows]
    assert names == NAMES
    for row, name in zip(rows, names, strict=True):
        expected = build_expected(name)
        assert expected in row.split(" | ")[3], row


@functools.cache
def build_expected(name):
    case = build(name)
    if case.expected:
        return f"`{case.expected}`"
    return "out of scope" if case.scope == "out" else "healthy"
