"""lossguard on real-world training setups (see scenarios.py).

It must never break the user's training nor change what Keras reports; it
should stay quiet on healthy setups and name the fault on faulty ones.
Each scenario is fitted once without and once with the callback (same seed,
model built twice) and diagnosed once; the tests share those runs.
"""

from __future__ import annotations

import functools
import warnings

import keras
import numpy as np
import pytest

import lossguard
from tests.realworld.scenarios import SCENARIOS

EPOCHS = 2
SEED = 1234
NAMES = list(SCENARIOS)
#: Scenarios with a real fault, and its code (also on Scenario.faults).
FAULTS = {
    "ner_transformers": {"PROBABILITIES_AS_LOGITS"},
    "clipped_glove_targets": {"NEGATIVE_LABELS"},
    "handwritten_ce_relu": {"PREDICTIONS_NOT_PROBABILITIES"},
    "distillation_without_from_logits": {"PREDICTIONS_NOT_PROBABILITIES"},
}
#: Scenarios diagnose cannot run: the VAE has no call() (only train_step).
NOT_DIAGNOSABLE = {"vae"}
DIAGNOSABLE = [name for name in NAMES if name not in NOT_DIAGNOSABLE]


def build(name):
    keras.utils.set_random_seed(SEED)
    scenario = SCENARIOS[name]()
    assert set(scenario.faults) == FAULTS.get(name, set()), name
    assert (scenario.diagnose_args is None) == (name in NOT_DIAGNOSABLE), name
    return scenario


def fit(scenario, callbacks=()):
    history = scenario.model.fit(
        scenario.x,
        scenario.y,
        epochs=EPOCHS,
        verbose=0,
        callbacks=list(callbacks),
        **scenario.fit_kwargs,
    )
    return history.history


class BatchCounter(keras.callbacks.Callback):
    """How many training batches Keras ran in each epoch."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.batches[-1] += 1


@functools.cache
def plain_run(name):
    """Keras' own history of the scenario fitted without lossguard."""
    return fit(build(name))


@functools.cache
def guarded_run(name, internals=False):
    """(Keras' history, the callback, batches per epoch) of the scenario
    fitted with lossguard (reading the model's gradients and ReLU layers
    too with `internals`), or the exception fitting raised (each test that
    needs the run re-raises it)."""
    scenario = build(name)
    cb = lossguard.LossSanityCallback(action="record", internals=internals)
    counter = BatchCounter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", lossguard.LossSanityWarning)
            return fit(scenario, [cb, counter]), cb, counter.batches
    except Exception as error:  # noqa: BLE001 - re-raised in the tests
        return error


@functools.cache
def diagnosed(name):
    """diagnose()'s report on the freshly built (untrained) model, or the
    exception it raised."""
    scenario = build(name)
    try:
        return lossguard.diagnose(scenario.model, *scenario.diagnose_args)
    except Exception as error:  # noqa: BLE001 - re-raised in the tests
        return error


def result(value):
    if isinstance(value, BaseException):
        raise value
    return value


def assert_findings(name, report):
    loud = sorted(f.code for f in report.findings if f.severity in ("error", "warning"))
    faults = FAULTS.get(name)
    if faults:
        assert faults <= set(loud), f"expected {sorted(faults)}:\n{report}"
    else:
        assert loud == [], f"false alarm on a healthy setup:\n{report}"


# ------------------------------------------------------------------ (a) fit
@pytest.mark.parametrize("name", NAMES)
def test_scenario_trains_without_lossguard(name):
    """The scenario itself is sound: a plain fit gives finite losses."""
    history = plain_run(name)
    assert len(history["loss"]) == EPOCHS
    assert np.all(np.isfinite(history["loss"]))


@pytest.mark.parametrize("internals", [False, True], ids=["default", "internals"])
@pytest.mark.parametrize("name", NAMES)
def test_fit_with_callback_completes_and_reports_the_same_losses(name, internals):
    plain = plain_run(name)
    guarded, cb, batches = result(guarded_run(name, internals))
    assert len(cb.history) > 0
    # One row per training batch of every epoch (blind rows included).
    train = cb.history[cb.history.phase == "train"]
    rows = train.groupby("epoch").size().reindex(range(EPOCHS), fill_value=0)
    assert rows.tolist() == batches, f"rows per epoch {rows.tolist()} != {batches}"
    assert set(guarded) == set(plain)
    for key in plain:
        np.testing.assert_allclose(
            guarded[key], plain[key], rtol=0, atol=1e-5, err_msg=key
        )


# ------------------------------------------------------------- (b) diagnose
@pytest.mark.parametrize("name", DIAGNOSABLE)
def test_diagnose_returns_a_report(name):
    assert isinstance(result(diagnosed(name)), lossguard.Report)


# ------------------------------------------------------------- (c) findings
@pytest.mark.parametrize("internals", [False, True], ids=["default", "internals"])
@pytest.mark.parametrize("name", NAMES)
def test_callback_findings(name, internals):
    _, cb, _ = result(guarded_run(name, internals))
    assert_findings(name, cb.report)


@pytest.mark.parametrize("name", DIAGNOSABLE)
def test_diagnose_findings(name):
    assert_findings(name, result(diagnosed(name)))


def test_diagnose_says_what_it_cannot_run_instead_of_raising():
    """The VAE trains through its own train_step and has no call()."""
    scenario = build("vae")
    report = lossguard.diagnose(scenario.model, scenario.x)
    assert report.findings == []
    assert len(report.notes) == 1 and "has no call()" in report.notes[0]
    assert "Not checked: VAE has no call()" in str(report)
