"""LossSanityCallback on real models and real fits: one test per code."""

import sys
import warnings

import keras
import numpy as np
import pandas as pd
import pytest
from keras import ops

import lossguard
from tests.helpers import T, V, classifier, loud, onehot, seq2seq, token_data
from tests.helpers import watched_fit as fit


# ------------------------------------------------------------- sub-zero loss
def test_negative_labels_glove_targets_named_with_batch_numbers():
    x, ids = token_data()
    y = onehot(ids)
    y[20:30, :, :] = np.where(y[20:30] > 0, 0.41, -0.38)  # embedding-like targets
    model = seq2seq()
    model.compile("adam", "categorical_crossentropy")
    cb = fit(model, x, y)
    f = cb.report.get("NEGATIVE_LABELS")
    assert f is not None and f.severity == "error"
    assert (f.epoch, f.step) == (0, 2)
    assert f.evidence["label_min"] == pytest.approx(-0.38)
    assert f.evidence["negative_row_share"] == pytest.approx(1.0)
    assert f.evidence["negative_entry_share"] == pytest.approx((V - 1) / V)
    assert f.evidence["batch_loss"] < 0
    assert f.evidence["batch_loss"] == pytest.approx(cb.history.loss[2])
    assert "-0.38" in f.message and "16.12" in f.explanation


def test_one_bad_batch_of_forty_is_named_while_running_mean_stays_positive():
    x, ids = token_data(n=400)
    y = onehot(ids)
    y[170:180, 0, :] = -1.0  # batch 17: a "-1 padding" row per sample
    model = seq2seq()
    model.compile("adam", "categorical_crossentropy")
    cb = fit(model, x, y)
    h = cb.history
    assert len(h) == 40
    assert (h.running_loss > 0).all()
    assert h.loss[17] < 0 and (h.drop(index=17).loss > 0).all()
    f = cb.report.get("NEGATIVE_LABELS")
    assert f.step == 17
    assert f.evidence["first_position"] == 0 and f.evidence["first_sample"] == 0
    assert f.evidence["negative_row_share"] == pytest.approx(1 / T)


def test_label_sum_not_one_two_hot_rows():
    x, ids = token_data()
    y = onehot(ids) + onehot((ids + 1) % V)
    model = seq2seq()
    model.compile("adam", "categorical_crossentropy")
    f = fit(model, x, y).report.get("LABEL_SUM_NOT_ONE")
    assert f.step == 0
    assert f.evidence["label_sum_min"] == f.evidence["label_sum_max"] == 2.0
    assert f.evidence["off_row_share"] == 1.0


def test_empty_label_rows_unmasked_padding():
    x, ids = token_data(pad_tail=2)
    y = onehot(ids)
    y[:, -2:, :] = 0
    model = seq2seq(mask_zero=False)
    model.compile("adam", "categorical_crossentropy")
    f = fit(model, x, y).report.get("EMPTY_LABEL_ROWS")
    assert f.severity == "warning"
    assert f.evidence["empty_row_share"] == pytest.approx(2 / T)


def test_empty_rows_under_a_mask_stay_quiet():
    x, ids = token_data(pad_tail=2)
    y = onehot(ids)
    y[:, -2:, :] = 0
    model = seq2seq(mask_zero=True)
    model.compile("adam", "categorical_crossentropy")
    assert loud(fit(model, x, y).report) == []


def test_labels_out_of_range_binary_0_255():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 4)).astype("float32")
    y = rng.integers(0, 256, (40, 1)).astype("float32")
    model = classifier(units=1, activation="sigmoid")
    model.compile("adam", "binary_crossentropy")
    f = fit(model, x, y).report.get("LABELS_OUT_OF_RANGE")
    assert f.evidence["label_max"] == y[:10].max()
    assert f.evidence["valid_range"] == "[0, 1]"


def test_sparse_id_out_of_range_crash_is_explained():
    x, ids = token_data()
    ids[25, 1] = V  # one id equal to the vocabulary size
    model = seq2seq()
    model.compile("adam", "sparse_categorical_crossentropy")
    cb = lossguard.LossSanityCallback(action="raise")
    with pytest.raises(lossguard.LossSanityError) as info:
        model.fit(x, ids, batch_size=10, verbose=0, callbacks=[cb], shuffle=False)
    assert "LABELS_OUT_OF_RANGE" in info.value.report.codes
    assert f"Received a label value of {V}" in str(info.value)
    assert "compute_loss" not in vars(model)  # the model is restored


