"""The stable, clipped and bounded cross-entropies against Keras' own."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lossguard
from lossguard import losses as L
from tests.helpers import value_and_grad

#: The oracle, stability and property tests run on every backend.
pytestmark = pytest.mark.backends

EPS_LOSS = -np.log(1e-7)


def _probs(rng, shape):
    return _np(keras.ops.softmax(rng.normal(size=shape).astype("float32")))


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _onehot(rng, shape, k):
    return np.eye(k, dtype="float32")[rng.integers(0, k, shape)]


# --------------------------------------------------------------- oracle tests
@pytest.mark.parametrize("shape", [(8, 5), (4, 6, 11)])
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_stable_dense_equals_keras(rng, shape, from_logits, label_smoothing):
    logits = rng.normal(size=shape).astype("float32") * 3
    y_pred = logits if from_logits else _np(keras.ops.softmax(logits))
    y_true = _onehot(rng, shape[:-1], shape[-1])
    ours = L.StableCategoricalCrossentropy(from_logits, label_smoothing)(y_true, y_pred)
    ref = keras.losses.CategoricalCrossentropy(from_logits, label_smoothing)(
        y_true, y_pred
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_stable_dense_soft_labels_equal_keras(rng):
    y_true = _probs(rng, (16, 9))
    y_pred = _probs(rng, (16, 9))
    np.testing.assert_allclose(
        L.stable_categorical_crossentropy(y_true, y_pred),
        keras.losses.categorical_crossentropy(y_true, y_pred),
        rtol=1e-5,
    )


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("ignore_class", [None, 0])
def test_stable_sparse_equals_keras(rng, from_logits, ignore_class):
    logits = rng.normal(size=(4, 7, 13)).astype("float32")
    y_pred = logits if from_logits else _np(keras.ops.softmax(logits))
    ids = rng.integers(0, 13, (4, 7))
    ours = L.StableSparseCategoricalCrossentropy(from_logits, ignore_class)(ids, y_pred)
    ref = keras.losses.SparseCategoricalCrossentropy(from_logits, ignore_class)(
        ids, y_pred
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-5)


def test_masked_seq2seq_model_matches_keras(rng):
    """Keras' mask from Embedding(mask_zero=True) reaches our loss unchanged."""
    inp = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(20, 4, mask_zero=True)(inp)
    h = keras.layers.LSTM(8, return_sequences=True)(h)
    out = keras.layers.Dense(20, activation="softmax")(h)
    model = keras.Model(inp, out)
    x = rng.integers(1, 20, (5, 6))
    x[:, 4:] = 0
    y = rng.integers(1, 20, (5, 6))
    values = {}
    for name, loss in {
        "ours": L.StableSparseCategoricalCrossentropy(),
        "keras": keras.losses.SparseCategoricalCrossentropy(),
    }.items():
        model.compile(loss=loss)
        values[name] = float(model.compute_loss(x, y, model(x)))
    assert values["ours"] == pytest.approx(values["keras"], rel=1e-5)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="reads a TensorFlow graph"
)
def test_sparse_never_builds_one_hot():
    """The graph of the sparse loss has no OneHot op and no (B,T,V) label."""
    import tensorflow as tf

    @tf.function
    def f(ids, p):
        return L.stable_sparse_categorical_crossentropy(ids, p)

    graph = f.get_concrete_function(
        tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None, None, 50))
    ).graph
    assert not [op for op in graph.get_operations() if op.type == "OneHot"]


# ------------------------------------------------------- stability and dtypes
def test_exact_zero_probability_costs_and_teaches():
    y_true = np.array([[1.0, 0.0, 0.0]], "float32")
    y_pred = [[0.0, 1.0, 0.0]]
    loss, grad = value_and_grad(
        lambda p: L.stable_categorical_crossentropy(y_true, p), y_pred
    )
    assert float(loss[0]) == pytest.approx(EPS_LOSS, rel=1e-5)
    assert np.all(np.isfinite(grad)) and grad[0, 0] < 0  # pushes p_true up
    _, keras_grad = value_and_grad(
        lambda p: keras.losses.categorical_crossentropy(y_true, p), y_pred
    )
    assert keras_grad[0, 0] == 0  # Keras' clip


@pytest.mark.parametrize(
    "fn", [L.stable_categorical_crossentropy, L.bounded_categorical_crossentropy]
)
def test_huge_logits_finite_loss_and_gradient(fn):
    y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], "float32")
    loss, grad = value_and_grad(
        lambda z: fn(y, z, from_logits=True), [[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]]
    )
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))


