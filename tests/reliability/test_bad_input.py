"""Every row of docs/reliability.md's bad-input table, as a test."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import lossguard
from tests.helpers import classifier, onehot, seq2seq, token_data


@pytest.fixture
def categorical():
    model = seq2seq()
    model.compile("adam", "categorical_crossentropy")
    return model


def test_ragged_label_shape(categorical):
    x, ids = token_data()
    with pytest.raises(ValueError, match=r"does not fit the model.*target.shape"):
        lossguard.diagnose(categorical, x, onehot(ids)[:, :3])


def test_mismatched_sample_counts(categorical):
    x, ids = token_data()
    with pytest.raises(ValueError, match="`x` has 40 samples but `y` has 39"):
        lossguard.diagnose(categorical, x, onehot(ids)[:39])


def test_integer_labels_with_a_categorical_loss(categorical):
    x, ids = token_data()
    with pytest.raises(ValueError, match="use sparse_categorical_crossentropy"):
        lossguard.diagnose(categorical, x, ids)


@pytest.mark.parametrize(
    "where, source", [("x", "inputs"), ("y", "labels"), ("w", "sample weights")]
)
def test_nan_and_inf_are_named_by_source(where, source):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 40)]
    w = np.ones(40, "float32")
    target = {"x": x, "y": y, "w": w}[where]
    target.reshape(-1)[5] = np.inf if where == "y" else np.nan
    model = classifier(hidden="tanh")
    model.compile("adam", "categorical_crossentropy")
    f = lossguard.diagnose(model, x, y, w).get("NONFINITE_LOSS")
    assert f.evidence["source"].startswith(source)


def test_empty_dataset(categorical):
    empty = tf.data.Dataset.from_tensor_slices(
        (np.zeros((0, 5), "int32"), np.zeros((0, 5, 24), "float32"))
    ).batch(8)
    with pytest.raises(ValueError, match="no batch"):
        lossguard.diagnose(categorical, empty)


def test_dict_outputs_with_a_missing_key():
    inp = keras.Input((4,))
    h = keras.layers.Dense(8)(inp)
    model = keras.Model(
        inp,
        {
            "tags": keras.layers.Dense(3, activation="softmax", name="tags")(h),
            "flag": keras.layers.Dense(1, activation="sigmoid", name="flag")(h),
        },
    )
    model.compile(
        "adam", loss={"tags": "categorical_crossentropy", "flag": "binary_crossentropy"}
    )
    x = np.random.default_rng(0).normal(size=(20, 4)).astype("float32")
    with pytest.raises(ValueError, match="different structures"):
        lossguard.diagnose(model, x, {"tags": np.eye(3)[np.zeros(20, int)]})


def test_a_plain_python_function_as_the_loss_gets_the_generic_checks():
    def squared_error(y_true, y_pred):
        return keras.ops.mean((y_true - y_pred) ** 2, axis=-1)

    x, ids = token_data()
    y = onehot(ids)
    model = seq2seq()
    model.compile("adam", squared_error)
    cb = lossguard.LossSanityCallback(action="record")
    model.fit(x, y, batch_size=10, verbose=0, callbacks=[cb])
    assert cb.findings == [] and cb.history.loss.notna().all()
    y[0, 0] = np.nan  # still: a non-finite loss is named with its source
    f = lossguard.diagnose(model, x, y).get("NONFINITE_LOSS")
    assert f.evidence["source"].startswith("labels")


def test_a_huge_vocabulary_with_sparse_labels():
    vocab = 100_000
    inp = keras.Input((2,), dtype="int32")
    h = keras.layers.Embedding(50, 4)(inp)
    model = keras.Model(inp, keras.layers.Dense(vocab, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 50, (8, 2)), rng.integers(0, vocab, (8, 2))
    assert lossguard.diagnose(model, x, y, batch_size=4).codes == set()
    y[3, 1] = vocab + 7
    assert "LABELS_OUT_OF_RANGE" in lossguard.diagnose(model, x, y, batch_size=4)
    cb = lossguard.LossSanityCallback(action="record", predictions="all")
    model.fit(x, y % vocab, batch_size=4, verbose=0, callbacks=[cb])
    assert (cb.history.label_max < vocab).all() and cb.findings == []
