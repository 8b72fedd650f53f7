"""`lossguard.plot`: what the per-batch plot shows, checked on the figure it
draws (no model: histories as the callback logs them)."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

from lossguard.plot import figure  # noqa: E402


def history(validation_loss=-14.5, sparse=False):
    """Two epochs of 4 training batches and 2 validation batches each."""
    rows = []
    for epoch in range(2):
        for step in range(4):
            rows.append(("train", epoch, step, 4 * epoch + step, 2.0 - 0.1 * step))
        for step in range(2):
            rows.append(("validation", epoch, step, 4 * epoch + 4, validation_loss))
    frame = pd.DataFrame(
        rows, columns=["phase", "epoch", "step", "global_step", "loss"]
    )
    frame["running_loss"] = frame["loss"]
    valid = frame.phase == "validation"
    if sparse:
        frame["label_min"] = 1.0
        frame["label_out_of_range_share"] = np.where(valid, 0.25, 0.0)
    else:
        frame["label_min"] = np.where(valid, -1.0, 0.0)
        frame["label_sum_max"] = 1.0
    frame["findings"] = ""
    frame.loc[valid.idxmax(), "findings"] = "NEGATIVE_LABELS"
    return frame


def legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_a_fault_only_in_validation_is_drawn_where_it_happened():
    fig = figure(history())
    top, low = fig.axes
    assert "run: impossible batches (4, 4 in validation)" in legend(top)
    assert "run: loss of each validation batch" in legend(top)
    marks = [
        c for c in top.collections if c.get_label().startswith("run: loss of each v")
    ]
    x, y = marks[0].get_offsets().T
    assert sorted(set(x)) == [4.0, 8.0] and (y == -14.5).all()
    assert any(t.get_text() == "NEGATIVE_LABELS (validation)" for t in top.texts)
    assert "min label" in legend(low)  # the -1 shows in the statistics panel
    mins = [c.get_offsets()[:, 1] for c in low.collections]
    assert any((m == -1.0).all() for m in mins if len(m))


def test_sparse_labels_get_a_statistics_panel():
    fig = figure(history(validation_loss=1.0, sparse=True))
    low = fig.axes[1]
    assert legend(low) == ["share of labels out of range"]
    assert not low.texts


def test_a_log_without_statistics_says_so_inside_the_panel():
    frame = history()[["phase", "global_step", "loss", "findings"]]
    low = figure(frame).axes[1]
    (text,) = low.texts
    assert "no label, prediction or weight statistics" in text.get_text()
    assert text.get_transform() == low.transAxes  # placed in the panel, not on data
