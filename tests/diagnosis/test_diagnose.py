"""diagnose() on real models and data, before any training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import lossguard
from lossguard.diagnosis.registry import FAULTS
from tests.helpers import T, V, classifier, loud, onehot, seq2seq, token_data


def two_input_seq2seq(mask_zero=True):
    enc = keras.Input((T,), dtype="int32")
    dec = keras.Input((T,), dtype="int32")
    emb = keras.layers.Embedding(V, 8, mask_zero=mask_zero)
    _, h, c = keras.layers.LSTM(12, return_state=True)(emb(enc))
    seq = keras.layers.LSTM(12, return_sequences=True)(emb(dec), initial_state=[h, c])
    return keras.Model([enc, dec], keras.layers.Dense(V, activation="softmax")(seq))


def test_negative_labels_before_training_with_evidence():
    x, ids = token_data()
    y = onehot(ids)
    y[3, 2] = -1.0
    model = seq2seq()
    model.compile("adam", "categorical_crossentropy")
    weights = [w.copy() for w in model.get_weights()]
    report = lossguard.diagnose(model, x, y, batch_size=10)
    f = report.get("NEGATIVE_LABELS")
    assert f.step == 0 and f.evidence["first_sample"] == 3
    assert f.evidence["first_position"] == 2 and f.evidence["label_min"] == -1.0
    for before, after in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


def test_decoder_target_not_shifted():
    x, ids = token_data()
    model = two_input_seq2seq()
    model.compile("adam", "sparse_categorical_crossentropy")
    report = lossguard.diagnose(model, [x, ids], ids)  # decoder input == target
    f = report.get("DECODER_TARGET_NOT_SHIFTED")
    assert f.evidence["input"] == 1 and f.evidence["copy_share"] == 1.0
    shifted = np.concatenate([np.ones((40, 1), int), ids[:, :-1]], axis=1)
    assert (
        "DECODER_TARGET_NOT_SHIFTED"
        not in lossguard.diagnose(model, [x, shifted], ids).codes
    )


def test_padding_not_masked_and_masked_variants():
    x, ids = token_data(pad_tail=3)
    model = seq2seq(mask_zero=False)
    model.compile("adam", "sparse_categorical_crossentropy")
    f = lossguard.diagnose(model, x, ids).get("PADDING_NOT_MASKED")
    assert f.evidence["pad_share"] == pytest.approx(3 / T)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(ignore_class=0))
    assert loud(lossguard.diagnose(model, x, ids)) == []
    masked = seq2seq(mask_zero=True)
    masked.compile("adam", "sparse_categorical_crossentropy")
    assert loud(lossguard.diagnose(masked, x, ids)) == []


@pytest.mark.parametrize(
    "case", ["onehot", "sparse", "smoothing", "logits", "binary", "l2"]
)
def test_healthy_models_are_quiet(case):
    x, ids = token_data(pad_tail=1)
    model, y, loss = seq2seq(), ids, "sparse_categorical_crossentropy"
    if case == "onehot":
        y, loss = onehot(ids), "categorical_crossentropy"
    elif case == "smoothing":
        y, loss = onehot(ids), keras.losses.CategoricalCrossentropy(label_smoothing=0.1)
    elif case == "logits":
        model = seq2seq(activation=None)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    elif case == "l2":
        model = seq2seq(regularizer=keras.regularizers.L2(1e-3))
    elif case == "binary":
        rng = np.random.default_rng(0)
        model, loss = classifier(units=1, activation="sigmoid"), "binary_crossentropy"
        x, y = rng.normal(size=(40, 4)), rng.integers(0, 2, (40, 1)).astype("float32")
    model.compile("adam", loss)
    report = lossguard.diagnose(model, x, y)
    assert loud(report) == [], str(report)


def test_tf_data_and_generator_inputs():
    x, ids = token_data()
    y = onehot(ids)
    y[0] *= -1
    model = seq2seq()
    model.compile("adam", "categorical_crossentropy")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    assert "NEGATIVE_LABELS" in lossguard.diagnose(model, ds, batches=2).codes
    gen = ((x[i : i + 8], y[i : i + 8]) for i in range(0, 40, 8))
    assert "NEGATIVE_LABELS" in lossguard.diagnose(model, gen).codes


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, size):
        super().__init__()
        self.x, self.y, self.size = x, y, size

    def __len__(self):
        return len(self.x) // self.size

    def __getitem__(self, i):
        if i >= len(self):
            raise IndexError(i)
        piece = slice(i * self.size, (i + 1) * self.size)
        return self.x[piece], self.y[piece]


def test_py_dataset_input():
    x, ids = token_data()
    y = onehot(ids)
    y[25] *= -1
    model = seq2seq()
    model.compile("adam", "categorical_crossentropy")
    f = lossguard.diagnose(model, Batches(x, y, 10)).get("NEGATIVE_LABELS")
    assert f.step == 2 and f.evidence["first_sample"] == 5
    assert lossguard.diagnose(model, Batches(x, y, 10), batches=2).codes == set()


def test_nonfinite_label_source_named():
    x, ids = token_data()
    y = onehot(ids)
    y[1, 1, 1] = np.nan
    model = seq2seq()
    model.compile("adam", "categorical_crossentropy")
    f = lossguard.diagnose(model, x, y).get("NONFINITE_LOSS")
    assert f.evidence["source"].startswith("labels")


def test_bad_input_is_a_clear_error():
    x, ids = token_data()
    model = seq2seq()
    with pytest.raises(ValueError, match="not compiled"):
        lossguard.diagnose(model, x, ids)
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="40 samples but `y` has 39"):
        lossguard.diagnose(model, x, ids[:-1])
    with pytest.raises(ValueError, match="empty"):
        lossguard.diagnose(model, x[:0], ids[:0])
    with pytest.raises(ValueError, match="no batch"):
        lossguard.diagnose(model, iter([]))


def test_per_sample_weights_on_a_masked_sequence_output_explained():
    x, ids = token_data()
    model = seq2seq()  # Embedding(mask_zero=True): the output has a mask
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"np.repeat\(w\[:, None\], 5, axis=1\)"):
        lossguard.diagnose(model, x, ids, np.ones(40))
    assert lossguard.diagnose(model, x, ids, np.ones((40, T))).errors == []


def test_report_renders():
    x, ids = token_data()
    y = onehot(ids) * -1
    model = seq2seq()
    model.compile("adam", "categorical_crossentropy")
    report = lossguard.diagnose(model, x, y)
    frame = report.to_frame()
    assert list(frame.columns) == [
        "code",
        "severity",
        "message",
        "fix",
        "epoch",
        "step",
        "phase",
        "caused_by",
        "evidence",
    ]
    assert str(report).splitlines()[-1].startswith("First thing to fix")
    assert repr(report).startswith("<Report 2 error(s)")
    assert "<table>" in report._repr_html_()
    import json

    assert json.loads(report.to_json())["findings"][0]["severity"] == "error"


def test_sparse_label_out_of_range_versus_embedding_input_out_of_range():
    x, ids = token_data()
    model = seq2seq()
    model.compile("adam", "sparse_categorical_crossentropy")
    bad_labels = ids.copy()
    bad_labels[3, 1] = V
    f = lossguard.diagnose(model, x, bad_labels, batch_size=10).get(
        "LABELS_OUT_OF_RANGE"
    )
    assert f.step == 0 and f.evidence["valid_range"] == f"[0, {V})"
    assert f"label value of {V}" in f.evidence["error"]
    bad_inputs = x.copy()
    bad_inputs[3, 1] = V + 5
    with pytest.raises(ValueError, match=r"model failed on batch 0: .*not in \[0"):
        lossguard.diagnose(model, bad_inputs, ids, batch_size=10)


# ------------------------------------------- one fault per catalogued code
class NegativeBonus(keras.layers.Layer):
    """An 'entropy bonus' with the wrong sign: add_loss(-5 - mean(h^2))."""

    def call(self, h):
        self.add_loss(-5.0 - keras.ops.mean(h**2))
        return h


def _fault_negative_aux():
    inp = keras.Input((T,), dtype="int32")
    h = keras.layers.Embedding(V, 8)(inp)
    h = NegativeBonus(name="bonus")(h)
    model = keras.Model(inp, keras.layers.Dense(V, activation="softmax")(h))
    return model, "sparse_categorical_crossentropy"


def _saturating_float16():
    keras.utils.set_random_seed(0)
    model = seq2seq(dtype="float16")
    kernel = model.layers[-1].kernel
    signs = np.sign(np.random.default_rng(0).normal(size=kernel.shape))
    kernel.assign(3000.0 * signs)  # logits far beyond float16's softmax range
    return model


def _fault_case(code):
    """(model, x, y, sample_weight) with exactly this fault."""
    x, ids = token_data()
    rng = np.random.default_rng(1)
    y, weights, model = onehot(ids), None, seq2seq()
    loss = "categorical_crossentropy"
    if code == "LABEL_SUM_NOT_ONE":
        y = y + onehot((ids + 1) % V)  # two-hot rows
    elif code == "EMPTY_LABEL_ROWS":
        y[:, -2:] = 0.0  # padding one-hot encoded as zeros, not masked
    elif code == "LABELS_OUT_OF_RANGE":
        model = classifier(units=1, activation="sigmoid")
        x = rng.normal(size=(40, 4))
        y = rng.integers(0, 256, (40, 1)).astype("float32")  # 0-255 masks
        loss = "binary_crossentropy"
    elif code == "NEGATIVE_WEIGHTS":
        weights = np.ones((40, T))  # one per token: the output carries a mask
        weights[7, 2] = -2.0
    elif code == "NEGATIVE_AUX_LOSS":
        (model, loss), y = _fault_negative_aux(), ids
    elif code == "LOSS_UNBOUNDED_BELOW":
        model, loss = classifier(activation=None), "cosine_similarity"
        x, y = rng.normal(size=(40, 4)), rng.normal(size=(40, 3))
    elif code == "PREDICTIONS_NOT_PROBABILITIES":
        model, y = seq2seq(activation=None), ids
        loss = "sparse_categorical_crossentropy"
    elif code == "PROBABILITIES_AS_LOGITS":
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    elif code == "SINGLE_UNIT_CATEGORICAL":
        model = classifier(units=1)
        x, y = rng.normal(size=(40, 4)), np.ones((40, 1), "float32")
    elif code == "INVALID_LABEL_SMOOTHING":
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=1.5)
    elif code == "LOW_PRECISION_SATURATION":
        model, y, loss = _saturating_float16(), ids, "sparse_categorical_crossentropy"
    model.compile("adam", loss)
    return model, x, y, weights


FAULT_EVIDENCE = {
    "LABEL_SUM_NOT_ONE": lambda e: e["label_sum_min"] == e["label_sum_max"] == 2.0,
    "EMPTY_LABEL_ROWS": lambda e: e["empty_row_share"] == pytest.approx(2 / T),
    "LABELS_OUT_OF_RANGE": lambda e: (
        e["label_max"] > 1 and e["valid_range"] == "[0, 1]"
    ),
    "NEGATIVE_WEIGHTS": lambda e: (
        e["weight_min"] == -2.0 and e["negative_share"] == pytest.approx(1 / (32 * T))
    ),
    "NEGATIVE_AUX_LOSS": lambda e: e["terms"]["bonus"] < -5 and e["data_loss"] > 0,
    "LOSS_UNBOUNDED_BELOW": lambda e: "cosine" in str(e).lower(),
    "PREDICTIONS_NOT_PROBABILITIES": lambda e: (
        e["pred_min"] < 0 and e["activation"] == "linear"
    ),
    "PROBABILITIES_AS_LOGITS": lambda e: (
        e["activation"] == "softmax"
        and e["loss_floor"] == pytest.approx(np.log(1 + (V - 1) / np.e))
    ),
    "SINGLE_UNIT_CATEGORICAL": lambda e: "1" in str(e),
    "INVALID_LABEL_SMOOTHING": lambda e: 1.5 in e.values(),
    "LOW_PRECISION_SATURATION": lambda e: (
        e["dtype"] == "float16" and e["saturated_share"] > 0.5
    ),
}


@pytest.mark.parametrize("code", sorted(FAULT_EVIDENCE))
def test_each_fault_is_found_with_its_evidence(code):
    model, x, y, weights = _fault_case(code)
    report = lossguard.diagnose(model, x, y, weights)
    finding = report.get(code)
    assert finding is not None, str(report)
    assert FAULT_EVIDENCE[code](finding.evidence), finding.evidence
    assert finding.severity == FAULTS[code].severity
