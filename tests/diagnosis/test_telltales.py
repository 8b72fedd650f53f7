"""Loss values that tell the cause (`lossguard.diagnosis.faults.telltales`),
on hand-made statistics: a cross-entropy stuck at ln K over many training
steps (the `trend` stage) and a batch near the clip's ceiling -ln(eps); the
controls that look like them and are not. No model runs a step."""

import math

import numpy as np
import pytest

from lossguard.diagnosis.faults import check_batch, check_trend
from lossguard.diagnosis.faults.telltales import UNIFORM_STEPS, ceiling
from lossguard.diagnosis.specs import OutputSpec
from tests.helpers import statistics_row

pytestmark = pytest.mark.backends
K = 10


def spec(name="out", units=K, kind="sparse", **kw):
    return OutputSpec(
        name=name, loss_name="sparse_categorical_crossentropy", kind=kind,
        activation="softmax", units=units, **kw,
    )  # fmt: skip


def trend(losses, specs=None, epochs=None, spread=None):
    """check_trend over training batches whose single output lost `losses`
    (and whose output spread `spread`, unmeasured by default)."""
    losses = np.asarray(losses, "float32")
    steps = np.arange(len(losses))
    epochs = np.zeros(len(losses), int) if epochs is None else np.asarray(epochs)
    columns = {"data_loss": losses}
    if spread is not None:
        columns["pred_spread"] = np.broadcast_to(spread, losses.shape)
    return check_trend(columns, specs or [spec()], steps, epochs)


# ------------------------------------------------------------- ln K, stuck
def test_a_loss_at_ln_k_for_200_steps_is_found_from_where_it_began():
    noise = np.random.default_rng(0).normal(0, 1e-4, 230)
    losses = np.r_[np.full(20, 2.9), math.log(K) + noise]  # stuck from step 20
    (finding,) = trend(losses)
    assert finding.code == "LOSS_AT_UNIFORM" and finding.severity == "warning"
    assert finding.step == 20 and finding.phase == "train"
    assert finding.evidence["steps"] == 230 and finding.evidence["classes"] == K
    assert "ln 10 = 2.303 for 230 training steps (from step 20" in finding.message


def test_a_constant_output_counts_when_its_loss_wobbles_by_its_labels():
    """keras#4669's collapsed CNN: the prediction is the same for every input
    (spread ~5% of 1/K under dropout) and the batch losses wobble by 0.5%
    with the batches' class mix."""
    rng = np.random.default_rng(3)
    losses = math.log(K) * (1 + rng.normal(0, 0.003, 250))
    (finding,) = trend(losses, spread=0.005)
    assert finding.evidence["spread_max"] == pytest.approx(0.005)
    assert "differed from row to row by at most 0.005" in finding.message
    assert trend(losses, spread=1.0 / K) == []  # an input-dependent output
    assert trend(losses) == []  # unmeasured: 0.5% is too far


def test_an_output_leaving_the_uniform_prediction_is_not_stuck():
    """A zero-initialised output layer under a slow warm-up: exactly uniform
    at first, its spread growing step by step."""
    spread = np.geomspace(1e-8, 0.01, 300)
    losses = np.full(300, math.log(K))
    assert trend(losses, spread=spread) == []
    assert trend(losses, spread=np.zeros(300))[0].code == "LOSS_AT_UNIFORM"


def test_fewer_steps_at_ln_k_are_not_yet_stuck():
    assert trend(np.full(UNIFORM_STEPS - 1, math.log(K))) == []


@pytest.mark.parametrize(
    "control",
    [
        "a random start, a few percent off ln K",
        "a loss that starts at ln K and falls",
        "the labels' entropy, not ln K",
    ],
)
def test_controls_that_look_stuck_are_not(control):
    rng = np.random.default_rng(1)
    losses = {
        "a random start, a few percent off ln K": math.log(K)
        * (1.03 + rng.normal(0, 0.01, 300)),
        "a loss that starts at ln K and falls": math.log(K)
        * np.r_[np.ones(150), np.linspace(1, 0.5, 150)],
        "the labels' entropy, not ln K": np.full(300, math.log(K - 1)),
    }[control]
    assert trend(losses) == []


def test_each_output_is_read_on_its_own_loss_and_named():
    stuck, learning = math.log(K), np.linspace(2.0, 1.0, 250)
    specs = [spec("tags"), spec("flag", units=3)]
    columns = {
        "data_loss": np.full(250, stuck + 1.0),  # the weighted sum, unread here
        "tags/data_loss": np.full(250, stuck),
        "flag/data_loss": learning,
    }
    (finding,) = check_trend(columns, specs, np.arange(250), np.zeros(250, int))
    assert finding.evidence["output"] == "tags"
    assert "loss of output 'tags' has stayed" in finding.message


def test_a_single_output_is_read_through_its_loss_weight():
    weighted = np.full(250, 0.5 * math.log(K))
    assert trend(weighted, [spec(loss_weight=0.5)])[0].code == "LOSS_AT_UNIFORM"
    assert trend(weighted) == []


def test_a_binary_or_one_unit_output_has_no_ln_k():
    assert trend(np.full(250, math.log(2)), [spec(units=1)]) == []
    assert trend(np.full(250, math.log(2)), [spec(kind="binary", units=2)]) == []


def test_a_run_across_epochs_names_both():
    epochs = np.r_[np.zeros(100, int), np.ones(150, int)]
    (finding,) = trend(np.full(250, math.log(K)), epochs=epochs)
    assert finding.epoch == 0 and "of epoch 1" in finding.message


# ---------------------------------------------------------- at the ceiling
def row(loss, w=None, units=K):
    s = spec(units=units)
    y = np.arange(6) % units
    p = np.full((6, units), 1.0 / units, "float32")
    return s, statistics_row(s, y, p, w, loss=loss)


def test_a_batch_near_minus_log_eps_is_saturated_with_its_numbers():
    s, r = row(15.2)
    (finding,) = check_batch(r, [s])
    assert finding.code == "SATURATED_PREDICTIONS"
    assert finding.evidence["ceiling"] == pytest.approx(16.118, abs=1e-3)
    assert "94.3% of -ln(eps) = 16.12" in finding.message
    s, r = row(117.3)
    assert "read logits here" in check_batch(r, [s])[0].message


@pytest.mark.parametrize(
    "loss, units",
    [(2.4, K), (12.0, K), (13.5, 50_000)],
    ids=["healthy", "below the bar", "a 50k vocabulary at ln K + 2.7"],
)
def test_losses_below_the_bar_are_not_saturated(loss, units):
    s, r = row(loss, units=units)
    assert check_batch(r, [s]) == []


def test_a_weighted_batch_is_not_read_for_saturation():
    s, r = row(15.2, w=np.full(6, 40.0, "float32"))
    assert check_batch(r, [s]) == []


def test_the_ceiling_follows_keras_epsilon():
    import keras

    keras.config.set_epsilon(1e-4)
    try:
        assert ceiling() == pytest.approx(-math.log(1e-4))
    finally:
        keras.config.set_epsilon(1e-7)
