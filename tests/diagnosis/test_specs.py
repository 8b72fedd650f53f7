"""What a compiled model promises about each output
(`lossguard.diagnosis.specs`): Keras' and lossguard's losses map to their
family and settings however they are passed, and each family answers the
questions the checks ask. Models are compiled, never trained."""

import functools
import logging
import math

import keras
import pytest

from lossguard import losses
from lossguard.diagnosis.specs import (
    OutputSpec,
    clip_ceiling,
    name_key,
    output_specs,
    per_output,
)
from lossguard.kinds import LossKind

pytestmark = pytest.mark.backends
CE = keras.losses.CategoricalCrossentropy
SCE = keras.losses.SparseCategoricalCrossentropy
BCE = keras.losses.BinaryCrossentropy


@pytest.fixture(scope="module")
def softmax_model():
    """Dense(3, softmax) on 4 features: compiled anew by each test."""
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))


def spec_of(model, loss, **compile_kwargs):
    model.compile("sgd", loss, **compile_kwargs)
    (spec,) = output_specs(model)
    return spec


# ------------------------------------------- Keras' losses, however passed
KERAS_LOSSES = {
    # id: (loss, kind, from_logits, label_smoothing, ignore_class)
    "cce name": ("categorical_crossentropy", "categorical", False, 0.0, None),
    "cce class name": ("CategoricalCrossentropy", "categorical", False, 0.0, None),
    "cce function": (
        keras.losses.categorical_crossentropy,
        "categorical",
        False,
        0.0,
        None,
    ),
    "cce class": (CE(), "categorical", False, 0.0, None),
    "cce logits, smoothing": (
        CE(from_logits=True, label_smoothing=0.2),
        "categorical",
        True,
        0.2,
        None,
    ),
    "focal cce": (
        keras.losses.CategoricalFocalCrossentropy(),
        "categorical",
        False,
        0.0,
        None,
    ),
    "sparse name": ("sparse_categorical_crossentropy", "sparse", False, 0.0, None),
    "sparse function": (
        keras.losses.sparse_categorical_crossentropy,
        "sparse",
        False,
        0.0,
        None,
    ),
    "sparse ignore_class": (SCE(ignore_class=0), "sparse", False, 0.0, 0),
    "sparse logits, ignore -1": (
        SCE(from_logits=True, ignore_class=-1),
        "sparse",
        True,
        0.0,
        -1,
    ),
    "bce name": ("binary_crossentropy", "binary", False, 0.0, None),
    "bce smoothing": (BCE(label_smoothing=0.1), "binary", False, 0.1, None),
    "binary focal logits": (
        keras.losses.BinaryFocalCrossentropy(from_logits=True),
        "binary",
        True,
        0.0,
        None,
    ),
    "dice name": ("dice", "binary", False, 0.0, None),
    "dice class": (keras.losses.Dice(), "binary", False, 0.0, None),
    "kld alias": ("kld", "kl", False, 0.0, None),
    "kl class": (keras.losses.KLDivergence(), "kl", False, 0.0, None),
    "kl function": (keras.losses.kl_divergence, "kl", False, 0.0, None),
}


@pytest.mark.parametrize("case", list(KERAS_LOSSES))
def test_keras_losses_are_known_by_name_class_or_function(case, softmax_model):
    loss, kind, from_logits, smoothing, ignore = KERAS_LOSSES[case]
    spec = spec_of(softmax_model, loss)
    assert spec.kind == kind and isinstance(spec.kind, LossKind)
    assert (spec.from_logits, spec.ignore_class) == (from_logits, ignore)
    assert spec.label_smoothing == pytest.approx(smoothing)
    assert spec.floor == "zero" and spec.clip is None
    assert spec.identified == "", "Keras' own losses are known, not probed"
    assert (spec.activation, spec.units, spec.dtype) == ("softmax", 3, "float32")


