"""The in-graph statistics at NumPy level: each computation keeps to what it
declares, the values on small hand-made batches, and the replica rules (one
global row from the rows of a batch's parts equals the whole batch's row)."""

import math

import numpy as np
import pytest
from keras import ops

from lossguard.diagnosis.specs import OutputSpec
from lossguard.diagnosis.statistics import (
    OUTPUT_KEYS,
    OUTPUT_STATS,
    combine_replicas,
    output_statistics,
    stat_of,
)
from lossguard.diagnosis.statistics.labels import BY_KIND, LABEL_STATS, targets
from lossguard.diagnosis.statistics.layout import LAYOUT_STATS, lay_out
from lossguard.diagnosis.statistics.losses import (
    CLIP_STATS,
    GLOBAL_STATS,
    clip_statistics,
    model_statistics,
)
from lossguard.diagnosis.statistics.predictions import (
    PREDICTION_STATS,
    prediction_statistics,
)
from lossguard.diagnosis.statistics.sequence import (
    SEQUENCE_STATS,
    sequence_statistics,
)
from lossguard.diagnosis.statistics.weights import WEIGHT_STATS, weight_statistics
from lossguard.kinds import LossKind

pytestmark = pytest.mark.backends
NAN = float("nan")


def spec(kind="categorical", **kw):
    return OutputSpec(name="out", loss_name="test", kind=kind, **kw)


def stats(y, p, w=None, kind="categorical", inputs=None, **kw):
    """`output_statistics` as Python floats."""
    out = output_statistics(
        np.asarray(y), np.asarray(p, "float32"), w, spec(kind, **kw), inputs=inputs
    )
    return {key: float(value) for key, value in out.items()}


def names(declared):
    return {stat.name for stat in declared}


def softmax(rng, shape):
    z = rng.normal(size=shape)
    e = np.exp(z - z.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype("float32")


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 6, (4, 3))
    return ids, np.eye(6, dtype="float32")[ids], softmax(rng, (4, 3, 6))


# --- each computation keeps to its declaration --------------------------------


def test_every_packed_key_is_declared_once():
    assert len(OUTPUT_KEYS) == len(set(OUTPUT_KEYS))
    assert all(stat_of(key).name == key for key in OUTPUT_KEYS)
    assert stat_of("decoder/label_min").name == "label_min"
    assert stat_of("aux:dense_1").name == "aux:"


@pytest.mark.parametrize("kind", [k for k in LossKind])
def test_each_function_emits_only_what_its_module_declares(kind, batch):
    ids, onehot, p = batch
    labels = ids if kind == LossKind.SPARSE else onehot
    if kind == LossKind.BINARY:
        labels = (onehot > 0).astype("float32")
    s = spec(kind)
    b = lay_out(labels, ops.convert_to_tensor(p), np.ones((4, 3)), s, None, True)
    measured = BY_KIND.get(kind, targets)(b)
    assert set(measured.values) | set(measured.certain) <= names(LABEL_STATS)
    assert set(weight_statistics(b.raw_weights)) == names(WEIGHT_STATS)
    assert set(prediction_statistics(b)) <= names(PREDICTION_STATS)
    assert set(sequence_statistics(b, measured.ids, ids)) <= names(SEQUENCE_STATS)


def test_the_model_and_clip_functions_emit_what_they_declare(batch):
    ids, onehot, p = batch
    row = model_statistics(1.5, np.zeros((2, 3)), [ops.ones(())], {"d": []}, 1)
    assert set(row) - {"aux:d", "aux:other"} == names(GLOBAL_STATS)
    clipped = spec(clip=(0.0, 1.0))
    assert set(clip_statistics("categorical_crossentropy", clipped, onehot, p)) == (
        names(CLIP_STATS)
    )


@pytest.mark.parametrize("kind", ["categorical", "sparse", "binary", "kl", "other"])
def test_values_keep_to_their_declared_dtype(kind, batch):
    ids, onehot, p = batch
    labels = ids if kind == "sparse" else onehot
    row = stats(labels, p, np.ones((4, 3)), kind=kind, inputs=ids)
    for stat in OUTPUT_STATS:
        value = row[stat.name]
        if math.isnan(value) or stat.dtype == "float32":
            continue
        if stat.dtype == "bool":
            assert value in (0.0, 1.0), stat.name
        else:
            assert value == int(value), stat.name
    assert {s.name for s in LAYOUT_STATS} <= {k for k, v in row.items() if v == v}


# --- values on hand-made batches --------------------------------------------------


def test_dense_labels_negative_entries_empty_rows_and_sums():
    y = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.2, -0.2, 0.0], [0.5, 0.5, 0.0]])
    p = np.full((4, 3), 1 / 3)
    row = stats(y, p)
    assert row["label_min"] == pytest.approx(-0.2)
    assert row["label_neg_share"] == pytest.approx(1 / 12)
    assert row["label_neg_row_share"] == pytest.approx(1 / 4)
    assert row["label_neg_first_row"] == 2
    assert row["label_empty_share"] == pytest.approx(1 / 4)
    assert row["label_sum_min"] == pytest.approx(1.0)  # empty rows left out
    assert row["label_sum_mean"] == pytest.approx(1.0)
    assert row["label_sum_off_share"] == 0.0
    assert row["pred_sum_max"] == pytest.approx(1.0)
    assert row["active_rows"] == 4 and row["rows"] == 4


