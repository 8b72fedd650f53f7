"""Errors a backend raises instead of a loss (`lossguard.diagnosis.crashes`),
read for their numbers. Every error here is raised for real, by Keras,
TensorFlow or PyTorch, on a few values: the parser is tested against the
words the libraries actually use, not against copies of its own regexes."""

import logging
import sys

import keras
import numpy as np
import pytest
from keras import ops

from lossguard import backends
from lossguard.diagnosis.crashes import (
    annotate_weight_mask_crash,
    error_detail,
    label_out_of_range,
    weight_mask_crash,
)
from lossguard.diagnosis.faults import check_crash
from lossguard.diagnosis.specs import OutputSpec

BACKEND = keras.backend.backend()
K = 5


def raised(fn, *args):
    """The exception `fn(*args)` raises (the test fails if it raises none)."""
    with pytest.raises(Exception) as info:
        fn(*args)
    return info.value


def sparse_loss_error(labels):
    """What this backend raises for sparse ids outside [0, K) in Keras' loss."""
    probabilities = np.full((len(labels), K), 1 / K, "float32")
    return raised(
        keras.losses.sparse_categorical_crossentropy, np.array(labels), probabilities
    )


# ------------------------------------------------- a sparse label out of range
@pytest.mark.backends
@pytest.mark.parametrize("label", [K, 12, -1])
def test_the_backends_own_error_names_the_label_and_the_op(label):
    if not backends.current().stops_on_bad_sparse_label:
        values = keras.losses.sparse_categorical_crossentropy(
            np.array([0, label]), np.full((2, K), 1 / K, "float32")
        )
        assert ops.convert_to_numpy(values)[1] == 0  # JAX: a row of zeros
        return
    refused = label_out_of_range(sparse_loss_error([0, 1, label, 2]))
    assert refused is not None and refused.value == label
    if BACKEND == "tensorflow":
        assert refused.classes == K
        assert refused.op == "SparseSoftmaxCrossEntropyWithLogits"
        assert (
            f"Received a label value of {label} which is outside the valid "
            + (f"range of [0, {K})")
            in refused.detail
        )
    else:  # PyTorch says the value only
        assert (refused.classes, refused.op) == (None, "torch nll_loss")
        assert refused.detail == f"Target {label} is out of bounds."


def test_a_traced_step_names_the_graph_node_that_refused_it():
    tf = pytest.importorskip("tensorflow")

    @tf.function
    def step(labels, probabilities):
        return keras.losses.sparse_categorical_crossentropy(labels, probabilities)

    error = raised(
        step, tf.constant([0, 7, 1]), tf.constant(np.full((3, K), 0.2, "float32"))
    )
    assert str(error).startswith("Graph execution error")
    refused = label_out_of_range(error)
    assert (refused.value, refused.classes) == (7, K)
    assert refused.op.endswith("SparseSoftmaxCrossEntropyWithLogits")
    assert "/" in refused.op  # the node's full name, as TensorFlow gives it
    # The detail is the one line with the numbers, not the traceback above it.
    assert refused.detail.startswith("Received a label value of 7")
    assert "\n" not in refused.detail and "File " not in refused.detail


@pytest.mark.parametrize("target", [5, -3])
def test_pytorchs_nll_loss_error_is_read_whatever_called_it(target):
    torch = pytest.importorskip("torch")
    error = raised(
        torch.nn.functional.cross_entropy,
        torch.zeros(4, 5),
        torch.tensor([0, target, 1, 2]),
    )
    refused = label_out_of_range(error)
    assert (refused.value, refused.classes, refused.op) == (
        target,
        None,
        "torch nll_loss",
    )


def test_an_embedding_input_out_of_range_is_not_a_label():
    """An input id the Embedding has no row for fails in other words."""
    error = raised(keras.layers.Embedding(K, 2), np.array([[1, K + 4]]))
    assert label_out_of_range(error) is None
    detail = error_detail(error)
    assert f"= {K + 4} is not in [0, {K})" in detail


