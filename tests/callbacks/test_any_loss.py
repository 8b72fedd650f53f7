"""Any loss, any batch: losses known by how they behave, validation batches,
the seq2seq checks inside fit, and a negative loss that nothing explains."""

import functools
import logging
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import lossguard
from lossguard.diagnosis.specs import output_specs
from lossguard.testing import tiny_seq2seq
from tests.helpers import (
    T,
    V,
    classifier,
    loud,
    onehot,
    seq2seq,
    token_data,
    watched_fit,
)
from tests.realworld.scenarios import (  # the losses as keras.io and forums write them
    CustomNonPaddingTokenLoss as NonPaddingTokenLoss,
)
from tests.realworld.scenarios import clipped_loss, masked_loss


def fit(model, x, y, **fit_kwargs):
    """Batches of 16; these setups make Keras warn on purpose."""
    return watched_fit(model, x, y, batch_size=16, keras_warnings=False, **fit_kwargs)


# ------------------------------------------------------- the forum's losses
def test_clipped_loss_on_glove_targets_is_found_and_the_clip_named():
    model, x, y = tiny_seq2seq("NEGATIVE_LABELS", n=48)
    model.compile("adam", clipped_loss)
    cb = fit(model, x, y)
    assert (cb.history.loss >= 0).all()  # the clip hides it from the loss
    f = cb.report.get("NEGATIVE_LABELS")
    assert f is not None and f.step == 0 and f.phase == "train"
    assert f.evidence["label_min"] == pytest.approx(cb.history.label_min.iloc[0])
    assert f.evidence["label_min"] < -2
    assert f.evidence["clip"] == [0.0, 10.0]
    assert 0 < f.evidence["at_clip_share"] <= 1
    assert "clipped into [0, 10]" in f.evidence["loss_identified"]
    assert "hides this fault" in f.message
    d = lossguard.diagnose(model, x, y).get("NEGATIVE_LABELS")
    assert d is not None and d.evidence["clip"] == [0.0, 10.0]


def handwritten_ce(y_true, y_pred):
    return -ops.sum(y_true * ops.log(y_pred + 1e-7), axis=-1)


def test_handwritten_cross_entropy_on_relu_outputs():
    x, ids = token_data()
    model = seq2seq(activation="relu")
    model.compile("adam", handwritten_ce)
    cb = fit(model, x, onehot(ids))
    f = cb.report.get("PREDICTIONS_NOT_PROBABILITIES")
    assert f is not None and f.step == 0 and f.phase == "train"
    assert f.evidence["activation"] == "relu" and f.evidence["pred_min"] >= 0
    assert abs(f.evidence["pred_sum_min"] - 1) > 0.5  # rows are not distributions
    assert (
        "categorical cross-entropy on probabilities" in (f.evidence["loss_identified"])
    )
    report = lossguard.diagnose(model, x, onehot(ids))
    assert "PREDICTIONS_NOT_PROBABILITIES" in report.codes


# -------------------------------------------------------- validation batches
def test_negative_val_loss_from_a_padding_row_only_in_validation():
    x, ids = token_data(n=64)
    y = onehot(ids)
    xv, yv = x[:32].copy(), y[:32].copy()
    yv[5, 3] = -1.0  # a hand-rolled -1 padding row, validation labels only
    model = seq2seq()
    model.compile("adam", "categorical_crossentropy")
    cb = fit(model, x, y, epochs=2, validation_data=(xv, yv))
    h = cb.history
    assert set(h.phase) == {"train", "validation"}
    assert (h[h.phase == "train"].label_min >= 0).all()
    val = h[h.phase == "validation"]
    assert len(val) == 2 * 2 and (val.label_min == -1.0).sum() == 2
    f = cb.report.get("NEGATIVE_LABELS")
    assert f.phase == "validation" and f.epoch == 0 and f.step == 0
    assert f.evidence["first_sample"] == 5 and f.evidence["first_position"] == 3
    assert "validation step 0" in str(f)
    # evaluate(callbacks=[cb]) watches the same batches on its own.
    cb2 = lossguard.LossSanityCallback(action="record")
    model.evaluate(xv, yv, batch_size=16, verbose=0, callbacks=[cb2])
    assert cb2.report.get("NEGATIVE_LABELS").phase == "validation"
    assert list(cb2.history.phase) == ["validation"] * 2
    assert "compute_loss" not in vars(model)  # evaluate restored the model