def test_embedding_input_out_of_range_is_not_called_a_label_fault():
    x, ids = token_data()
    x[25, 0] = V + 5  # an *input* id the Embedding has no row for
    model = seq2seq()
    model.compile("adam", "sparse_categorical_crossentropy")
    cb = lossguard.LossSanityCallback(action="raise")
    with pytest.raises(Exception, match="not in") as info:
        model.fit(x, ids, batch_size=10, verbose=0, callbacks=[cb], shuffle=False)
    assert not isinstance(info.value, lossguard.LossSanityError)
    assert "LABELS_OUT_OF_RANGE" not in cb.report.codes
    assert "compute_loss" not in vars(model)


def test_negative_sample_weights():
    x, ids = token_data()
    w = np.ones((40, T), "float32")
    w[12, 3] = -2.0
    model = seq2seq()
    model.compile("adam", "sparse_categorical_crossentropy")
    f = fit(model, x, ids, sample_weight=w).report.get("NEGATIVE_WEIGHTS")
    assert f.step == 1 and f.evidence["weight_min"] == -2.0
    assert f.evidence["negative_share"] == pytest.approx(1 / 50)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes: 3.11+")
def test_per_sample_weight_on_masked_sequence_crash_gets_the_fix():
    x, ids = token_data()
    model = seq2seq()  # masked output: Keras cannot multiply (B,) by (B, T)
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"\[10\], \[10,5\]") as caught:
        fit(model, x, ids, sample_weight=np.ones(40))
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "np.repeat(w[:, None], 5, axis=1)" in notes
    assert "compute_loss" not in vars(model)  # the callback uninstalled itself


def test_negative_class_weight():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 4)).astype("float32")
    y = rng.integers(0, 3, 40)
    model = classifier()
    model.compile("adam", "sparse_categorical_crossentropy")
    cb = fit(model, x, y, class_weight={0: 1.0, 1: -0.5, 2: 1.0})
    assert cb.report.get("NEGATIVE_WEIGHTS").evidence["weight_min"] == -0.5


class EntropyBonus(keras.layers.Layer):
    """A sign-flipped regulariser: adds -0.5 * mean(h^2) to the loss."""

    def call(self, h):
        self.add_loss(-0.5 * ops.mean(h**2) - 5.0)
        return h


def test_negative_aux_loss_names_the_layer():
    x, ids = token_data()
    inp = keras.Input((T,), dtype="int32")
    h = keras.layers.Embedding(V, 8)(inp)
    h = EntropyBonus(name="entropy_bonus")(h)
    out = keras.layers.Dense(V, activation="softmax")(h)
    model = keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    cb = fit(model, x, ids)
    f = cb.report.get("NEGATIVE_AUX_LOSS")
    assert f.step == 0
    assert f.evidence["terms"]["entropy_bonus"] < -5
    assert f.evidence["data_loss"] > 0 and f.evidence["loss"] < 0
    h = cb.history
    assert h.loss[0] == pytest.approx(h.data_loss[0] + h.aux_loss[0], rel=1e-5)


def test_l2_regulariser_is_healthy_and_attributed():
    x, ids = token_data()
    model = seq2seq(regularizer=keras.regularizers.L2(1e-3))
    model.compile("adam", "sparse_categorical_crossentropy")
    cb = fit(model, x, ids)
    assert loud(cb.report) == []
    assert (cb.history.aux_loss > 0).all()


def test_cosine_loss_is_info_only():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 4)).astype("float32")
    y = rng.normal(size=(40, 3)).astype("float32")
    model = classifier(activation=None)
    model.compile("adam", "cosine_similarity")
    report = fit(model, x, y).report
    assert report.codes == {"LOSS_UNBOUNDED_BELOW"}
    assert report.get("LOSS_UNBOUNDED_BELOW").severity == "info"


# --------------------------------------------------- implausible, not negative
def test_nonfinite_loss_names_nan_inputs():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 4)).astype("float32")
    x[33, 2] = np.nan
    y = rng.integers(0, 3, 40)
    model = classifier(hidden="tanh")  # relu would turn the NaN into 0
    model.compile("adam", "sparse_categorical_crossentropy")
    f = fit(model, x, y).report.get("NONFINITE_LOSS")
    assert f.step == 3 and f.evidence["source"] == "inputs"


def test_nonfinite_loss_names_nan_labels():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 40)]
    y[5, 0] = np.inf
    model = classifier()
    model.compile("adam", "categorical_crossentropy")
    f = fit(model, x, y).report.get("NONFINITE_LOSS")
    assert f.step == 0 and f.evidence["source"].startswith("labels")


