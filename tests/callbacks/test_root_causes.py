"""The callback leads with root causes: one warning per root cause, one raise
per batch naming every root cause, and crashes placed at their batch."""

import warnings

import keras
import numpy as np
import pytest

import lossguard
from lossguard.testing import tiny_seq2seq
from tests.helpers import classifier


def binary_on_categorical():
    """A 1-unit sigmoid under categorical cross-entropy (keras-team/keras#17029)."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    model = classifier(units=1, activation="sigmoid")
    model.compile("adam", "categorical_crossentropy")
    return model, x, y


def test_only_the_root_cause_warns_and_its_consequences_sit_under_it():
    model, x, y = binary_on_categorical()
    cb = lossguard.LossSanityCallback(action="warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[cb])
    ours = [w for w in caught if issubclass(w.category, lossguard.LossSanityWarning)]
    assert len(ours) == 1, [str(w.message)[:80] for w in ours]
    message = str(ours[0].message)
    assert message.startswith("[ERROR] SINGLE_UNIT_CATEGORICAL")
    # Short (the report has the story) and pointing at the user's fit call.
    assert "Why:" not in message and "print(callback.report)" in message
    if keras.backend.backend() == "tensorflow":  # hooks on the fit thread
        assert ours[0].filename == __file__
    report = cb.report
    assert [f.code for f in report.root_causes()] == ["SINGLE_UNIT_CATEGORICAL"]
    follow = {f.code for f in report.consequences("SINGLE_UNIT_CATEGORICAL")}
    assert follow == {"EMPTY_LABEL_ROWS", "PREDICTIONS_NOT_PROBABILITIES"}
    for finding in report.findings[1:]:
        assert finding.step == 0 and finding.phase == "train"
        assert "It follows from SINGLE_UNIT_CATEGORICAL" in finding.explanation
    text = str(report)
    assert text.index("SINGLE_UNIT_CATEGORICAL") < text.index("EMPTY_LABEL_ROWS")
    assert "from_logits=True" not in text.split("First thing to fix")[1]


def test_raise_names_every_root_cause_of_the_batch():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(48, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 48)]
    y[0] = [-1.0, 1.0, 1.0]  # a -1 entry in the first batch
    weights = np.ones(48, "float32")
    weights[1] = -2.0  # and a negative weight in the same batch
    model = classifier()
    model.compile("adam", "categorical_crossentropy")
    cb = lossguard.LossSanityCallback(action="raise")
    with pytest.raises(lossguard.LossSanityError) as raised:
        model.fit(
            x,
            y,
            sample_weight=weights,
            batch_size=16,
            shuffle=False,
            verbose=0,
            callbacks=[cb],
        )
    roots = {f.code for f in raised.value.report.root_causes("error")}
    assert roots == {"NEGATIVE_LABELS", "NEGATIVE_WEIGHTS"}
    assert str(raised.value).startswith("lossguard found 2 root cause(s)")
    assert all(f.step == 0 for f in raised.value.report.findings)


def test_stop_acts_once_for_a_cause_and_its_consequences():
    model, x, y = binary_on_categorical()
    cb = lossguard.LossSanityCallback(action="stop")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[cb])
    assert len(history.history["loss"]) == 1  # stopped in the first epoch
    assert cb.report.root_causes()[0].code == "SINGLE_UNIT_CATEGORICAL"


def detection_loss(y_true, y_pred):
    """A custom loss that calls Keras' sparse cross-entropy inside."""
    ce = keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
    return ce + 0.0 * keras.ops.sum(y_pred, axis=-1)


@pytest.mark.backends
@pytest.mark.parametrize("phase", ["train", "validation"])
def test_a_label_crash_is_explained_at_its_batch_whatever_the_loss(phase):
    if keras.backend.backend() == "jax":
        pytest.skip("JAX one-hot encodes an id out of range as zeros: no crash")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = rng.integers(0, 3, 64)
    bad = y.copy()
    bad[2 * 16 + 5] = 3  # class id == K, in the third batch
    model = classifier()
    model.compile("adam", detection_loss)
    cb = lossguard.LossSanityCallback(action="record")
    if phase == "train":
        fit = {"x": x, "y": bad}
    else:
        fit = {"x": x, "y": y, "validation_data": (x, bad)}
    with pytest.raises(Exception) as raised:  # Keras' own error goes through
        model.fit(**fit, batch_size=16, shuffle=False, verbose=0, callbacks=[cb])
    assert "lossguard" not in type(raised.value).__module__
    f = cb.report.get("LABELS_OUT_OF_RANGE")
    assert f is not None, cb.report
    assert (f.epoch, f.step, f.phase) == (0, 2, phase)
    assert f.evidence["label"] == 3 and f.evidence["valid_range"] == "[0, 3)"
    if keras.backend.backend() == "tensorflow":
        assert "detection_loss" in f.evidence["op"]
    where = "validation step 2" if phase == "validation" else "step 2"
    assert f"(epoch 0, {where})" in str(f)
    report = lossguard.diagnose(model, x, bad, batch_size=16)
    assert report.get("LABELS_OUT_OF_RANGE").step == 2


def test_an_epsilon_float16_cannot_hold_is_the_cause_of_the_nan():
    model, x, y = tiny_seq2seq("OPTIMIZER_EPSILON_UNDERFLOW", n=64)
    cb = lossguard.LossSanityCallback(action="record")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[cb])
    assert cb.report.root_causes()[0].code == "OPTIMIZER_EPSILON_UNDERFLOW"
    nan = cb.report.get("NONFINITE_LOSS")
    assert nan is not None and nan.caused_by == "OPTIMIZER_EPSILON_UNDERFLOW"
    assert not np.isfinite(cb.history.loss).all()