def test_validation_split_rows_and_training_only_findings():
    x, ids = token_data(n=64)
    model = seq2seq()
    model.compile("adam", "sparse_categorical_crossentropy")
    cb = fit(model, x, ids, epochs=2, validation_split=0.25)
    counts = cb.history.groupby(["epoch", "phase"]).size().to_dict()
    assert counts == {
        (0, "train"): 3,
        (0, "validation"): 1,
        (1, "train"): 3,
        (1, "validation"): 1,
    }
    assert loud(cb.report) == []


# ----------------------------------------------------- seq2seq inside fit
def test_decoder_shift_and_padding_are_found_during_fit():
    for code, evidence in (
        ("DECODER_TARGET_NOT_SHIFTED", lambda e: e["copy_share"] == 1.0),
        ("PADDING_NOT_MASKED", lambda e: e["pad_share"] > 0.5 and not e["mask"]),
    ):
        model, x, y = tiny_seq2seq(code, n=32)
        cb = fit(model, x, y)
        f = cb.report.get(code)
        assert f is not None and f.step == 0 and f.phase == "train", code
        assert evidence(f.evidence), f.evidence
        d = lossguard.diagnose(model, x, y, batch_size=16).get(code)
        assert d.evidence == f.evidence  # the same check on the same statistics


def test_one_hot_decoder_inputs_not_shifted():
    """keras.io's character-level lstm_seq2seq feeds one-hot arrays."""
    rng = np.random.default_rng(0)
    k, steps = 12, 7
    target = rng.integers(1, k, (48, steps))
    enc_in = keras.Input((None, k))
    dec_in = keras.Input((None, k))
    _, h, c = keras.layers.LSTM(16, return_state=True)(enc_in)
    seq = keras.layers.LSTM(16, return_sequences=True)(dec_in, initial_state=[h, c])
    model = keras.Model([enc_in, dec_in], keras.layers.Dense(k, "softmax")(seq))
    model.compile("rmsprop", "categorical_crossentropy")
    enc = onehot(rng.integers(1, k, (48, steps)), k)
    unshifted = [enc, onehot(target, k)], onehot(target, k)
    f = fit(model, *unshifted).report.get("DECODER_TARGET_NOT_SHIFTED")
    assert f is not None and f.evidence["input"] == 1
    shifted_dec = np.concatenate([np.zeros((48, 1), int), target[:, :-1]], axis=1)
    cb = fit(model, [enc, onehot(shifted_dec, k)], onehot(target, k))
    assert loud(cb.report) == []


# ------------------------------------------------- a negative loss, unexplained
def test_negative_loss_that_no_code_explains_is_a_warning():
    model, x, y = tiny_seq2seq("NEGATIVE_LOSS", n=32)
    cb = fit(model, x, y)
    f = cb.report.get("NEGATIVE_LOSS")
    assert f.severity == "warning" and f.step == 0
    assert f.evidence["loss"] < 0 and f.evidence["aux_loss"] == 0
    assert "is a Keras or lossguard loss" in f.evidence["identified"]
    assert cb.report.codes == {"NEGATIVE_LOSS"}


def test_a_negative_loss_whose_floor_is_unknown_is_one_info_line():
    """A loss no probe can call (it reads labels packed as [id, weight]):
    lossguard cannot tell whether it may be negative, so it says so as info."""

    def packed_weights(y_true, y_pred):
        if y_true.shape[-1] != 2:
            raise ValueError("y_true must be [id, weight] per token")
        ids, weight = y_true[..., 0], y_true[..., 1]
        ce = keras.losses.sparse_categorical_crossentropy(
            ops.cast(ids, "int32"), y_pred
        )
        return weight * ce

    x, ids = token_data()
    weights = np.where(ids > 0, -1.0, 0.0)  # the sign bug lives in the data
    y = np.stack([ids, weights], -1).astype("float32")
    model = seq2seq(mask_zero=False)
    model.compile("adam", packed_weights)
    (spec,) = output_specs(model)
    assert spec.floor == "unknown"
    cb = fit(model, x, y)
    f = cb.report.get("NEGATIVE_LOSS")
    assert f is not None and f.severity == "info" and f.step == 0
    assert "does not know whether this loss can be negative" in f.message
    assert loud(cb.report) == []


def test_cosine_loss_negative_by_design_is_info_only():
    x = np.random.default_rng(0).normal(size=(64, 4))
    y = np.random.default_rng(1).normal(size=(64, 3))
    model = classifier(activation=None)
    model.compile(
        "adam", lambda a, b: -ops.sum(ops.normalize(a) * ops.normalize(b), -1)
    )
    cb = fit(model, x, y, epochs=2)
    assert (cb.history.loss < 0).any()
    assert loud(cb.report) == []
    assert "LOSS_UNBOUNDED_BELOW" in cb.report.codes


