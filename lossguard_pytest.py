"""lossguard's pytest plugin: test a training setup's loss in CI.

Registered through the `pytest11` entry point as `lossguard` (disable it with
`-p no:lossguard`). Loading it imports neither TensorFlow nor Keras; the
fixtures import them when a test uses them. That is why this module sits
beside the `lossguard` package rather than in it: importing anything inside
`lossguard` runs its `__init__`, which imports Keras to register the losses.

Fixtures:
    lossguard_check: `lossguard_check(model, x, y, sample_weight=None, **kw)`
        runs `lossguard.diagnose` and fails the test on the root causes of
        its error findings (`--lossguard-fail-on=warning` moves the bar);
        returns the `Report`.
    lossguard_callback: a fresh `LossSanityCallback(action="raise")`.
    lossguard_glove: the bundled real GloVe 6B 50d subset (`GloveVectors`).
    lossguard_tiny_seq2seq: a factory of `(model, x, y)`, a tiny healthy GloVe
        encoder-decoder; `fault="CODE"` injects any fault of the catalogue
        (lossguard.testing.FAULTS; docs/faults.md).

Marker:
    @pytest.mark.lossguard(**callback_kwargs): every `Model.fit` inside the
    test gets a `LossSanityCallback(action="raise", **callback_kwargs)`.
"""

from __future__ import annotations

import pytest

FAIL_ON = ("error", "warning")


def pytest_addoption(parser):
    group = parser.getgroup("lossguard", "lossguard: explained Keras losses")
    group.addoption(
        "--lossguard-fail-on",
        choices=FAIL_ON,
        default=None,
        help="lowest finding severity that fails lossguard_check (default: error)",
    )
    parser.addini(
        "lossguard_fail_on",
        "lowest finding severity that fails lossguard_check: error or warning",
        default="error",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "lossguard(**kwargs): attach a lossguard.LossSanityCallback(action='raise', "
        "**kwargs) to every keras Model.fit inside the test",
    )


def _fail_on(config) -> str:
    value = config.getoption("--lossguard-fail-on") or config.getini(
        "lossguard_fail_on"
    )
    if value not in FAIL_ON:
        raise pytest.UsageError(
            f"lossguard_fail_on must be 'error' or 'warning'. Received: {value!r}."
        )
    return value


@pytest.fixture
def lossguard_check(request):
    """Run `lossguard.diagnose(model, x, y, sample_weight, **kwargs)` and fail
    the test (with the report: root causes first, numbers, fixes) when it
    finds an error, or a warning under `--lossguard-fail-on=warning`; the
    failure names the root causes. Returns the `Report`.

        def test_training_setup(lossguard_check):
            model, x, y = build_model_and_data()
            lossguard_check(model, x, y)
    """
    bar = _fail_on(request.config)

    def check(model, x, y=None, sample_weight=None, **diagnose_kwargs):
        import lossguard

        report = lossguard.diagnose(model, x, y, sample_weight, **diagnose_kwargs)
        failing = [f.code for f in report.root_causes(bar)]
        if failing:
            pytest.fail(
                f"lossguard found {', '.join(failing)} (failing at severity "
                f"{bar!r} or worse; the root causes, each with what follows "
                f"from it below):\n\n{report}",
                pytrace=False,
            )
        return report

    return check


@pytest.fixture
def lossguard_callback():
    """A fresh `lossguard.LossSanityCallback(action="raise")`: pass it to
    `model.fit(callbacks=[...])`; the first error finding raises
    `lossguard.LossSanityError` with the report."""
    import lossguard

    return lossguard.LossSanityCallback(action="raise")


@pytest.fixture(scope="session")
def lossguard_glove():
    """The real GloVe 6B 50d vectors of lossguard's bundled 3,000-word subset
    (PDDL), as `lossguard.glove.GloveVectors`; no download."""
    from lossguard.glove import bundled_glove

    return bundled_glove()


@pytest.fixture
def lossguard_tiny_seq2seq(lossguard_glove):
    """A factory: `lossguard_tiny_seq2seq(fault=None, n=64, seed=0)` returns
    `(model, x, y)`, a tiny compiled GloVe encoder-decoder (sentence reversal,
    sparse targets, masked padding) and its data. `fault="NEGATIVE_LABELS"`
    (or any code of lossguard.testing.FAULTS) injects that fault."""
    from lossguard.testing import tiny_seq2seq

    def factory(fault=None, **kwargs):
        kwargs.setdefault("glove", lossguard_glove)
        return tiny_seq2seq(fault, **kwargs)

    return factory


@pytest.fixture(autouse=True)
def _lossguard_watch_fit(request):
    """Under @pytest.mark.lossguard: a LossSanityCallback on every fit."""
    marker = request.node.get_closest_marker("lossguard")
    if marker is None:
        yield None
        return
    import keras

    import lossguard

    options = {"action": "raise", **marker.kwargs}
    original = keras.Model.fit
    attached = []

    def fit(self, *args, **kwargs):
        callback = lossguard.LossSanityCallback(**options)
        attached.append(callback)
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), callback]
        return original(self, *args, **kwargs)

    keras.Model.fit = fit
    try:
        yield attached
    finally:
        keras.Model.fit = original
