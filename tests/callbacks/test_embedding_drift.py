"""EmbeddingDriftMonitor on fine-tuned and frozen real GloVe embeddings."""

import warnings

import keras
import pytest

import lossguard
from lossguard.glove import EmbeddingDriftMonitor, bundled_glove, glove_embedding
from tests.diagnosis.test_embeddings import token_ids, tokens_model

pytestmark = pytest.mark.backends


@pytest.fixture(scope="module")
def glove():
    return bundled_glove()


@pytest.fixture(scope="module")
def words(glove):
    return list(glove.index[100:160])


def test_drift_monitor_on_fine_tuned_glove(glove, words):
    keras.utils.set_random_seed(0)
    vocab = ["", "[UNK]", *words]
    layer, _ = glove_embedding(vocab, glove, trainable=True)
    model = tokens_model(layer, len(vocab))
    x, y = token_ids(len(vocab), n=96)
    monitor = EmbeddingDriftMonitor(threshold=0.95)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[monitor])
    h = monitor.history
    assert list(h.epoch) == [0, 1, 2, 3]
    assert h.mean_cosine.is_monotonic_decreasing and h.mean_cosine.iloc[0] < 1
    assert (h.min_cosine <= h.mean_cosine).all()
    assert h.rows.iloc[0] == len(words)  # the zero rows "" and "[UNK]" left out
    f = monitor.report.get("EMBEDDING_DRIFT")
    assert f.severity == "info" and f.evidence["mean_cosine"] < 0.95
    row = h[h.epoch == f.epoch].iloc[0]
    assert f.evidence["mean_cosine"] == row.mean_cosine
    assert sum(issubclass(w.category, lossguard.LossSanityWarning) for w in caught) == 1


def test_drift_monitor_on_a_frozen_layer_sees_no_drift(glove, words):
    vocab = ["", "[UNK]", *words]
    layer, _ = glove_embedding(vocab, glove)
    model = tokens_model(layer, len(vocab))
    x, y = token_ids(len(vocab))
    monitor = EmbeddingDriftMonitor(layer="glove_embedding", action="record")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[monitor])
    assert (monitor.history.mean_cosine > 0.99999).all()
    assert (monitor.history.moved_share == 0).all() and monitor.findings == []


def test_a_model_without_a_trainable_embedding_trains_on_with_one_warning():
    from lossguard.testing import tiny_seq2seq

    model, x, y = tiny_seq2seq(n=32)  # its GloVe embedding is frozen
    monitor = lossguard.EmbeddingDriftMonitor()
    with pytest.warns(lossguard.LossSanityWarning, match="watches nothing"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[monitor])
    assert monitor.history.empty