def test_rows_of_zero_weight_do_not_count():
    y = np.array([[0.0, 2.0, 0.0], [0.0, 1.0, 0.0]])
    row = stats(y, np.full((2, 3), 1 / 3), np.array([0.0, 1.0]))
    assert row["active_rows"] == 1
    assert row["label_sum_max"] == pytest.approx(1.0)
    assert row["weight_min"] == 0.0 and row["weighted"] == 1.0


def test_sparse_ids_out_of_range_and_the_ignored_class():
    y = np.array([0, 1, 7, -100])
    p = np.full((4, 4), 0.25)
    row = stats(y, p, kind="sparse", ignore_class=-100)
    assert row["active_rows"] == 3
    assert row["label_max"] == 7 and row["label_min"] == 0
    assert row["label_out_of_range_share"] == pytest.approx(1 / 3)
    assert row["y_nonfinite"] == 0.0


def test_binary_targets_outside_zero_one_and_saturated_units():
    y = np.array([[0.0, 1.0], [2.0, 0.5]])
    p = np.array([[0.0, 0.5], [0.5, 0.5]])
    row = stats(y, p, kind="binary")
    assert row["label_out_of_range_share"] == pytest.approx(1 / 4)
    assert row["pred_saturated_share"] == pytest.approx(1 / 2)
    assert math.isnan(row["pred_sum_max"])  # a sigmoid's rows need not sum to 1


def test_padding_and_a_decoder_input_that_copies_its_targets():
    targets = np.array([[3, 4, 5, 0], [2, 2, 1, 0]])
    p = np.full((2, 4, 6), 1 / 6)
    row = stats(targets, p, kind="sparse", inputs=[np.zeros((2, 4)), targets])
    assert row["pad_share"] == pytest.approx(2 / 8)
    assert row["decoder_copy_share"] == 1.0
    assert row["decoder_copy_input"] == 1
    shifted = np.array([[1, 3, 4, 5], [1, 2, 2, 1]])
    assert stats(targets, p, kind="sparse", inputs=shifted)["decoder_copy_share"] < 0.5


def test_labels_that_do_not_fit_the_output_leave_their_statistics_nan():
    row = stats(np.ones((3, 5)), np.full((2, 4), 0.25))
    assert math.isnan(row["label_min"]) and math.isnan(row["label_sum_max"])
    assert row["pred_max"] == 0.25  # what needs no labels is still measured


# --- the replica rules ------------------------------------------------------


@pytest.mark.parametrize("kind", ["categorical", "sparse"])
def test_the_parts_rows_combine_into_the_whole_batchs_row(kind):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 5, (8, 3))
    y = ids if kind == "sparse" else np.eye(5, dtype="float32")[ids]
    if kind == "categorical":
        y[5, 1] = [0.5, -0.5, 1.0, 0.0, 0.0]  # a negative row in the second part
        y[6, 0] = 0.0  # an empty row
    p = softmax(rng, (8, 3, 5))
    w = rng.integers(0, 2, (8, 3)).astype("float32")
    w[5, 1] = w[6, 0] = 1.0
    whole = stats(y, p, w, kind=kind, inputs=ids)
    parts = [
        output_statistics(
            y[i : i + 4], p[i : i + 4], w[i : i + 4], spec(kind), inputs=ids[i : i + 4]
        )
        for i in (0, 4)
    ]
    keys = list(OUTPUT_KEYS)
    rows = ops.stack([ops.stack([part[k] for k in keys]) for part in parts])
    combined = dict(
        zip(keys, np.asarray(combine_replicas(rows, keys)).tolist(), strict=True)
    )
    for key in keys:
        if stat_of(key).replicas == "first" and key == "decoder_copy_input":
            continue  # which input: the same on every part, not a share
        if key == "pred_spread":  # a sample of each part's first rows
            assert combined[key] == max(part[key] for part in parts)
            continue
        a, b = whole[key], combined[key]
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-5), key
    if kind == "categorical":
        assert combined["label_neg_first_row"] == 5 * 3 + 1  # offset by part one


def test_the_spread_is_zero_for_an_output_that_ignores_its_input():
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 5, (8, 3))
    same = np.broadcast_to(softmax(rng, (1, 1, 5)), (8, 3, 5))
    assert stats(ids, same, kind="sparse")["pred_spread"] == pytest.approx(0, abs=1e-7)
    varied = softmax(rng, (8, 3, 5))
    assert stats(ids, varied, kind="sparse")["pred_spread"] > 0.05
    one = stats(ids[:1, :1], varied[:1, :1], kind="sparse")  # one row: no spread
    assert math.isnan(one["pred_spread"])


def test_the_architecture_page_lists_every_statistic_as_declared():
    from pathlib import Path

    from lossguard.diagnosis.statistics import (
        AUX_TERM,
        GLOBAL_STATS,
        OUTPUT_LOSS_STATS,
    )

    page = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
    table = page.read_text().split("## The statistics", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    scopes = (
        ("model", (*GLOBAL_STATS, AUX_TERM)),
        ("output", OUTPUT_STATS),
        ("output loss", OUTPUT_LOSS_STATS),
    )
    declared = [
        f"| `{s.name}` | {scope} | {s.dtype} | {s.replicas.value} | {s.doc} |"
        for scope, stats in scopes
        for s in stats
    ]
    assert rows == declared