def test_huge_logits_sparse_finite():
    ids = np.array([1])
    loss, grad = value_and_grad(
        lambda z: L.stable_sparse_categorical_crossentropy(ids, z, from_logits=True),
        [[1e4, -1e4, 0.0]],
    )
    assert np.isfinite(float(loss[0])) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_predictions_computed_in_float32(rng, dtype):
    p = _probs(rng, (6, 10))
    y = _onehot(rng, (6,), 10)
    half = keras.ops.convert_to_tensor(p, dtype=dtype)
    loss = L.stable_categorical_crossentropy(y, half)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    ref = keras.losses.categorical_crossentropy(y, keras.ops.cast(half, "float32"))
    np.testing.assert_allclose(_np(loss), _np(ref), rtol=1e-5)
    # A half-precision zero still costs -log(eps), not -log(0) or 0.
    zero = keras.ops.convert_to_tensor([[0.0, 1.0]], dtype=dtype)
    assert float(L.stable_categorical_crossentropy([[1.0, 0.0]], zero)[0]) == (
        pytest.approx(EPS_LOSS, rel=1e-4)
    )


# ----------------------------------------------------------- property tests
prob_rows = hnp.arrays(
    np.float32,
    st.tuples(st.integers(1, 6), st.integers(2, 8)),
    elements=st.floats(0, 1, width=32),
)


@given(prob_rows, st.data())
def test_nonnegative_and_bounded_for_valid_labels(p, data):
    k = p.shape[-1]
    labels = data.draw(
        hnp.arrays(np.int64, p.shape[:1], elements=st.integers(0, k - 1))
    )
    y = np.eye(k, dtype="float32")[labels]
    for loss in (
        L.stable_categorical_crossentropy(y, p),
        L.stable_sparse_categorical_crossentropy(labels, p),
    ):
        v = _np(loss)
        assert np.all(np.isfinite(v))
        assert np.all(v >= 0) and np.all(v <= EPS_LOSS + 1e-3)
    q = data.draw(st.floats(0.05, 1.0))
    b = _np(L.bounded_categorical_crossentropy(y, p, q=q))
    assert np.all(b >= -1e-6) and np.all(b <= 1 / q + 1e-5)
    bs = _np(L.bounded_sparse_categorical_crossentropy(labels, p, q=q))
    np.testing.assert_allclose(bs, b, rtol=1e-4, atol=1e-5)


@given(
    hnp.arrays(np.float32, (3, 4), elements=st.floats(-5, 5, width=32)),
    st.floats(0.0, 3.0),
    st.floats(3.0, 20.0),
)
def test_clipped_stays_in_range_for_any_labels(y, lo, hi):
    p = np.full((3, 4), 0.25, dtype="float32")
    v = _np(L.clipped_categorical_crossentropy(y, p, min_loss=lo, max_loss=hi))
    assert np.all(v >= lo - 1e-6) and np.all(v <= hi + 1e-6)


def test_bounded_tends_to_crossentropy(rng):
    p = _probs(rng, (8, 5))
    y = _onehot(rng, (8,), 5)
    ce = _np(L.stable_categorical_crossentropy(y, p))
    gce = _np(L.bounded_categorical_crossentropy(y, p, q=1e-4))
    np.testing.assert_allclose(gce, ce, rtol=1e-3)