@pytest.mark.parametrize(
    "loss, known_range",
    [
        ("cosine_similarity", "[-1, 1] (best = -1)"),
        (keras.losses.CosineSimilarity(), "[-1, 1] (best = -1)"),
        ("poisson", "unbounded below (Keras drops the log(y!) term)"),
        (keras.losses.Poisson(), "unbounded below (Keras drops the log(y!) term)"),
    ],
)
def test_losses_negative_by_design_have_a_floor_below_zero(
    loss, known_range, softmax_model
):
    spec = spec_of(softmax_model, loss)
    assert (spec.kind, spec.floor, spec.floor_how) == (
        "unbounded",
        "below",
        known_range,
    )


def test_the_spec_names_the_loss_as_the_user_passed_it(softmax_model):
    assert spec_of(softmax_model, "categorical_crossentropy").loss_name == (
        "categorical_crossentropy"
    )
    assert spec_of(softmax_model, CE()).loss_name == "CategoricalCrossentropy"
    assert spec_of(softmax_model, keras.losses.kl_divergence).loss_name == (
        "kl_divergence"
    )
    assert (
        name_key("Sparse_Categorical_Crossentropy") == "sparsecategoricalcrossentropy"
    )
    assert name_key("categorical_crossentropy") == name_key("CategoricalCrossentropy")


# ------------------------------------------------------- lossguard's own
@pytest.mark.parametrize(
    "loss, kind, clip",
    [
        (losses.StableCategoricalCrossentropy(), "categorical", None),
        (losses.stable_sparse_categorical_crossentropy, "sparse", None),
        (losses.BoundedSparseCategoricalCrossentropy(), "sparse", None),
        (
            losses.ClippedCategoricalCrossentropy(max_loss=5.0),
            "categorical",
            (0.0, 5.0),
        ),
        (
            losses.ClippedSparseCategoricalCrossentropy(min_loss=-1.0, max_loss=8.0),
            "sparse",
            (-1.0, 8.0),
        ),
        (
            losses.ClippedCategoricalCrossentropy(),  # default: -log(epsilon)
            "categorical",
            (0.0, -math.log(keras.config.epsilon())),
        ),
    ],
)
def test_lossguards_losses_declare_their_family_and_clip(
    loss, kind, clip, softmax_model
):
    spec = spec_of(softmax_model, loss)
    assert (spec.kind, spec.identified, spec.floor) == (kind, "", "zero")
    assert spec.clip == (None if clip is None else pytest.approx(clip))


def test_lossguards_loss_settings_are_read_like_keras(softmax_model):
    loss = losses.StableSparseCategoricalCrossentropy(from_logits=True, ignore_class=0)
    spec = spec_of(softmax_model, loss)
    assert (spec.kind, spec.from_logits, spec.ignore_class) == ("sparse", True, 0)


# --------------------------------------------- what each family promises
#: kind -> (expects_probabilities, categorical, label_rows_are_distributions,
#: one_hot_labels, sparse_labels, binary_targets, ranged_labels, cross_entropy,
#: prediction_rows_sum_to_one)
PROMISES = {
    "categorical": (True, True, True, True, False, False, False, True, True),
    "sparse": (True, True, False, False, True, False, True, True, True),
    "binary": (True, False, False, False, False, True, True, True, False),
    "kl": (True, False, True, False, False, False, False, False, True),
    "unbounded": (False, False, False, False, False, False, False, False, False),
    "other": (False, False, False, False, False, False, False, False, False),
    "none": (False, False, False, False, False, False, False, False, False),
}
QUESTIONS = (
    "expects_probabilities",
    "categorical",
    "label_rows_are_distributions",
    "one_hot_labels",
    "sparse_labels",
    "binary_targets",
    "ranged_labels",
    "cross_entropy",
    "prediction_rows_sum_to_one",
)


@pytest.mark.parametrize("kind", list(PROMISES))
def test_each_family_answers_what_the_checks_ask(kind):
    spec = OutputSpec(name="out", loss_name="loss", kind=kind)
    answers = tuple(getattr(spec, question) for question in QUESTIONS)
    assert dict(zip(QUESTIONS, answers, strict=True)) == dict(
        zip(QUESTIONS, PROMISES[kind], strict=True)
    )
    logits = OutputSpec(name="out", loss_name="loss", kind=kind, from_logits=True)
    assert logits.expects_probabilities is False  # logits are not probabilities


