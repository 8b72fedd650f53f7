"""The fault runners (`lossguard.diagnosis.faults`) on rows of statistics
measured on hand-made batches: which checks a loss family runs, where a
block's findings land, what the catch-all NEGATIVE_LOSS leaves to the codes
that explain it (`known=`), what the configuration, a crash and an epoch
show, and how a cause's symptoms are linked to it. No model runs a step."""

import keras
import numpy as np
import pytest

from lossguard.diagnosis.causes import link
from lossguard.diagnosis.faults import (
    check_batch,
    check_block,
    check_crash,
    check_epoch,
    check_start,
    split_output,
)
from lossguard.diagnosis.findings import Report
from lossguard.diagnosis.registry import FAULTS, explainers
from lossguard.diagnosis.specs import OutputSpec
from lossguard.diagnosis.statistics import OUTPUT_KEYS
from tests.helpers import statistics_row

pytestmark = pytest.mark.backends
K = 4


def spec(kind="categorical", name="out", **kw):
    kw = {"activation": "softmax", "units": K, **kw}
    return OutputSpec(name=name, loss_name=f"{kind}_loss", kind=kind, **kw)


def softmax(n, k=K, seed=0):
    z = np.random.default_rng(seed).normal(size=(n, k))
    e = np.exp(z - z.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype("float32")


IDS = np.array([1, 2, 3, 1, 2, 3])


def onehot(ids=IDS, k=K):
    return np.eye(k, dtype="float32")[ids]


def labels_for(kind):
    """Valid labels of six rows for a loss family."""
    if kind == "sparse":
        return IDS
    if kind == "binary":
        return (onehot() > 0).astype("float32")
    if kind == "kl":
        return softmax(6, seed=1)
    return onehot()


def row_of(s, y, loss=1.0, p=None, **kw):
    p = softmax(len(y)) if p is None else p
    return statistics_row(s, y, p, loss=loss, **kw)


def codes(findings):
    return [f.code for f in findings]


def columns(*rows):
    """Rows of several batches as a block's columns (one value per batch)."""
    return {key: np.asarray([r[key] for r in rows]) for key in rows[0]}


# ------------------------------------------------------ which checks run
@pytest.mark.parametrize("kind", ["categorical", "sparse", "binary", "kl"])
def test_a_healthy_batch_shows_nothing_whatever_the_family(kind):
    s = spec(kind)
    assert check_batch(row_of(s, labels_for(kind)), [s]) == []


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("categorical", ["NEGATIVE_LABELS", "LABEL_SUM_NOT_ONE"]),
        ("kl", ["NEGATIVE_LABELS"]),  # soft label rows: their sums are free
        ("binary", ["LABELS_OUT_OF_RANGE"]),  # a target below 0, not a flip
        ("other", []),  # no family: no label checks
        ("unbounded", []),
    ],
)
def test_the_loss_family_decides_which_label_checks_run(kind, expected):
    s = spec(kind)
    y = onehot()
    y[2] = -y[2]  # one row of -1s, as GloVe targets or -1 padding
    assert codes(check_batch(row_of(s, y), [s])) == expected


def test_every_finding_of_a_batch_says_where_it_was_seen():
    s = spec()
    y = onehot()
    y[0] = -y[0]
    found = check_batch(row_of(s, y), [s], epoch=2, step=5, phase="validation")
    assert found and all(
        (f.epoch, f.step, f.phase) == (2, 5, "validation") for f in found
    )
    assert str(found[0]).splitlines()[0] == (
        "[ERROR] NEGATIVE_LABELS (epoch 2, validation step 5)"
    )


def test_a_block_explains_only_the_batches_where_a_condition_holds():
    s = spec()
    bad = onehot()
    bad[4] = -0.5 * bad[4]
    rows = [row_of(s, onehot(), 1.2), row_of(s, bad, 0.9), row_of(s, onehot(), 1.1)]
    found = check_block(columns(*rows), [s])
    assert [(i, f.code) for i, f in found] == [
        (1, "NEGATIVE_LABELS"),
        (1, "LABEL_SUM_NOT_ONE"),
    ]
    evidence = found[0][1].evidence
    assert evidence["label_min"] == -0.5 and type(evidence["label_min"]) is float
    assert evidence["batch_loss"] == pytest.approx(0.9)  # that batch's numbers
    assert (evidence["first_sample"], evidence["first_position"]) == (4, 0)