def test_clipped_class_counts_what_it_clipped():
    loss = L.ClippedCategoricalCrossentropy()
    y = np.array([[-1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [-0.5, 0.0]], "float32")
    p = np.full((4, 2), 0.5, "float32")
    assert float(loss(y, p)) >= 0
    assert float(_np(loss.clipped_count)) == 2
    assert repr(loss.clipped_count) == "2" and loss.token_count == 4  # plain ints
    assert loss.clipped_fraction() == pytest.approx(0.5)
    loss.reset_counts()
    loss(np.eye(2, dtype="float32")[[0, 1, 1, 0]], p)
    assert loss.clipped_fraction() == 0.0


# --------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: L.StableCategoricalCrossentropy(epsilon=0.7), "epsilon=0.7"),
        (lambda: L.StableCategoricalCrossentropy(epsilon=0), "epsilon=0"),
        (lambda: L.BoundedCategoricalCrossentropy(q=0), "q=0"),
        (lambda: L.BoundedSparseCategoricalCrossentropy(q=1.5), "q=1.5"),
        (
            lambda: L.ClippedCategoricalCrossentropy(min_loss=3, max_loss=1),
            "min_loss=3",
        ),
        (lambda: L.StableCategoricalCrossentropy(label_smoothing=-0.1), "-0.1"),
        (lambda: L.BoundedCategoricalCrossentropy(label_smoothing=1.5), "1.5"),
    ],
)
def test_bad_arguments_name_the_value(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_mismatched_shapes_raise_instead_of_broadcasting():
    with pytest.raises(ValueError, match=r"y_true.shape=\(4, 1\)"):
        L.stable_categorical_crossentropy(np.ones((4, 1)), np.ones((4, 5)) / 5)
    with pytest.raises(ValueError, match="sparse"):
        L.stable_sparse_categorical_crossentropy(np.ones((4, 3)), np.ones((4, 5)) / 5)


# ------------------------------------------------------------ serialisation
ALL_CLASSES = [
    (L.StableCategoricalCrossentropy, {"label_smoothing": 0.1, "epsilon": 1e-6}),
    (L.StableSparseCategoricalCrossentropy, {"ignore_class": 0, "epsilon": 1e-5}),
    (L.ClippedCategoricalCrossentropy, {"min_loss": 0.1, "max_loss": 9.0}),
    (L.ClippedSparseCategoricalCrossentropy, {"ignore_class": 0, "max_loss": 7.0}),
    (L.BoundedCategoricalCrossentropy, {"q": 0.4, "from_logits": True}),
    (L.BoundedSparseCategoricalCrossentropy, {"q": 0.9, "ignore_class": 3}),
]


@pytest.mark.parametrize(("cls", "kwargs"), ALL_CLASSES)
def test_get_config_returns_every_init_argument(cls, kwargs):
    import inspect

    loss = cls(**kwargs, name="custom", dtype="float32")
    config = loss.get_config()
    params = set(inspect.signature(cls.__init__).parameters) - {"self"}
    assert params == set(config)
    for key, value in kwargs.items():
        assert config[key] == value
    clone = cls.from_config(config)
    assert clone.get_config() == config
    roundtrip = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(roundtrip) is cls and roundtrip.get_config() == config


def test_positional_arguments_match_keras():
    import inspect

    def positional(cls):
        return [
            n
            for n, p in inspect.signature(cls.__init__).parameters.items()
            if p.kind == p.POSITIONAL_OR_KEYWORD and n != "self"
        ]

    dense = positional(keras.losses.CategoricalCrossentropy)
    sparse = positional(keras.losses.SparseCategoricalCrossentropy)
    for cls, _ in ALL_CLASSES:
        expected = sparse if "Sparse" in cls.__name__ else dense
        assert positional(cls) == expected


SAVE_SCRIPT = r"""
import json, sys
import numpy as np
import keras
import lossguard
model = keras.saving.load_model(sys.argv[1])
x = np.load(sys.argv[2])
print(json.dumps({"config": keras.losses.serialize(model.loss),
                  "pred": model.predict(x, verbose=0).tolist()}))
"""


@pytest.mark.parametrize(
    "loss",
    [
        L.StableSparseCategoricalCrossentropy(ignore_class=0, epsilon=1e-6),
        L.BoundedSparseCategoricalCrossentropy(q=0.3),
        L.ClippedSparseCategoricalCrossentropy(max_loss=8.0),
        L.stable_sparse_categorical_crossentropy,
    ],
    ids=["stable-class", "bounded-class", "clipped-class", "function"],
)
def test_saved_model_loads_in_fresh_process(tmp_path, rng, loss):
    inp = keras.Input((3,), dtype="int32")
    h = keras.layers.Embedding(10, 4)(inp)
    out = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inp, out)
    model.compile(optimizer="adam", loss=loss)
    x = rng.integers(0, 10, (4, 3))
    model.fit(x, x, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "load.py"
    script.write_text(SAVE_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(path), str(tmp_path / "x.npy")],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(result["pred"], model.predict(x, verbose=0), rtol=1e-5)
    if isinstance(loss, keras.losses.Loss):
        assert result["config"]["config"] == loss.get_config()
    else:
        assert "stable_sparse_categorical_crossentropy" in json.dumps(result["config"])


def test_import_registers_every_loss():
    for name in L.__all__:
        obj = getattr(L, name)
        registered = keras.saving.get_registered_name(obj)
        assert registered.startswith("lossguard>"), name
    assert lossguard.losses.stable_crossentropy is L.stable_categorical_crossentropy