def test_a_spec_takes_its_kind_as_a_string_and_refuses_unknown_ones():
    spec = OutputSpec(name="out", loss_name="x", kind="sparse")
    assert spec.kind is LossKind.SPARSE and spec.kind == "sparse"
    with pytest.raises(ValueError, match="'sparse_ids'"):
        OutputSpec(name="out", loss_name="x", kind="sparse_ids")
    assert (spec.loss_weight, spec.dtype, spec.floor, spec.clip) == (
        1.0,
        "float32",
        "zero",
        None,
    )


# --------------------------------------------------------- several outputs
@pytest.fixture(scope="module")
def three_outputs():
    """tags (softmax, 3), flag (sigmoid, 1) and reg (linear float16, 2)."""
    inputs = keras.Input((4,))
    h = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(
        inputs,
        {
            "tags": keras.layers.Dense(3, activation="softmax", name="tags")(h),
            "flag": keras.layers.Dense(1, activation="sigmoid", name="flag")(h),
            "reg": keras.layers.Dense(2, name="reg", dtype="float16")(h),
        },
    )


def test_dict_outputs_get_their_own_loss_weight_and_layer(three_outputs):
    three_outputs.compile(
        "adam",
        loss={"tags": CE(label_smoothing=0.1), "flag": "binary_crossentropy"},
        loss_weights={"tags": 2.0, "flag": 0.5},
    )
    specs = {s.name: s for s in output_specs(three_outputs)}
    assert set(specs) == {"tags", "flag", "reg"}
    tags, flag, reg = specs["tags"], specs["flag"], specs["reg"]
    assert (tags.kind, tags.label_smoothing, tags.loss_weight) == (
        "categorical",
        pytest.approx(0.1),
        2.0,
    )
    assert (tags.activation, tags.units) == ("softmax", 3)
    assert (flag.kind, flag.loss_weight, flag.activation, flag.units) == (
        "binary",
        0.5,
        "sigmoid",
        1,
    )
    # No loss for this output: nothing to check it against, floor unknown.
    assert (reg.kind, reg.loss_name, reg.floor, reg.loss_weight) == (
        "none",
        "none",
        "unknown",
        1.0,
    )
    assert (reg.activation, reg.dtype, reg.units) == ("linear", "float16", 2)


@pytest.fixture(scope="module")
def two_outputs():
    inputs = keras.Input((4,))
    h = keras.layers.Dense(8, activation="relu")(inputs)
    a = keras.layers.Dense(3, activation="softmax", name="tags")(h)
    b = keras.layers.Dense(1, activation="sigmoid", name="flag")(h)
    return keras.Model(inputs, [a, b])


def test_list_outputs_take_losses_and_weights_in_order(two_outputs):
    two_outputs.compile(
        "adam",
        loss=["categorical_crossentropy", BCE(from_logits=True)],
        loss_weights=[1.5, -1.0],
    )
    tags, flag = output_specs(two_outputs)
    assert (tags.name, tags.kind, tags.loss_weight) == ("tags", "categorical", 1.5)
    assert (flag.name, flag.kind, flag.from_logits, flag.loss_weight) == (
        "flag",
        "binary",
        True,
        -1.0,
    )


def test_one_loss_for_several_outputs_is_shared(two_outputs):
    two_outputs.compile("adam", loss="categorical_crossentropy")
    assert [s.loss_name for s in output_specs(two_outputs)] == [
        "categorical_crossentropy"
    ] * 2


@pytest.mark.parametrize(
    "compile_kwargs, what",
    [
        ({"loss": ["categorical_crossentropy"]}, "loss"),
        (
            {"loss": ["categorical_crossentropy", "mse"], "loss_weights": [1.0]},
            "loss_weights",
        ),
    ],
)
def test_a_list_of_the_wrong_length_names_the_argument(
    compile_kwargs, what, two_outputs
):
    two_outputs.compile("adam", **compile_kwargs)
    with pytest.raises(ValueError) as info:
        output_specs(two_outputs)
    assert str(info.value) == (
        f"`{what}` has 1 entries for 2 outputs ['tags', 'flag']. Pass one per output."
    )


