"""lossguard.testing: the tiny GloVe seq2seq is healthy, and faults inject."""

import pytest

import lossguard
from lossguard.testing import FAULTS, tiny_seq2seq

pytestmark = pytest.mark.backends  # the fixtures' model, on every backend


def test_healthy_tiny_seq2seq_trains_quietly():
    model, x, y = tiny_seq2seq()
    cb = lossguard.LossSanityCallback(action="raise")
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[cb])
    assert [f for f in cb.findings if f.severity != "info"] == []
    per_epoch = cb.history.groupby("epoch").loss.mean()
    assert per_epoch.is_monotonic_decreasing
    assert (cb.history.loss > 0).all()


def test_drift_fault_shows_in_fit_with_the_monitor():
    model, x, y = tiny_seq2seq("EMBEDDING_DRIFT")
    monitor = lossguard.EmbeddingDriftMonitor(threshold=0.95, action="record")
    model.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[monitor])
    assert "EMBEDDING_DRIFT" in monitor.report.codes
    assert monitor.history.mean_cosine.iloc[-1] < 0.95


def test_unknown_fault_names_the_known_ones():
    with pytest.raises(ValueError, match="NEGATIVE_LABELS, LABEL_SUM_NOT_ONE"):
        tiny_seq2seq("NOT_A_FAULT")
    assert len(FAULTS) == len(lossguard.Code)
