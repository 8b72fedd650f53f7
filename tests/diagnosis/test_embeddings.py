"""Embedding checks (OOV rows, misalignment) on the real bundled GloVe vectors
and real Keras models."""

import keras
import numpy as np
import pytest

import lossguard
from lossguard.glove import (
    EmbeddingDriftMonitor,
    bundled_glove,
    check_embedding,
    embedding_matrix,
    glove_embedding,
)

STEPS = 6


@pytest.fixture(scope="module")
def glove():
    return bundled_glove()


@pytest.fixture(scope="module")
def words(glove):
    return list(glove.index[100:160])  # 60 real, frequent English words


def tokens_model(layer, vocab_size):
    inp = keras.Input((STEPS,), dtype="int32")
    h = keras.layers.LSTM(16, return_sequences=True)(layer(inp))
    model = keras.Model(inp, keras.layers.Dense(vocab_size, activation="softmax")(h))
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    return model


def token_ids(vocab_size, n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(2, vocab_size, (n, STEPS))
    return x, (x + 1) % vocab_size


def frozen_layer(matrix):
    layer = keras.layers.Embedding(
        matrix.shape[0],
        matrix.shape[1],
        embeddings_initializer=keras.initializers.Constant(matrix),
        trainable=False,
    )
    layer.build((None, STEPS))
    return layer


def test_aligned_glove_layer_is_quiet(glove, words):
    vocab = ["", "[UNK]", *words]
    layer, coverage = glove_embedding(vocab, glove)
    layer.build((None, STEPS))
    assert coverage.hit_rate == 1.0
    assert check_embedding(layer) == []  # the layer remembers its source
    model = tokens_model(layer, len(vocab))
    x, y = token_ids(len(vocab))
    assert lossguard.diagnose(model, x, y).codes == set()


def test_matrix_built_without_the_oov_id_is_off_by_one(glove, words):
    tokenizer_vocab = ["", "[UNK]", *words]  # TextVectorization-style ids
    matrix, _ = embedding_matrix(["", *words], glove)  # forgot "[UNK]"
    model = tokens_model(frozen_layer(matrix), len(tokenizer_vocab))
    x, y = token_ids(len(tokenizer_vocab))
    report = lossguard.diagnose(model, x, y, vocabulary=tokenizer_vocab, vectors=glove)
    f = report.get("EMBEDDING_MISALIGNED")
    assert f.severity == "error"
    assert f.evidence["best_offset"] == -1 and f.evidence["best_offset_share"] == 1.0
    assert f.evidence["match_share"] == 0.0
    assert f.evidence["sampled"] == len(words) - 1  # the last id has no row
    assert "off by -1" in f.message
    assert f.evidence["rows"] == len(tokenizer_vocab) - 1  # and one row short
    assert "is not in [0, 61)" in f.evidence["crash"]  # the lookup it breaks
    fixed, _ = embedding_matrix(tokenizer_vocab, glove)
    good = tokens_model(frozen_layer(fixed), len(tokenizer_vocab))
    report = lossguard.diagnose(good, x, y, vocabulary=tokenizer_vocab, vectors=glove)
    assert report.codes == set()
    assert check_embedding(frozen_layer(fixed), tokenizer_vocab, glove) == []


def test_rows_from_another_vocabulary(glove, words):
    vocab = ["", "[UNK]", *words]
    other, _ = embedding_matrix(["", "[UNK]", *glove.index[500:560]], glove)
    (f,) = check_embedding(frozen_layer(other), vocab, glove)
    assert f.code == "EMBEDDING_MISALIGNED" and "another vocabulary" in f.message


def test_oov_rows_of_a_frozen_layer(glove, words):
    made_up = [f"zq{i}xv" for i in range(20)]
    vocab = ["", "[UNK]", *words, *made_up]  # 20 of 80 words have no vector
    layer, coverage = glove_embedding(vocab, glove)
    layer.build((None, STEPS))
    (f,) = check_embedding(layer)
    assert f.code == "EMBEDDING_OOV_ROWS" and f.severity == "warning"
    assert f.evidence["oov_share"] == pytest.approx(0.25)
    assert f.evidence["most_frequent_missing"][:2] == ["zq0xv", "zq1xv"]
    assert coverage.hit_rate == pytest.approx(0.75)
    trainable, _ = glove_embedding(vocab, glove, trainable=True, name="tuned")
    trainable.build((None, STEPS))
    assert check_embedding(trainable) == []  # it can learn those rows


def test_oov_zero_rows_without_a_vocabulary_and_in_the_callback(glove, words):
    vocab = ["", "[UNK]", *words, *[f"zq{i}xv" for i in range(20)]]
    matrix, _ = embedding_matrix(vocab, glove)  # zeros for the 20 made-up words
    model = tokens_model(frozen_layer(matrix), len(vocab))
    x, y = token_ids(len(vocab))
    cb = lossguard.LossSanityCallback(action="record")
    model.fit(x, y, batch_size=16, verbose=0, callbacks=[cb])
    f = cb.report.get("EMBEDDING_OOV_ROWS")
    assert f.evidence["oov_share"] == pytest.approx(20 / 80)


def test_bad_arguments(glove, words):
    layer = frozen_layer(np.zeros((5, 8), "float32"))
    with pytest.raises(ValueError, match="50 dims but"):
        check_embedding(layer, ["", "a"], glove)
    short, _ = embedding_matrix(["", "[UNK]", *words[:10]], glove)
    (f,) = check_embedding(frozen_layer(short), ["", "[UNK]", *words], glove)
    assert f.code == "EMBEDDING_MISALIGNED" and "ids 12..61 have no row" in f.message
    with pytest.raises(ValueError, match="threshold=2"):
        EmbeddingDriftMonitor(threshold=2)


def test_check_embedding_on_a_fresh_layer_reads_its_initial_rows():
    """A layer straight from glove_embedding, before any model ran it."""
    from lossguard.glove import bundled_glove, glove_embedding

    glove = bundled_glove()
    vocab = ["", "the", "of", "and", "to"]
    layer, _ = glove_embedding(vocab, glove)
    assert not layer.built
    assert lossguard.glove.check_embedding(layer) == []
    shifted = ["", "of", "the", "to", "and"]
    codes = [f.code for f in lossguard.glove.check_embedding(layer, shifted, glove)]
    assert codes == ["EMBEDDING_MISALIGNED"]
    assert not layer.built  # read from its initializer, not built
