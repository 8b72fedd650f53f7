"""The embedding maths on small matrices: rows, cosines, drift, layers."""

import keras
import numpy as np
import pytest

from lossguard.diagnosis.embedding_math import (
    cosines,
    drift,
    embedding_layers,
    embedding_rows,
    words_by_id,
)

pytestmark = pytest.mark.backends


def test_cosines_are_row_wise_and_zero_rows_give_zero():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[2.0, 0.0], [-1.0, -1.0], [1.0, 0.0]])
    np.testing.assert_allclose(cosines(a, b), [1.0, -1.0, 0.0], atol=1e-7)


def test_drift_reports_mean_min_and_the_share_that_moved():
    original = np.eye(4, dtype="float32")
    rows = original.copy()
    rows[0] = [0.0, 1.0, 0.0, 0.0]  # turned 90 degrees: cosine 0
    rows[1] = [0.1, 1.0, 0.0, 0.0]  # barely moved: cosine 0.995
    out = drift(rows, original, moved=0.01)
    assert out["rows"] == 4
    assert out["min_cosine"] == pytest.approx(0.0, abs=1e-7)
    assert out["moved_share"] == pytest.approx(0.25)  # only row 0 is below 0.99
    expected = (0.0 + 1.0 / np.sqrt(1.01) + 1.0 + 1.0) / 4
    assert out["mean_cosine"] == pytest.approx(expected, rel=1e-6)
    assert drift(np.empty((0, 4)), np.empty((0, 4)), 0.01) is None


def test_words_by_id_from_a_list_or_a_dict_with_gaps():
    assert words_by_id(["", "[UNK]", "cat"]) == ["", "[UNK]", "cat"]
    assert words_by_id({"cat": 2, "dog": 4}) == [None, None, "cat", None, "dog"]


def test_rows_of_a_fresh_layer_come_from_its_constant_initializer():
    start = np.arange(12, dtype="float32").reshape(4, 3)
    layer = keras.layers.Embedding(
        4, 3, embeddings_initializer=keras.initializers.Constant(start)
    )
    np.testing.assert_array_equal(embedding_rows(layer), start)
    assert not layer.built  # read, not built
    np.testing.assert_array_equal(embedding_rows(start.tolist()), start)


def test_embedding_layers_are_found_in_nested_models():
    inner_in = keras.Input((3,), dtype="int32")
    inner = keras.Model(inner_in, keras.layers.Embedding(5, 2, name="inner")(inner_in))
    x = keras.Input((3,), dtype="int32")
    h = keras.layers.Embedding(5, 2, name="outer")(x)
    model = keras.Model(x, [h, inner(x)])
    assert sorted(layer.name for layer in embedding_layers(model)) == ["inner", "outer"]