def test_several_outputs_are_checked_each_on_its_own_statistics():
    tags, ids = spec(name="tags"), spec("sparse", name="ids")
    y = onehot()
    y[3] = -y[3]
    row = {
        **row_of(tags, y, prefix="tags/"),
        **row_of(ids, IDS, prefix="ids/"),
        "tags/data_loss": 0.6,
        "ids/data_loss": 0.4,
    }
    (negative, sums) = check_batch(row, [tags, ids])
    assert negative.evidence["output"] == "tags"
    assert negative.message.startswith("Labels of output 'tags' go down to -1")
    assert sums.code == "LABEL_SUM_NOT_ONE" and sums.evidence["output"] == "tags"
    assert split_output(row, ids, single=False)["label_max"] == 3.0
    assert set(split_output(row, ids, single=False)) == set(OUTPUT_KEYS)
    assert np.isnan(split_output({}, ids, single=True)["label_min"])


# -------------------------------------------------- the catch-all, and known=
def negative_but_valid(s=None):
    """A batch whose labels, predictions and weights are all in order, yet
    whose loss is below zero."""
    s = s or spec()
    return s, row_of(s, onehot(), loss=-0.5)


def test_a_negative_loss_nothing_explains_is_a_warning():
    s, row = negative_but_valid()
    (finding,) = check_batch(row, [s])
    assert (finding.code, finding.severity) == ("NEGATIVE_LOSS", "warning")
    assert finding.evidence["loss"] == -0.5 and finding.evidence["aux_loss"] == 0.0
    assert finding.message.startswith("The batch loss is -0.5 (data loss -0.5, ")


def test_a_negative_loss_from_a_loss_of_unknown_floor_is_info():
    s = spec("other", floor="unknown", floor_how="it raised on every probe")
    _, row = negative_but_valid(s)
    (finding,) = check_batch(row, [s])
    assert (finding.code, finding.severity) == ("NEGATIVE_LOSS", "info")
    assert "'other_loss': it raised on every probe" in finding.explanation


@pytest.mark.parametrize("cause", sorted(explainers("NEGATIVE_LOSS")))
def test_a_code_known_to_explain_a_negative_loss_silences_the_catch_all(cause):
    s, row = negative_but_valid()
    assert check_batch(row, [s], known={cause}) == []


def test_a_known_code_that_explains_nothing_here_silences_nothing():
    s, row = negative_but_valid()
    assert "DECODER_TARGET_NOT_SHIFTED" not in explainers("NEGATIVE_LOSS")
    found = check_batch(row, [s], known={"DECODER_TARGET_NOT_SHIFTED"})
    assert codes(found) == ["NEGATIVE_LOSS"]


def test_in_a_block_each_batch_is_explained_by_its_own_findings():
    s = spec()
    bad = onehot()
    bad[0] = -bad[0]
    rows = [row_of(s, bad, -0.3), row_of(s, onehot(), -0.3), row_of(s, onehot(), 1.0)]
    found = check_block(columns(*rows), [s])
    assert [(i, f.code) for i, f in found] == [
        (0, "NEGATIVE_LABELS"),
        (0, "LABEL_SUM_NOT_ONE"),
        (1, "NEGATIVE_LOSS"),
    ]


def test_a_negative_extra_term_is_named_instead_of_the_catch_all():
    s = spec()
    row = row_of(s, onehot(), loss=-2.0, aux=-3.0)
    (finding,) = check_batch(row, [s])
    assert finding.code == "NEGATIVE_AUX_LOSS"
    assert finding.evidence["terms"] == {"other": -3.0}
    assert finding.evidence["data_loss"] == pytest.approx(1.0)