def test_per_output_spreads_single_list_and_dict_values():
    names = ["a", "b"]
    assert per_output("mse", names) == ["mse", "mse"]
    assert per_output(None, names) == [None, None]
    assert per_output(["x", "y"], names) == ["x", "y"]
    assert per_output(("x", "y"), names) == ["x", "y"]
    assert per_output({"b": 2, "c": 3}, names) == [None, 2]  # missing -> None
    # A list of another length is one output's value (its labels as a list)...
    labels = [[0, 1], [1, 0], [1, 1]]
    assert per_output(labels, names) == [labels, labels]
    # ...unless it is a compile() argument, which needs one entry per output.
    with pytest.raises(ValueError, match="`loss_weights` has 3 entries"):
        per_output([1, 2, 3], names, "loss_weights")


# ----------------------------------------------------------- output layers
def test_the_activation_is_read_through_wrappers_and_softmax_layers():
    inputs = keras.Input((3, 4))
    dense = keras.layers.Dense(5)
    outputs = [
        keras.layers.TimeDistributed(keras.layers.Dense(5, activation="softmax"))(
            inputs
        ),
        keras.layers.Softmax(axis=1)(dense(inputs)),  # over the steps, not classes
        keras.layers.Softmax()(dense(inputs)),
        keras.layers.Activation("sigmoid")(dense(inputs)),
        keras.layers.Dense(5, activation="relu")(inputs),
        keras.layers.Dense(5)(inputs),
    ]
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "categorical_crossentropy")
    assert [s.activation for s in output_specs(model)] == [
        "softmax",
        "softmax(axis=1)",
        "softmax",
        "sigmoid",
        "relu",
        "linear",
    ]
    assert {s.units for s in output_specs(model)} == {5}


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.out = keras.layers.Dense(6, activation="softmax")

    def call(self, x):
        return self.out(x)


def test_an_unbuilt_models_outputs_are_read_from_a_batch():
    model = Subclassed()
    model.compile("sgd", "sparse_categorical_crossentropy")
    (before,) = output_specs(model)
    assert (before.kind, before.units) == ("sparse", None)
    (after,) = output_specs(model, keras.ops.zeros((2, 3, 6), "float16"))
    assert (after.units, after.dtype) == (6, "float16")


# ------------------------------------------------------------ no readable
def test_a_model_without_a_compiled_loss_has_kind_none():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile("adam")  # add_loss models
    (spec,) = output_specs(model)
    assert (spec.kind, spec.loss_name, spec.floor, spec.floor_how) == (
        "none",
        "none",
        "unknown",
        "no compiled loss",
    )


def test_an_unreadable_compile_config_keeps_weight_one_and_says_so(
    softmax_model, caplog
):
    loss = functools.partial(keras.losses.categorical_crossentropy, from_logits=False)
    with caplog.at_level(logging.INFO, logger="lossguard"):
        spec = spec_of(softmax_model, loss, loss_weights=[3.0])
    assert spec.loss_weight == 1.0
    (record,) = [r for r in caplog.records if "compile config" in r.message]
    assert "takes every loss_weight as 1" in record.message
    assert spec.kind == "categorical", "the partial itself is still probed"


def test_clip_ceiling_is_minus_log_epsilon():
    assert clip_ceiling() == pytest.approx(16.118095650958317)
    assert clip_ceiling() == -math.log(keras.config.epsilon())


@pytest.mark.parametrize("name", ["mse", "huber"])
def test_a_keras_loss_named_by_a_string_is_probed_like_its_class(name, softmax_model):
    by_name = spec_of(softmax_model, name)
    by_class = spec_of(softmax_model, keras.losses.get(name))
    assert "raised on every probe" not in by_name.identified
    assert (
        (by_name.kind, by_name.floor)
        == (by_class.kind, by_class.floor)
        == (
            "other",
            "zero",
        )
    )