def test_pytorchs_embedding_error_is_not_a_label_either():
    torch = pytest.importorskip("torch")
    error = raised(torch.nn.functional.embedding, torch.tensor([9]), torch.zeros(K, 2))
    assert label_out_of_range(error) is None
    assert error_detail(error) == "index out of range in self"


# ----------------------------------------------------- what a finding shows
def test_a_crash_becomes_a_finding_at_its_batch_with_the_op():
    spec = OutputSpec(
        name="tokens",
        loss_name="sparse_categorical_crossentropy",
        kind="sparse",
        units=K,
    )
    error = sparse_loss_error([0, 1, K])
    (finding,) = check_crash(error, [spec], epoch=1, step=4, phase="validation")
    assert finding.code == "LABELS_OUT_OF_RANGE" and finding.severity == "error"
    assert finding.where == "epoch 1, validation step 4"
    assert finding.evidence["label"] == K
    assert finding.evidence["valid_range"] == f"[0, {K})"
    assert finding.evidence["op"] == "SparseSoftmaxCrossEntropyWithLogits"
    assert finding.evidence["output"] == "tokens"
    assert finding.message.startswith(
        f"A sparse label is {K}, outside [0, {K}); TensorFlow stopped the step in "
        "SparseSoftmaxCrossEntropyWithLogits: "
    )


# ------------------------------------------------------------- error_detail
@pytest.mark.backends
def test_error_detail_takes_the_line_with_the_numbers():
    error = RuntimeError(
        "Graph execution error:\n\n  File x.py, line 3\n"
        "Received a label value of 9 which is outside the valid range of [0, 4)."
    )
    assert error_detail(error).startswith("Received a label value of 9")
    assert error_detail(ValueError("\n  first line  \nsecond")) == "first line"
    assert error_detail(ValueError()) == "ValueError"
    assert len(error_detail(ValueError("x" * 1000))) == 300


# --------------------------------------------- a weight against a Keras mask
def per_sample_weight_times_mask():
    """(batch,) weights times a (batch, steps) mask, as Keras' loss does."""
    return raised(ops.multiply, ops.ones((4,)), ops.ones((4, 5)))


def test_a_per_sample_weight_against_a_token_mask_gets_the_fix():
    error = per_sample_weight_times_mask()
    assert "Incompatible shapes: [4] vs. [4,5]" in str(error)
    assert weight_mask_crash(error) is None, "only where the loss raised it"
    fix = weight_mask_crash(error, in_loss=True)
    assert "`sample_weight` of shape (4,) with the (4, 5) mask" in fix
    assert fix.endswith("sample_weight = np.repeat(w[:, None], 5, axis=1).")


def test_the_traced_form_of_the_same_error_is_read_too():
    tf = pytest.importorskip("tensorflow")

    @tf.function
    def weigh(w, mask):
        return w * mask

    error = raised(
        weigh.get_concrete_function, tf.TensorSpec([8]), tf.TensorSpec([8, 3])
    )
    assert "input shapes: [8], [8,3]" in str(error)
    assert "np.repeat(w[:, None], 3, axis=1)" in weight_mask_crash(error, True)


def test_an_error_inside_compile_loss_counts_as_in_the_loss():
    error = ValueError(
        "Exception encountered in compile_loss: Incompatible shapes: [16] vs. [16,7]"
    )
    assert "np.repeat(w[:, None], 7, axis=1)" in weight_mask_crash(error)


def test_other_shape_errors_are_not_explained():
    other = raised(ops.multiply, ops.ones((4, 3)), ops.ones((4, 5)))
    assert weight_mask_crash(other, in_loss=True) is None


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes: 3.11+")
def test_the_fix_is_added_to_the_traceback_and_logged(caplog):
    error = per_sample_weight_times_mask()
    error = ValueError(f"compile_loss: {error}")  # as raised in the loss
    with caplog.at_level(logging.ERROR, logger="lossguard"):
        annotate_weight_mask_crash(error)
    (note,) = error.__notes__
    assert note.startswith("lossguard: Keras could not combine a per-sample")
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    unrelated = ValueError("something else")
    annotate_weight_mask_crash(unrelated)
    assert not hasattr(unrelated, "__notes__")