# --------------------------------------------------------- identification
def fails_on_probes(y_true, y_pred):
    raise RuntimeError("a loss lossguard cannot call outside the model")


IDENTIFIED = {
    "function": (handwritten_ce, "softmax", ("categorical", False, None, None)),
    "lambda": (
        lambda y, p: keras.losses.categorical_crossentropy(y, p),
        "softmax",
        ("categorical", False, None, None),
    ),
    "partial": (
        functools.partial(keras.losses.categorical_crossentropy, label_smoothing=0.0),
        "softmax",
        ("categorical", False, None, None),
    ),
    "Loss subclass": (NonPaddingTokenLoss(), None, ("sparse", True, None, 0)),
    "NMT masked mean": (masked_loss, None, ("sparse", True, None, 0)),
    "clipped wrapper": (clipped_loss, "softmax", ("categorical", False, (0, 10), None)),
    "label-smoothed lambda": (
        lambda y, p: keras.losses.categorical_crossentropy(y, p, label_smoothing=0.1),
        "softmax",
        ("categorical", False, None, None),
    ),
    "cosine-style": (
        lambda y, p: -ops.sum(ops.normalize(y) * ops.normalize(p), axis=-1),
        None,
        ("unbounded", False, None, None),
    ),
    "raises on probes": (fails_on_probes, "softmax", ("other", False, None, None)),
    "ignores id -1": (
        lambda y, p: keras.losses.sparse_categorical_crossentropy(
            y, p, ignore_class=-1
        ),
        "softmax",
        ("sparse", False, None, -1),
    ),
}


def gaussian_nll(y_true, y_pred):
    """keras-team/keras#12423's loss: outputs [mu, sigma] in one tensor."""
    mu, sigma = y_pred[..., :1], ops.abs(y_pred[..., 1:]) + 1e-3
    z = (y_true - mu) / sigma
    return ops.mean(0.5 * z**2 + ops.log(sigma) + 0.9189, axis=-1)


def contrastive(y_true, y_pred):
    """Hadsell et al.'s contrastive loss: >= 0 for its 0/1 labels."""
    return ops.mean(
        y_true * ops.square(y_pred) + (1 - y_true) * ops.square(ops.relu(1 - y_pred))
    )


def dice_loss(y_true, y_pred, smooth=1.0):
    inter = ops.sum(y_true * y_pred)
    return 1 - (2 * inter + smooth) / (ops.sum(y_true) + ops.sum(y_pred) + smooth)


@pytest.mark.parametrize(
    "loss, units, activation, kind, floor",
    [
        (gaussian_nll, 2, None, "unbounded", "below"),
        (contrastive, 1, None, "other", "zero"),
        (dice_loss, 1, "sigmoid", "binary", "zero"),
        (lambda y, p: -(1 - dice_loss(y, p)), 1, "sigmoid", "binary", "below"),
        (lambda y, p: ops.mean(y * p), 1, None, "unbounded", "below"),  # WGAN
    ],
    ids=["gaussian-nll", "contrastive", "dice", "minus-dice", "wasserstein"],
)
def test_a_loss_floor_is_probed_on_valid_labels_only(
    loss, units, activation, kind, floor
):
    inputs = keras.Input((4,))
    model = keras.Model(
        inputs, keras.layers.Dense(units, activation=activation)(inputs)
    )
    model.compile("adam", loss)
    (spec,) = output_specs(model)
    assert (spec.kind, spec.floor) == (kind, floor), spec.identified


@pytest.mark.parametrize("name", list(IDENTIFIED))
def test_losses_are_identified_by_how_they_behave(name, caplog):
    loss, activation, (kind, logits, clip, ignore) = IDENTIFIED[name]
    model = seq2seq(activation=activation)
    model.compile("adam", loss)
    with caplog.at_level(logging.INFO, logger="lossguard"):
        (spec,) = output_specs(model)
    assert (spec.kind, spec.from_logits, spec.ignore_class) == (kind, logits, ignore)
    assert spec.clip == (None if clip is None else tuple(float(c) for c in clip))
    assert spec.identified
    if name == "label-smoothed lambda":
        assert spec.label_smoothing == pytest.approx(0.1, abs=1e-3)
    unknown = [r for r in caplog.records if "cannot tell what the loss" in r.message]
    assert len(unknown) == (1 if kind == "other" else 0)
    if name == "raises on probes":
        assert "raised on every probe" in unknown[0].message


def test_identification_changes_no_model_state():
    model = seq2seq()
    model.compile("adam", clipped_loss)
    before = [w.copy() for w in model.get_weights()]
    output_specs(model)
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert model.optimizer.iterations.numpy() == 0