def test_one_outputs_negative_data_loss_is_caught_under_a_positive_total():
    a, b = spec(name="a"), spec("sparse", name="b")
    row = {
        **row_of(a, onehot(), 0.3, prefix="a/"),
        **row_of(b, IDS, 0.3, prefix="b/"),
        "a/data_loss": 1.0,
        "b/data_loss": -0.7,
    }
    (finding,) = check_batch(row, [a, b])
    assert finding.code == "NEGATIVE_LOSS"
    assert finding.message.startswith("Output 'b''s data loss is -0.7")
    assert finding.evidence["negative"] == {"output 'b''s data loss": -0.7}


# ------------------------------------------- a probed loss, a clipping loss
def test_a_finding_under_a_probed_clipping_loss_says_so():
    how = "behaves as categorical cross-entropy on probabilities, clipped into [0, 10]"
    s = spec(identified=how, clip=(0.0, 10.0))
    y = onehot()
    y[1] = -y[1]
    row = row_of(s, y)
    row["loss_at_clip_share"] = 0.25
    negative = check_batch(row, [s])[0]
    assert negative.code == "NEGATIVE_LABELS"
    assert negative.evidence["loss_identified"] == how
    assert negative.evidence["clip"] == [0.0, 10.0]
    assert negative.evidence["at_clip_share"] == 0.25
    assert negative.message.endswith(
        " The loss clips each term into [0, 10]: 25% of this batch's terms sat at "
        "a bound; the clip hides this fault from the loss value, it does not fix it."
    )
    row["loss_at_clip_share"] = float("nan")
    unmeasured = check_batch(row, [s])[0]
    assert "the share of terms at a bound could not be measured" in (unmeasured.message)


# ---------------------------------------------------------- configuration
def test_the_configuration_is_checked_for_every_output():
    specs = [
        spec(name="healthy"),
        spec(name="one_unit", units=1),
        spec(name="smoothed", label_smoothing=1.5),
        spec(name="weighted", loss_weight=-1.0),
    ]
    found = check_start(keras.Sequential([keras.layers.Dense(2)]), specs)
    assert [(f.evidence["output"], f.code) for f in found] == [
        ("one_unit", "SINGLE_UNIT_CATEGORICAL"),
        ("one_unit", "SINGLE_UNIT_SOFTMAX"),
        ("smoothed", "INVALID_LABEL_SMOOTHING"),
        ("weighted", "NEGATIVE_WEIGHTS"),
    ]
    assert all(f.step is None and f.epoch is None for f in found)


@pytest.mark.parametrize(
    "smoothing, true, other, effect",
    [
        (1.5, -0.125, 0.375, "a target weight is negative"),
        (-0.1, 1.075, -0.025, "a target weight is negative"),
        (1.2, 0.1, 0.3, "the true class's target is below the others'"),
    ],
)
def test_label_smoothing_outside_zero_one_shows_the_targets_it_makes(
    smoothing, true, other, effect
):
    (finding,) = check_start(None, [spec(label_smoothing=smoothing)])[:1]
    assert finding.code == "INVALID_LABEL_SMOOTHING"
    assert finding.evidence["true_target"] == pytest.approx(true)
    assert finding.evidence["other_target"] == pytest.approx(other)
    assert effect in finding.explanation


def test_a_loss_negative_by_design_is_one_info_line_with_its_range():
    cosine = OutputSpec(
        name="out", loss_name="cosine_similarity", kind="unbounded", floor="below"
    )
    probed = OutputSpec(
        name="out",
        loss_name="gaussian_nll",
        kind="unbounded",
        floor="below",
        floor_how="-2.41 on valid labels and predictions (0/1 labels, y_pred = y_true)",
    )
    (known,) = check_start(None, [cosine])
    assert (known.code, known.severity) == ("LOSS_UNBOUNDED_BELOW", "info")
    assert known.evidence["range"] == "[-1, 1] (best = -1)"
    (measured,) = check_start(None, [probed])
    assert measured.evidence["range"] == "below zero"
    assert "it gives -2.41 on valid labels" in measured.message


