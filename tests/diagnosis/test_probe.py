"""Losses known by how they behave (`lossguard.diagnosis.probe.identify`),
called directly on loss functions, without a model: the family, its
settings (logits, smoothing, clip, ignored id) and the floor, as the
module's docstring promises them.

Only `identify` is imported from the module (the name the package uses),
so these tests hold while the module is split."""

import keras
import pytest
from keras import ops

from lossguard.diagnosis.probe import identify
from lossguard.kinds import LossKind

pytestmark = pytest.mark.backends
cce = keras.losses.categorical_crossentropy
scce = keras.losses.sparse_categorical_crossentropy
bce = keras.losses.binary_crossentropy


def dice(y, p, smooth=1.0):
    """1 - dice over the whole batch (the forums' segmentation loss)."""
    inter = ops.sum(y * p)
    return 1 - (2 * inter + smooth) / (ops.sum(y) + ops.sum(p) + smooth)


def dice_per_sample(y, p, smooth=0.5):
    axes = tuple(range(1, len(y.shape)))
    inter = ops.sum(y * p, axis=axes)
    return 1 - (2 * inter + smooth) / (
        ops.sum(y, axis=axes) + ops.sum(p, axis=axes) + smooth
    )


def gaussian_nll(y, p):
    """Outputs [mean, scale] in one tensor: a density's negative log."""
    mean, scale = p[..., :1], ops.abs(p[..., 1:]) + 1e-3
    z = (y - mean) / scale
    return ops.mean(0.5 * z**2 + ops.log(scale) + 0.9189, axis=-1)


# ------------------------------------------------------ cross-entropy-like
CROSS_ENTROPIES = {
    # id: (loss, output shape, activation) -> (kind, from_logits, smoothing)
    "keras cce": ((cce, (None, 5), "softmax"), ("categorical", False, 0.0)),
    "cce over a sequence": (
        (cce, (None, 7, 5), "softmax"),
        ("categorical", False, 0.0),
    ),
    "hand-written -sum(y log p)": (
        (lambda y, p: -ops.sum(y * ops.log(p), axis=-1), (None, 5), "softmax"),
        ("categorical", False, 0.0),
    ),
    "cce on logits": (
        (lambda y, p: cce(y, p, from_logits=True), (None, 5), None),
        ("categorical", True, 0.0),
    ),
    "cce smoothed 0.2": (
        (lambda y, p: cce(y, p, label_smoothing=0.2), (None, 5), "softmax"),
        ("categorical", False, 0.2),
    ),
    "sparse": ((scce, (None, 4, 5), "softmax"), ("sparse", False, 0.0)),
    "sparse on logits": (
        (lambda y, p: scce(y, p, from_logits=True), (None, 5), None),
        ("sparse", True, 0.0),
    ),
    "kl": ((keras.losses.kl_divergence, (None, 5), "softmax"), ("kl", False, 0.0)),
    "binary, one unit": ((bce, (None, 1), "sigmoid"), ("binary", False, 0.0)),
    "binary, multi-label": ((bce, (None, 6), "sigmoid"), ("binary", False, 0.0)),
    "binary on logits smoothed": (
        (
            lambda y, p: bce(y, p, from_logits=True, label_smoothing=0.2),
            (None, 1),
            None,
        ),
        ("binary", True, 0.2),
    ),
}


@pytest.mark.parametrize("case", list(CROSS_ENTROPIES))
def test_cross_entropy_like_losses_are_identified_with_their_settings(case):
    (loss, shape, activation), (kind, logits, smoothing) = CROSS_ENTROPIES[case]
    found = identify(loss, shape, activation)
    assert found.kind == kind and isinstance(found.kind, LossKind)
    assert found.from_logits is logits
    assert found.label_smoothing == pytest.approx(smoothing, abs=1e-3)
    assert found.floor == "zero"
    on = "logits" if logits else "probabilities"
    assert found.how.startswith("behaves as ") and f" on {on}" in found.how
    if smoothing:
        assert f"label smoothing {smoothing:g}" in found.how


def test_an_epsilon_inside_the_log_is_not_a_clip():
    found = identify(lambda y, p: -ops.sum(y * ops.log(p + 1e-7), -1), (None, 5))
    assert (found.kind, found.clip) == ("categorical", None)


@pytest.mark.parametrize(
    "clipped, bounds, words",
    [
        (lambda v: ops.clip(v, 0.0, 10.0), (0.0, 10.0), "clipped into [0, 10]"),
        (lambda v: ops.minimum(v, 5.0), (None, 5.0), "clipped into [-inf, 5]"),
        (lambda v: ops.maximum(v, 0.0), (0.0, None), "clipped into [0, inf]"),
    ],
    ids=["both", "upper", "lower"],
)
def test_a_clip_is_measured_with_its_bounds(clipped, bounds, words):
    found = identify(lambda y, p: clipped(cce(y, p)), (None, 5), "softmax")
    assert (found.kind, found.clip) == ("categorical", bounds)
    assert found.how.endswith(words)