@pytest.mark.parametrize("loss", ["masked", "smoothed"])
def test_healthy_custom_losses_stay_quiet(loss):
    x, ids = token_data(n=64, pad_tail=3)
    if loss == "masked":  # logits, padding masked by the loss itself
        model = seq2seq(mask_zero=False, activation=None)
        model.compile("adam", masked_loss)
        y = ids
    else:
        model = seq2seq()
        model.compile(
            "adam",
            lambda a, b: keras.losses.categorical_crossentropy(
                a, b, label_smoothing=0.1
            ),
        )
        y = onehot(ids)
    cb = fit(model, x, y, epochs=2, validation_split=0.25)
    assert loud(cb.report) == [], str(cb.report)
    assert loud(lossguard.diagnose(model, x, y)) == []


def test_partial_loss_trains_with_the_callback():
    x, ids = token_data()
    model = seq2seq()
    model.compile(
        "adam",
        functools.partial(keras.losses.categorical_crossentropy, label_smoothing=0.0),
    )
    cb = fit(model, x, onehot(ids), epochs=2)
    assert len(cb.history) == 6 and cb.history.loss.notna().all()
    assert loud(cb.report) == []


def test_custom_sparse_logits_loss_on_softmax_is_probabilities_as_logits():
    """keras.io's NER transformer: from_logits=True on a softmax output."""
    x, ids = token_data(n=48, pad_tail=1)
    model = seq2seq()
    model.compile("adam", NonPaddingTokenLoss())
    ds = tf.data.Dataset.from_tensor_slices((x, ids)).batch(20)  # partial last
    cb = lossguard.LossSanityCallback(action="record")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(ds, epochs=2, verbose=0, callbacks=[cb])
    assert len(cb.history) == 6  # every batch of both epochs, the last partial
    assert "PROBABILITIES_AS_LOGITS" in cb.report.codes
    assert "PROBABILITIES_AS_LOGITS" in lossguard.diagnose(model, ds).codes


# ------------------------------------------------- diagnose takes what fit takes
def test_diagnose_takes_class_weight_like_fit():
    x = np.random.default_rng(0).normal(size=(40, 4))
    y = np.random.default_rng(1).integers(0, 3, (40,))
    model = classifier()
    model.compile("adam", "sparse_categorical_crossentropy")
    report = lossguard.diagnose(model, x, y, class_weight={0: 1.0, 1: -2.0})
    f = report.get("NEGATIVE_WEIGHTS")
    assert f.evidence["weight_min"] == -2.0
    assert f.evidence["negative_share"] == pytest.approx(np.mean(y[:32] == 1))
    with pytest.raises(ValueError, match="class_weight"):
        lossguard.diagnose(model, x, y, np.ones(40), class_weight={0: 1.0})


def test_diagnose_a_model_that_adds_its_loss_with_y_none():
    inp = keras.Input((T,), dtype="int32")
    tgt = keras.Input((T,), dtype="int32")
    h = keras.layers.Embedding(V, 8)(inp)
    probs = keras.layers.Dense(V, activation="softmax")(h)

    class EndPoint(keras.layers.Layer):
        def call(self, targets, probs):
            self.add_loss(
                ops.mean(keras.losses.sparse_categorical_crossentropy(targets, probs))
            )
            return probs

    model = keras.Model([inp, tgt], EndPoint()(tgt, probs))
    model.compile("adam")
    x, ids = token_data()
    report = lossguard.diagnose(model, [x, ids])
    assert loud(report) == []
    cb = fit(model, [x, ids], None)
    assert cb.history.aux_loss.gt(0).all()


def test_a_custom_loss_that_ignores_minus_one_gets_no_false_range_error():
    """Labels padded with -1 under a loss that ignores -1 (ignore_class=-1
    inside a hand-written loss): the padding is not out of range."""

    def masked(y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(
            y_true, y_pred, ignore_class=-1
        )

    x, ids = token_data(pad_tail=2)
    y = np.where(ids == 0, -1, ids)
    model = seq2seq(mask_zero=False)
    model.compile("adam", masked)
    (spec,) = output_specs(model)
    assert spec.kind == "sparse" and spec.ignore_class == -1
    assert "ignoring padding id -1" in spec.identified
    cb = fit(model, x, y)
    assert loud(cb.report) == [], str(cb.report)
    assert loud(lossguard.diagnose(model, x, y)) == []
    y[0, 0] = V  # a real id out of range is still found
    assert "LABELS_OUT_OF_RANGE" in lossguard.diagnose(model, x, y).codes
