"""One batch -> one row of named statistics (`lossguard.diagnosis.collect`):
which keys a model gets, the values on a hand-made batch (the loss split
into the data loss and the extra terms, each term attributed to its layer),
and the packed vector the train step writes, read back."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from lossguard.diagnosis.collect import (
    BatchCollector,
    accepts_training,
    call_compute_loss,
    replicas_in_sync,
)
from lossguard.diagnosis.statistics import GLOBAL_KEYS, OUTPUT_KEYS
from tests.helpers import seq2seq

pytestmark = pytest.mark.backends


class Bonus(keras.layers.Layer):
    """An 'entropy bonus' with the wrong sign: add_loss(-2)."""

    def call(self, h):
        self.add_loss(-2.0 * ops.ones(()))
        return h


@pytest.fixture(scope="module")
def with_terms():
    """4 -> Dense(8, L2) 'hidden' -> Bonus 'bonus' -> Dense(3, softmax) 'probs'."""
    inputs = keras.Input((4,))
    h = keras.layers.Dense(
        8, name="hidden", kernel_regularizer=keras.regularizers.L2(0.5)
    )(inputs)
    h = Bonus(name="bonus")(h)
    model = keras.Model(
        inputs, keras.layers.Dense(3, activation="softmax", name="probs")(h)
    )
    model.compile("sgd", "categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def two_outputs():
    """'tags' (softmax, 3; weight 1) and 'flag' (sigmoid, 1; weight 0.5)."""
    inputs = keras.Input((4,))
    h = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(
        inputs,
        {
            "tags": keras.layers.Dense(3, activation="softmax", name="tags")(h),
            "flag": keras.layers.Dense(1, activation="sigmoid", name="flag")(h),
        },
    )
    model.compile(
        "sgd",
        loss={"tags": "categorical_crossentropy", "flag": "binary_crossentropy"},
        loss_weights={"tags": 1.0, "flag": 0.5},
    )
    return model


def floats(row):
    return {key: float(ops.convert_to_numpy(value)) for key, value in row.items()}


def batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, np.eye(3, dtype="float32")[rng.integers(0, 3, n)]


# ------------------------------------------------------------------- keys
def test_a_single_output_has_the_model_keys_then_its_own_unprefixed():
    model = seq2seq()
    model.compile("adam", "sparse_categorical_crossentropy")
    collector = BatchCollector(model)
    assert collector.single and collector.names == [model.output_names[0]]
    assert collector.aux_layers == [], "Keras' layers without a regulariser"
    assert collector.keys == [*GLOBAL_KEYS, "aux:other", *OUTPUT_KEYS]


def test_layers_that_can_add_a_loss_get_their_own_term(with_terms):
    collector = BatchCollector(with_terms)
    assert [layer.name for layer in collector.aux_layers] == ["hidden", "bonus"]
    n = len(GLOBAL_KEYS)
    assert collector.keys[n : n + 3] == ["aux:hidden", "aux:bonus", "aux:other"]


def test_a_nested_model_is_watched_as_one_layer():
    inputs = keras.Input((4,))
    inner = keras.Sequential([keras.layers.Dense(3)], name="encoder")
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(inner(inputs)))
    model.compile("sgd", "mse")
    assert [layer.name for layer in BatchCollector(model).aux_layers] == ["encoder"]


def test_several_outputs_get_prefixed_keys_and_their_own_loss(two_outputs):
    collector = BatchCollector(two_outputs)
    assert not collector.single
    assert sorted(collector.names) == ["flag", "tags"]
    for name in collector.names:
        assert [k for k in collector.keys if k.startswith(f"{name}/")] == [
            *(f"{name}/{key}" for key in OUTPUT_KEYS),
            f"{name}/data_loss",
            f"{name}/loss_weight",
        ]
    assert len(collector.keys) == len(set(collector.keys))


# ------------------------------------------------------------------ values
def test_the_loss_splits_into_data_and_extra_terms_by_layer(with_terms):
    x, y = batch()
    y[2] = -y[2]  # one negative label row
    y_pred = with_terms(x)  # the forward pass that adds the terms
    terms = [float(ops.convert_to_numpy(t)) for t in with_terms.losses]
    l2 = next(t for t in terms if t > 0)
    data = float(
        ops.convert_to_numpy(ops.mean(keras.losses.categorical_crossentropy(y, y_pred)))
    )
    collector = BatchCollector(with_terms)
    row = floats(collector.row(x, y, y_pred, None, data + l2 - 2.0))
    assert set(row) == set(collector.keys)
    assert row["loss"] == pytest.approx(data + l2 - 2.0, rel=1e-5)
    assert row["aux_loss"] == pytest.approx(l2 - 2.0, rel=1e-5)
    assert row["data_loss"] == pytest.approx(data, rel=1e-4)
    assert row["aux:bonus"] == pytest.approx(-2.0)
    assert row["aux:hidden"] == pytest.approx(l2, rel=1e-5)
    assert row["aux:other"] == pytest.approx(0.0, abs=1e-5)
    assert (row["x_nonfinite"], row["aux_nonfinite"]) == (0.0, 0.0)
    assert (row["label_min"], row["label_neg_row_share"]) == (
        -1.0,
        pytest.approx(1 / 6),
    )
    assert (row["rows"], row["active_rows"]) == (6.0, 6.0)


def test_each_output_gets_its_own_data_loss_and_weight(two_outputs):
    rng = np.random.default_rng(1)
    x, tags = batch(5, seed=1)
    flag = rng.integers(0, 2, (5, 1)).astype("float32")
    y_pred = two_outputs(x)
    collector = BatchCollector(two_outputs)
    row = floats(collector.row(x, {"tags": tags, "flag": flag}, y_pred, None, 1.0))
    tags_loss = keras.losses.categorical_crossentropy(tags, y_pred["tags"])
    flag_loss = keras.losses.binary_crossentropy(flag, y_pred["flag"])
    assert row["tags/data_loss"] == pytest.approx(
        float(ops.convert_to_numpy(ops.mean(tags_loss))), rel=1e-5
    )
    assert row["flag/data_loss"] == pytest.approx(
        float(ops.convert_to_numpy(ops.mean(flag_loss))), rel=1e-5
    )
    assert (row["tags/loss_weight"], row["flag/loss_weight"]) == (1.0, 0.5)
    assert row["flag/label_max"] == float(flag.max())
    assert row["tags/label_sum_min"] == pytest.approx(1.0)
    # An output without labels in this batch is left unmeasured (NaN).
    row = floats(collector.row(x, {"tags": tags}, y_pred, None, 1.0))
    assert math.isnan(row["flag/data_loss"]) and math.isnan(row["flag/label_min"])
    assert not math.isnan(row["tags/data_loss"])


def test_predictions_auto_skips_a_float32_keras_softmax(with_terms):
    x, y = batch()
    y_pred = with_terms(x)
    collector = BatchCollector(with_terms)
    measured = floats(collector.row(x, y, y_pred, None, 1.0, predictions="all"))
    assert collector.skipped == []
    assert 0 < measured["pred_min"] <= measured["pred_max"] < 1
    auto = floats(collector.row(x, y, y_pred, None, 1.0, predictions="auto"))
    assert collector.skipped == ["probs"]
    assert math.isnan(auto["pred_min"]) and math.isnan(auto["pred_sum_max"])
    assert auto["label_min"] == measured["label_min"]  # labels still measured


def test_the_terms_read_during_the_step_are_used_when_given(with_terms):
    x, y = batch()
    y_pred = with_terms(x)
    collector = BatchCollector(with_terms)
    model_losses, by_layer = collector.extra_terms()
    assert len(model_losses) == 2 and [len(t) for t in by_layer] == [1, 1]
    zero = ops.convert_to_tensor(0.0)
    row = floats(collector.row(x, y, y_pred, None, 1.0, extra_terms=([zero], [[], []])))
    assert (row["aux_loss"], row["aux:bonus"], row["aux:hidden"]) == (0.0, 0.0, 0.0)


def test_a_model_of_plain_keras_layers_is_not_walked_each_step():
    model = seq2seq()
    model.compile("adam", "sparse_categorical_crossentropy")
    assert BatchCollector(model).extra_terms() == ([], [])


# ------------------------------------------------------------- pack/unpack
def test_pack_and_unpack_round_trip_every_key(with_terms):
    x, y = batch()
    y_pred = with_terms(x)
    collector = BatchCollector(with_terms)
    row = collector.row(x, y, y_pred, None, 1.25)
    packed = ops.convert_to_numpy(collector.pack(row))
    assert packed.shape == (len(collector.keys),) and packed.dtype == np.float32
    back = collector.unpack(packed)
    assert list(back) == collector.keys
    expected = floats(row)
    for key in collector.keys:
        same = back[key] == expected[key] or (
            math.isnan(back[key]) and math.isnan(expected[key])
        )
        assert same, key
    assert any(math.isnan(v) for v in back.values()), "unmeasured stays NaN"
    head = ops.convert_to_numpy(
        collector.pack(row, head=(ops.convert_to_tensor(7.0), ops.ones(())))
    )
    assert head[:2].tolist() == [7.0, 1.0] and head[2] == np.float32(1.25)
    assert replicas_in_sync() == 1


# ------------------------------------------------------ a model built late
class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.out = keras.layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.out(x)


def test_an_unbuilt_models_specs_are_refined_from_its_first_batch():
    model = Subclassed()
    model.compile("sgd", "categorical_crossentropy")
    collector = BatchCollector(model)
    assert collector.specs[0].units is None
    x, y = batch()
    y_pred = model(x)
    assert collector.refine(y_pred) is True
    assert collector.specs[0].units == 3
    assert collector.refine(y_pred) is False  # known now
    row = floats(collector.row(x, y, y_pred, None, 1.0))
    assert row["label_sum_max"] == pytest.approx(1.0)


# --------------------------------------------- compute_loss, old and new
def test_compute_loss_is_called_with_training_only_where_it_takes_it():
    calls = []

    def keras3(x, y, y_pred, sample_weight, training=True):
        calls.append(("keras3", training))

    def older(x, y, y_pred, sample_weight):  # keras.io's masked language model
        calls.append(("older",))

    assert accepts_training(keras3) and not accepts_training(older)
    call_compute_loss(keras3, 1, 2, 3, None, training=True)
    call_compute_loss(older, 1, 2, 3, None, training=True)
    call_compute_loss(older, 1, 2, 3, None, takes_training=False)
    assert calls == [("keras3", True), ("older",), ("older",)]