@pytest.mark.parametrize("epsilon, found", [(1e-8, True), (1e-4, False)])
def test_an_optimizer_epsilon_the_variables_cannot_hold_is_found(epsilon, found):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, dtype="float16")(inputs))
    model.compile(keras.optimizers.Adam(epsilon=epsilon), "mse")
    result = check_start(model, [])
    assert codes(result) == (["OPTIMIZER_EPSILON_UNDERFLOW"] if found else [])
    if found:
        assert result[0].evidence["dtype"] == "float16"


# ------------------------------------------------------------------ crashes
def tf_label_error(label, classes):
    """TensorFlow's own error for a sparse label outside [0, classes)."""
    tf = pytest.importorskip("tensorflow")
    with pytest.raises(Exception) as info:
        tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=[0, label], logits=tf.zeros((2, classes))
        )
    return info.value


def test_a_crash_is_pinned_on_the_output_whose_width_the_error_names():
    tags, ids = spec(name="tags", units=4), spec("sparse", name="ids", units=6)
    (finding,) = check_crash(tf_label_error(6, 6), [tags, ids], 0, 3, "train")
    assert finding.evidence["output"] == "ids"
    assert finding.evidence["valid_range"] == "[0, 6)"
    assert finding.message.startswith("A sparse label of output 'ids' is 6")
    assert finding.where == "epoch 0, step 3"


def test_an_error_that_is_no_fault_is_not_explained():
    assert check_crash(ValueError("out of memory"), [spec()], 0, 1, "train") == []


# --------------------------------------------------------- after an epoch
def test_embeddings_that_moved_past_the_threshold_are_reported_after_the_epoch():
    drift = {"mean_cosine": 0.6, "min_cosine": 0.1, "moved_share": 0.8, "rows": 50}
    (finding,) = check_epoch("glove", drift, 0.95, 3)
    assert (finding.code, finding.severity, finding.epoch) == (
        "EMBEDDING_DRIFT",
        "info",
        3,
    )
    assert finding.evidence["layer"] == "glove"
    assert check_epoch("glove", {**drift, "mean_cosine": 0.99}, 0.95, 3) == []


# ------------------------------------------------------ causes and symptoms
def test_a_configurations_cause_takes_the_batchs_symptoms_under_it():
    """Categorical cross-entropy over one sigmoid unit with 0/1 labels: the
    batch shows the symptoms, the configuration the cause."""
    s = spec(units=1, activation="sigmoid")
    y = np.array([[0.0], [1.0], [0.0], [0.0], [1.0], [0.0]], "float32")
    p = np.array([[0.2], [0.7], [0.4], [0.1], [0.9], [0.3]], "float32")
    start = check_start(None, [s])
    assert codes(start) == ["SINGLE_UNIT_CATEGORICAL"]
    batch = check_batch(statistics_row(s, y, p, loss=0.0), [s], 0, 0, "train")
    assert "EMPTY_LABEL_ROWS" in codes(batch)
    linked = link(batch, earlier=start)
    declared = FAULTS["SINGLE_UNIT_CATEGORICAL"].consequences
    for finding in linked:
        assert finding.code in declared
        assert finding.caused_by == "SINGLE_UNIT_CATEGORICAL"
        assert finding.fix.startswith("Fix the root cause, SINGLE_UNIT_CATEGORICAL:")
    report = Report([*start, *linked])
    assert codes(report.root_causes()) == ["SINGLE_UNIT_CATEGORICAL"]


@pytest.mark.parametrize("positions, found", [(6, False), (16, True)])
def test_a_decoder_copy_counts_only_on_a_batch_with_enough_positions(positions, found):
    """A reversed three-word sentence matches its source at the middle word:
    on a batch of one short sentence a copy share above 50% is chance."""
    s = spec("sparse")
    row = row_of(s, labels_for("sparse"))
    row.update(decoder_copy_share=1.0, decoder_copy_input=0.0, active_rows=positions)
    assert ("DECODER_TARGET_NOT_SHIFTED" in codes(check_batch(row, [s]))) is found