@pytest.mark.parametrize("pad", [0, -1, -100])
def test_a_masked_mean_ignores_its_padding_id(pad):
    def masked(y, p):
        return scce(y, p, from_logits=True, ignore_class=pad)

    found = identify(masked, (None, 4, 6))
    assert (found.kind, found.from_logits, found.ignored_id) == ("sparse", True, pad)
    assert found.how.endswith(f"ignoring padding id {pad}")


def test_a_plain_sparse_loss_ignores_no_id():
    assert identify(scce, (None, 4, 6), "softmax").ignored_id is None


# ------------------------------------------------------------------- Dice
@pytest.mark.parametrize(
    "loss, floor, how",
    [
        (dice, "zero", "behaves as 1 - dice (smooth 1, over the batch)"),
        (dice_per_sample, "zero", "behaves as 1 - dice (smooth 0.5, per sample)"),
        (
            lambda y, p: dice(y, p) - 1,
            "below",
            "behaves as -dice (smooth 1, over the batch)",
        ),
    ],
    ids=["1 - dice", "per sample", "-dice"],
)
def test_dice_is_binary_with_its_smoothing_and_its_sign(loss, floor, how):
    found = identify(loss, (None, 8), "sigmoid")
    assert (found.kind, found.floor, found.how) == ("binary", floor, how)
    assert ("negative by design" in found.floor_how) == (floor == "below")


# ------------------------------------------------------- the floor, probed
@pytest.mark.parametrize(
    "loss, shape, activation",
    [
        (keras.losses.cosine_similarity, (None, 3), None),
        (gaussian_nll, (None, 2), None),  # [mean, scale] for labels of width 1
        (lambda y, p: ops.mean(y * p), (None, 1), None),  # a Wasserstein critic
        (lambda y, p: ops.mean(p, axis=-1), (None, 3), None),
    ],
    ids=["cosine", "gaussian-nll", "wasserstein", "mean-prediction"],
)
def test_a_loss_negative_on_valid_inputs_is_unbounded_by_design(
    loss, shape, activation
):
    found = identify(loss, shape, activation)
    assert (found.kind, found.floor) == ("unbounded", "below")
    assert found.how == f"negative by design: {found.floor_how}"
    assert "on valid labels and predictions" in found.floor_how
    value = float(found.floor_how.split()[0])
    assert value < -1e-4  # the value the probe measured


@pytest.mark.parametrize(
    "activation, floor",
    [(None, "below"), ("linear", "below"), ("sigmoid", "zero"), ("relu", "zero")],
)
def test_the_floor_is_probed_only_with_predictions_the_output_can_make(
    activation, floor
):
    """mean(y_pred) is negative only where the output can go below zero."""
    found = identify(lambda y, p: ops.mean(p, axis=-1), (None, 3), activation)
    assert found.floor == floor


@pytest.mark.parametrize(
    "loss",
    [
        keras.losses.mean_squared_error,
        keras.losses.huber,
        keras.losses.hinge,
    ],
    ids=["mse", "huber", "hinge"],
)
def test_a_non_negative_loss_of_no_family_has_a_measured_zero_floor(loss):
    found = identify(loss, (None, 3))
    assert (found.kind, found.floor) == ("other", "zero")
    assert found.how == "it behaves as no cross-entropy, KL, Dice or similarity known"
    assert found.floor_how.startswith(">= 0 on ")
    assert "labels in [0, 1]" in found.floor_how


def test_a_loss_that_raises_on_every_probe_has_an_unknown_floor():
    def packed(y, p):
        raise ValueError("y_true must be [id, weight] per token")

    found = identify(packed, (None, 5), "softmax")
    assert (found.kind, found.floor) == ("other", "unknown")
    assert found.how == (
        "it raised on every probe (ValueError: y_true must be [id, weight] per token)"
    )


@pytest.mark.parametrize("shape", [(None, None), (None,), ()])
def test_an_output_without_a_known_class_axis_is_not_probed(shape):
    calls = []

    def loss(y, p):
        calls.append(1)
        return cce(y, p)

    found = identify(loss, shape)
    assert (found.kind, found.floor) == ("other", "unknown")
    assert found.how == "not probed: the output's class axis is unknown"
    assert calls == []


def test_probing_is_deterministic():
    """A spec, and the findings that quote it, must not change between runs."""
    for loss, shape in ((dice, (None, 8)), (gaussian_nll, (None, 2))):
        assert identify(loss, shape) == identify(loss, shape)


def sparse_focal(y, p, gamma=2.0):
    """A focal loss over class ids: >= 0, and no cross-entropy."""
    ce = scce(y, p)
    return (1 - ops.exp(-ce)) ** gamma * ce


def test_a_loss_of_class_ids_outside_the_families_gets_a_measured_floor():
    found = identify(sparse_focal, (None, 6), "softmax")
    assert found.kind == "other"
    assert found.floor == "zero", found.floor_how