def test_logits_with_from_logits_false():
    x, ids = token_data()
    model = seq2seq(activation=None)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy())
    f = fit(model, x, ids).report.get("PREDICTIONS_NOT_PROBABILITIES")
    assert f.step == 0
    assert f.evidence["pred_min"] < 0 and f.evidence["activation"] == "linear"


def test_softmax_with_from_logits_true():
    x, ids = token_data()
    model = seq2seq()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = fit(model, x, ids).report.get("PROBABILITIES_AS_LOGITS")
    assert f.severity == "warning"
    assert f.evidence["loss_floor"] == pytest.approx(np.log(1 + (V - 1) / np.e))


def test_single_unit_categorical():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 4)).astype("float32")
    y = np.ones((40, 1), "float32")
    model = classifier(units=1)
    model.compile("adam", "categorical_crossentropy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cb = fit(model, x, y)
    assert "SINGLE_UNIT_CATEGORICAL" in cb.report.codes
    assert (cb.history.loss == 0).all()


def test_invalid_label_smoothing():
    x, ids = token_data()
    model = seq2seq()
    model.compile("adam", keras.losses.CategoricalCrossentropy(label_smoothing=1.5))
    with pytest.raises(lossguard.LossSanityError, match="label_smoothing=1.5"):
        fit(model, x, onehot(ids), action="raise")


def test_low_precision_saturation_float16_output():
    keras.utils.set_random_seed(0)
    x, ids = token_data()
    model = seq2seq(dtype="float16")
    kernel = model.layers[-1].kernel
    signs = np.sign(np.random.default_rng(0).normal(size=kernel.shape))
    kernel.assign(3000.0 * signs)  # logits far beyond float16's softmax range
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    cb = fit(model, x, ids)
    report = cb.report
    assert "PREDICTIONS_NOT_PROBABILITIES" not in report.codes
    f = report.get("LOW_PRECISION_SATURATION")
    assert f.evidence["dtype"] == "float16" and f.evidence["saturated_share"] > 0.5
    assert f.step == 0
    first = cb.history.iloc[0]
    assert f.evidence["saturated_share"] == first.pred_saturated_share
    assert first.loss > 10  # saturated tokens cost -log(eps) = 16.12 each


def test_float16_output_that_does_not_saturate_is_quiet():
    x, ids = token_data()
    model = seq2seq(dtype="float16")
    model.compile("adam", "sparse_categorical_crossentropy")
    assert loud(fit(model, x, ids).report) == []


# ---------------------------------------------------------- healthy runs
@pytest.mark.parametrize(
    "case",
    ["onehot", "sparse", "sparse-ignore", "smoothing", "logits", "stable", "weights"],
)
def test_healthy_runs_are_quiet(case):
    x, ids = token_data(pad_tail=1)
    model = seq2seq(
        activation=None if case == "logits" else "softmax",
        mask_zero=case != "sparse-ignore",
    )
    kwargs = {}
    loss, y = "sparse_categorical_crossentropy", ids
    if case == "onehot":
        loss, y = "categorical_crossentropy", onehot(ids)
    elif case == "sparse-ignore":
        loss = keras.losses.SparseCategoricalCrossentropy(ignore_class=0)
    elif case == "smoothing":
        loss, y = keras.losses.CategoricalCrossentropy(label_smoothing=0.1), onehot(ids)
    elif case == "logits":
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    elif case == "stable":
        loss = lossguard.losses.StableSparseCategoricalCrossentropy(ignore_class=0)
    elif case == "weights":
        kwargs["sample_weight"] = np.random.default_rng(0).uniform(0.5, 2, (40, T))
    model.compile("adam", loss)
    with warnings.catch_warnings():
        warnings.simplefilter("error", lossguard.LossSanityWarning)
        cb = fit(model, x, y, action="warn", epochs=2, **kwargs)
    assert cb.findings == []
    assert len(cb.history) == 8 and cb.history.loss.notna().all()


# --------------------------------------------------------- the machinery
def test_history_columns_and_true_batch_loss():
    x, ids = token_data()
    model = seq2seq()
    model.compile("adam", "sparse_categorical_crossentropy")
    cb = fit(model, x, ids, epochs=2)
    h = cb.history
    for col in (
        "epoch",
        "step",
        "loss",
        "data_loss",
        "aux_loss",
        "label_min",
        "label_sum_min",
        "label_sum_max",
        "pred_min",
        "pred_max",
        "pred_sum_min",
        "pred_sum_max",
        "weight_min",
    ):
        assert col in h.columns
    assert list(h.step) == [0, 1, 2, 3] * 2 and list(h.epoch) == [0] * 4 + [1] * 4
    # The running mean of the per-batch losses is what Keras reports.
    first = h[h.epoch == 0]
    assert first.running_loss.iloc[-1] == pytest.approx(first.loss.mean(), rel=1e-4)


def test_works_after_a_previous_fit_and_restores_the_model():
    x, ids = token_data()
    y = onehot(ids)
    model = seq2seq()
    model.compile("adam", "categorical_crossentropy")
    model.fit(x, y, verbose=0, epochs=1)
    y[:10] *= -1
    cb = fit(model, x, y)
    assert cb.report.get("NEGATIVE_LABELS").step == 0
    assert "compute_loss" not in vars(model)
    model.fit(x, y, verbose=0, epochs=1)  # uninstrumented again, no error


def test_steps_per_execution_sees_every_step():
    x, ids = token_data(n=80)
    y = onehot(ids)
    y[50:60] = -y[50:60]
    model = seq2seq()
    model.compile("adam", "categorical_crossentropy", steps_per_execution=4)
    cb = fit(model, x, y)
    assert list(cb.history.step) == list(range(8))
    assert cb.report.get("NEGATIVE_LABELS").step == 5


def test_jit_compile_true():
    x, ids = token_data()
    y = onehot(ids)
    y[10:20] = -y[10:20]
    model = seq2seq(mask_zero=False)
    model.compile("adam", "categorical_crossentropy", jit_compile=True)
    assert fit(model, x, y).report.get("NEGATIVE_LABELS").step == 1


def test_multi_output_dict_model():
    rng = np.random.default_rng(6)
    inp = keras.Input((4,))
    h = keras.layers.Dense(8, activation="relu")(inp)
    a = keras.layers.Dense(3, activation="softmax", name="tags")(h)
    b = keras.layers.Dense(1, activation="sigmoid", name="flag")(h)
    model = keras.Model(inp, {"tags": a, "flag": b})
    model.compile(
        "adam",
        loss={"tags": "categorical_crossentropy", "flag": "binary_crossentropy"},
        loss_weights={"tags": 1.0, "flag": 0.5},
    )
    x = rng.normal(size=(40, 4)).astype("float32")
    tags = np.eye(3, dtype="float32")[rng.integers(0, 3, 40)]
    tags[30:40] = -tags[30:40]
    flag = rng.integers(0, 2, (40, 1)).astype("float32")
    cb = fit(model, x, {"tags": tags, "flag": flag})
    f = cb.report.get("NEGATIVE_LABELS")
    assert f.step == 3 and f.evidence["output"] == "tags"
    assert "tags/label_min" in cb.history.columns
    assert cb.history["label_min"].iloc[3] == -1.0
    h = cb.history
    assert (h["flag/loss_weight"] == 0.5).all() and (h["tags/loss_weight"] == 1).all()
    # The total is the weighted sum of the per-output data losses.
    weighted = h["tags/data_loss"] + 0.5 * h["flag/data_loss"]
    np.testing.assert_allclose(h.data_loss, weighted, rtol=1e-5)
    assert h["tags/data_loss"].iloc[3] < 0 < h["flag/data_loss"].iloc[3]


def test_action_raise_stop_and_warn():
    x, ids = token_data()
    y = onehot(ids)
    y[10:20] = -y[10:20]
    model = seq2seq()
    model.compile("adam", "categorical_crossentropy")
    with pytest.raises(lossguard.LossSanityError) as info:
        fit(model, x, y, action="raise")
    assert "NEGATIVE_LABELS" in info.value.report.codes
    cb = fit(model, x, y, action="stop", epochs=3)
    assert cb.history.epoch.max() == 0 and len(cb.history) == 2  # stops at once
    with pytest.warns(lossguard.LossSanityWarning) as caught:
        fit(model, x, y, action="warn", epochs=2)
    codes = [str(w.message).split()[1] for w in caught]
    assert codes.count("NEGATIVE_LABELS") == 1  # once per code, not per batch


def test_log_path_streams_csv(tmp_path):
    x, ids = token_data()
    model = seq2seq()
    model.compile("adam", "sparse_categorical_crossentropy")
    path = tmp_path / "history.csv"
    cb = lossguard.LossSanityCallback(action="record", log_path=path, flush_every=2)
    model.fit(x, ids, batch_size=10, epochs=2, verbose=0, callbacks=[cb])
    logged = pd.read_csv(path)
    assert len(logged) == 8
    np.testing.assert_allclose(logged.loss, cb.history.loss, rtol=1e-6)


class CustomStep(keras.Model):
    def train_step(self, data):
        x, y = data
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(y, self(x))
            loss = ops.mean(loss)
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
        return {"loss": loss}


def test_custom_train_step_falls_back_and_says_so_once():
    inp = keras.Input((4,))
    model = CustomStep(inp, keras.layers.Dense(3, activation="softmax")(inp))
    model.compile("adam")
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(40, 4)).astype("float32"), rng.integers(0, 3, 40)
    cb = lossguard.LossSanityCallback(action="warn")
    with pytest.warns(lossguard.LossSanityWarning, match="overrides train_step") as w:
        model.fit(x, y, batch_size=10, verbose=0, callbacks=[cb])
    assert len([m for m in w if "cannot see" in str(m.message)]) == 1
    assert cb.history.running_loss.notna().all() and len(cb.history) == 4


