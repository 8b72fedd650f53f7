"""Faults seen inside the model (`lossguard.diagnosis.faults.internals`), on
hand-made columns: a gradient norm that explodes before a NaN, first layers
whose gradients vanish while the loss stays, ReLU layers whose units are all
0; and the look-alikes that are not. No model runs a step."""

import numpy as np
import pytest

from lossguard.diagnosis.faults import check_batch, check_trend
from lossguard.diagnosis.faults.internals import (
    DEAD_SAMPLES_MIN,
    DEAD_STREAK_SAMPLES,
    VANISHING_STEPS,
)
from lossguard.diagnosis.specs import OutputSpec
from tests.helpers import statistics_row

pytestmark = pytest.mark.backends
SPEC = OutputSpec(
    name="out", loss_name="sparse_categorical_crossentropy", kind="sparse",
    activation="softmax", units=10,
)  # fmt: skip


def trend(loss, norms, rate=0.5):
    """check_trend over batches with `loss` and gradient `norms` (a dict:
    layer -> one norm per batch, first layer first)."""
    loss = np.asarray(loss, "float32")
    columns = {
        "loss": loss,
        "data_loss": loss,
        "learning_rate": np.full(len(loss), rate),
    }
    columns.update({f"grad:{k}": np.asarray(v, "float32") for k, v in norms.items()})
    steps = np.arange(1, len(loss) + 1)
    return [
        f
        for f in check_trend(columns, [SPEC], steps, np.zeros(len(loss), int))
        if f.code in ("EXPLODING_GRADIENTS", "VANISHING_GRADIENTS", "DEAD_UNITS")
    ]


# ---------------------------------------------------------------- exploding
def diverging(level=30, grow=8, factor=10.0):
    """`level` steps at norm ~1, then `grow` steps multiplying it by
    `factor`, then a NaN loss (with NaN gradients)."""
    rng = np.random.default_rng(0)
    norm = np.r_[1 + 0.1 * rng.random(level), factor ** np.arange(1, grow + 1), np.nan]
    loss = np.r_[np.full(level, 2.0), 2.0 * 1.5 ** np.arange(1, grow + 1), np.nan]
    return loss, {"encoder": 0.1 * norm, "next": norm}


def test_a_norm_that_grows_by_orders_before_a_nan_is_found_where_it_grew():
    loss, norms = diverging()
    (finding,) = trend(loss, norms)
    assert finding.code == "EXPLODING_GRADIENTS" and finding.severity == "warning"
    evidence = finding.evidence
    assert finding.step == 32  # the first step at 10x the median (100)
    assert evidence["blow_up_step"] == 39 and np.isnan(evidence["loss"])
    assert evidence["norm_baseline"] == pytest.approx(1.05, rel=0.05)
    assert evidence["norm_peak"] == pytest.approx(1.005e8, rel=0.01)
    assert evidence["layer"] == "next" and evidence["learning_rate"] == 0.5
    assert evidence["norms"][:2] == pytest.approx([100.5, 1005], rel=0.01)
    assert "the learning rate was 0.5" in finding.message
    assert "to 0.05 or below" in finding.fix and "clipnorm" in finding.fix


def test_a_gradient_that_overflows_before_the_loss_is_found():
    loss, norms = diverging(grow=3)
    loss[-1] = 50.0  # finite
    norms["next"][-1], norms["encoder"][-1] = np.inf, 1e3
    (finding,) = trend(loss, norms)
    assert finding.evidence["norm_peak"] == np.inf
    assert "past float32's range" in finding.message


def test_a_finite_loss_that_jumps_a_hundredfold_counts_as_a_blow_up():
    loss, norms = diverging(grow=4)
    loss[-1] = 1e4  # 5000x the median 2.0, no NaN
    norms = {k: np.r_[v[:-1], v[-2] * 10] for k, v in norms.items()}
    assert [f.code for f in trend(loss, norms)] == ["EXPLODING_GRADIENTS"]


@pytest.mark.parametrize(
    "case",
    [
        "a NaN with a level norm (NaN inputs)",
        "a norm 10x its median before the NaN",
        "a norm spike that recovers, no NaN",
        "a loss that jumps 10x",
        "no gradient columns",
    ],
)
def test_what_is_not_an_explosion(case):
    rng = np.random.default_rng(1)
    norm = 1 + 0.1 * rng.random(60)
    loss = np.full(60, 2.0)
    if case == "a NaN with a level norm (NaN inputs)":
        loss[-1], norm[-1] = np.nan, np.nan
    elif case == "a norm 10x its median before the NaN":
        norm[50:59] *= 10
        loss[-1], norm[-1] = np.nan, np.nan
    elif case == "a norm spike that recovers, no NaN":
        norm[30] *= 1000
        loss[30] = 8.0
    elif case == "a loss that jumps 10x":
        norm[40:] *= 1000
        loss[40:] = 20.0
    norms = {} if case == "no gradient columns" else {"next": norm}
    assert trend(loss, norms) == []