def test_bad_arguments():
    with pytest.raises(ValueError, match="action='loud'"):
        lossguard.LossSanityCallback(action="loud")
    with pytest.raises(ValueError, match="log_path"):
        lossguard.LossSanityCallback(log_path="history.txt")
    with pytest.raises(ValueError, match="predictions='some'"):
        lossguard.LossSanityCallback(predictions="some")
    with pytest.raises(ValueError, match="vocabulary=given, vectors=None"):
        lossguard.LossSanityCallback(vocabulary=["", "the"])
    # Nothing accepted here may fail later, inside fit.
    with pytest.raises(ValueError, match="Create the folder first"):
        lossguard.LossSanityCallback(log_path="/no/such/folder/history.csv")
    with pytest.raises(ValueError, match="flush_every=0"):
        lossguard.LossSanityCallback(log_path="history.csv", flush_every=0)


def test_tensorboard_dir_without_tensorboard_fails_when_given(monkeypatch, tmp_path):
    """Not in the middle of fit: the constructor says what to install."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    with pytest.raises(ImportError, match=r'pip install "lossguard\[tensorboard\]"'):
        lossguard.LossSanityCallback(tensorboard_dir=tmp_path)
    lossguard.LossSanityCallback()  # without the argument, nothing is needed


def test_keras_softmax_prediction_passes_skipped_by_default(caplog):
    x, ids = token_data()
    model = seq2seq()
    model.compile("adam", "sparse_categorical_crossentropy")
    with caplog.at_level("INFO", logger="lossguard"):
        auto = fit(model, x, ids).history
    assert auto.pred_min.isna().all() and auto.pred_sum_max.isna().all()
    assert auto.label_min.notna().all()  # labels are still measured
    assert "float32 Keras softmax" in caplog.text
    full = fit(model, x, ids, action="record").history  # default again
    assert full.pred_min.isna().all()
    cb = lossguard.LossSanityCallback(action="record", predictions="all")
    model.fit(x, ids, batch_size=10, verbose=0, callbacks=[cb])
    h = cb.history
    assert (h.pred_min >= 0).all() and (h.pred_max <= 1).all()
    assert np.allclose(h.pred_sum_min, 1, atol=1e-5)


def test_non_softmax_outputs_are_measured_by_default():
    x, ids = token_data()
    model = seq2seq(activation="sigmoid")  # not a distribution: must be watched
    model.compile("adam", "sparse_categorical_crossentropy")
    cb = fit(model, x, ids)
    assert cb.history.pred_sum_max.notna().all()
    assert "PREDICTIONS_NOT_PROBABILITIES" in cb.report.codes


def test_float16_sigmoid_binary_classifier_is_quiet():
    # Regression: y * p on a y = 0 label read as a saturated probability.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = rng.integers(0, 2, (64, 1)).astype("float32")
    inp = keras.Input((4,))
    h = keras.layers.Dense(8, activation="relu")(inp)
    out = keras.layers.Dense(1, activation="sigmoid", dtype="float16")(h)
    model = keras.Model(inp, out)
    model.compile("adam", "binary_crossentropy")
    cb = fit(model, x, y, batch_size=16)
    assert loud(cb.report) == []
    assert (cb.history.pred_saturated_share == 0).all()


def test_saturation_share_measured_for_float32_with_predictions_all():
    x, ids = token_data()
    model = seq2seq()
    model.compile("adam", "sparse_categorical_crossentropy")
    cb = lossguard.LossSanityCallback(action="record", predictions="all")
    model.fit(x, ids, batch_size=10, verbose=0, callbacks=[cb])
    assert (cb.history.pred_saturated_share == 0).all()
    assert cb.findings == []