# ---------------------------------------------------------------- vanishing
def stack(first=1e-5, steps=VANISHING_STEPS, loss=3.7, layers=4):
    """Norms of `layers` layers from `first` up to 1 (geometric), a loss
    that stays at `loss`."""
    rng = np.random.default_rng(2)
    scale = np.geomspace(first, 1.0, layers)
    norms = {
        f"hidden_{i}": s * (1 + 0.2 * rng.random(steps)) for i, s in enumerate(scale)
    }
    return loss + 0.05 * rng.normal(size=steps), norms


def test_first_layers_orders_below_the_last_while_the_loss_stays_are_found():
    loss, norms = stack()
    (finding,) = trend(loss, norms)
    assert finding.code == "VANISHING_GRADIENTS" and finding.step == 1
    evidence = finding.evidence
    assert evidence["layer"] == "hidden_0" and evidence["last_layer"] == "hidden_3"
    assert evidence["ratio"] == pytest.approx(1e-5, rel=0.3)
    assert "5.0 orders of magnitude below the last layer 'hidden_3'" in (
        finding.message
    )


@pytest.mark.parametrize(
    "case",
    [
        "a loss that falls 10%",
        "a first layer at 1/100 of the last",
        "a first layer at exactly 0",
        "a first layer whose share grows (a zero head warming up)",
        "199 steps",
        "one layer",
    ],
)
def test_what_is_not_vanishing(case):
    kw = {}
    if case == "a first layer at 1/100 of the last":
        kw["first"] = 1e-2
    if case == "199 steps":
        kw["steps"] = VANISHING_STEPS - 1
    if case == "one layer":
        kw["layers"] = 1
    loss, norms = stack(**kw)
    if case == "a loss that falls 10%":
        loss = np.linspace(3.7, 3.3, len(loss))
    if case == "a first layer whose share grows (a zero head warming up)":
        for name in ("hidden_0", "hidden_1", "hidden_2"):  # all below the head
            norms[name] = norms[name] * np.linspace(1, 100, len(loss))
    if case == "a first layer at exactly 0":
        norms["hidden_0"][:] = 0.0
        norms["hidden_1"][:] = 1.0
    assert trend(loss, norms) == []


# --------------------------------------------------------------------- dead
def dead_row(share, samples):
    row = statistics_row(SPEC, [1, 2], np.full((2, 10), 0.1), loss=2.0)
    return {**row, "dead:dense": share, "samples:dense": float(samples)}


def test_a_relu_layer_dead_on_a_batch_of_16_samples_is_found():
    (finding,) = check_batch(dead_row(0.95, DEAD_SAMPLES_MIN), [SPEC])
    assert finding.code == "DEAD_UNITS" and finding.severity == "warning"
    assert finding.evidence["layer"] == "dense"
    assert finding.evidence["dead_share"] == pytest.approx(0.95)
    assert "95% of layer 'dense''s units output exactly 0" in finding.message
    assert "all 16 samples of the batch" in finding.message


@pytest.mark.parametrize("share, samples", [(0.85, 64), (0.95, DEAD_SAMPLES_MIN - 1)])
def test_a_batch_too_small_or_a_layer_mostly_alive_is_not_dead(share, samples):
    assert check_batch(dead_row(share, samples), [SPEC]) == []


def test_small_batches_dead_one_after_another_add_up_to_a_finding():
    n = DEAD_STREAK_SAMPLES
    columns = {
        "loss": np.full(n + 5, 2.0),
        "data_loss": np.full(n + 5, 2.0),
        "dead:dense": np.r_[np.full(5, 0.5), np.ones(n)],
        "samples:dense": np.ones(n + 5),
    }
    steps = np.arange(1, n + 6)
    (finding,) = check_trend(columns, [SPEC], steps, np.zeros(n + 5, int))
    assert finding.code == "DEAD_UNITS" and finding.step == 6
    assert f"each of the {n} training batches since step 6 ({n} samples)" in (
        finding.message
    )
    columns["dead:dense"][10] = 0.5  # the streak broken: too few samples since
    assert check_trend(columns, [SPEC], steps, np.zeros(n + 5, int)) == []
