"""Losses a model holds outside compile() (`lossguard.diagnosis.held`): read
from the source of an overridden `compute_loss`, as keras.io's knowledge
distillation writes it, and then known like a compiled loss."""

import logging

import keras
import pytest
from keras import ops

from lossguard.diagnosis.held import held_losses, overrides_compute_loss
from lossguard.diagnosis.specs import output_specs, unseen_loss

pytestmark = pytest.mark.backends


def student():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3)(inputs))


class Distiller(keras.Model):
    """keras.io's examples/vision/knowledge_distillation.py, Keras 3 port."""

    def __init__(self, student):
        super().__init__()
        self.student = student

    def compile(self, optimizer, student_loss_fn, distillation_loss_fn):
        super().compile(optimizer=optimizer)
        self.student_loss_fn = student_loss_fn
        self.distillation_loss_fn = distillation_loss_fn

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, allow_empty=False
    ):
        teacher_pred = ops.stop_gradient(y_pred)
        student_loss = self.student_loss_fn(y, y_pred)
        distillation_loss = self.distillation_loss_fn(
            ops.softmax(teacher_pred), ops.softmax(y_pred)
        )
        return 0.1 * student_loss + 0.9 * distillation_loss

    def call(self, x):
        return self.student(x)


@pytest.fixture(scope="module")
def distiller():
    model = Distiller(student())
    model.compile(
        "adam",
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        distillation_loss_fn=keras.losses.KLDivergence(),
    )
    return model


def test_the_loss_applied_to_y_and_y_pred_is_found(distiller):
    (held,) = held_losses(distiller)
    assert held.attribute == "student_loss_fn"
    assert held.loss is distiller.student_loss_fn
    assert held.owner == "Distiller"
    assert held.how == "held by Distiller.compute_loss as self.student_loss_fn"


def test_a_held_loss_is_known_like_a_compiled_one(distiller):
    assert distiller.loss is None
    (spec,) = output_specs(distiller)
    assert (spec.kind, spec.from_logits) == ("sparse", True)
    assert spec.loss_name == "SparseCategoricalCrossentropy"
    assert spec.identified == "held by Distiller.compute_loss as self.student_loss_fn"
    assert unseen_loss(distiller) is None


def test_a_probed_held_loss_says_where_it_lives_then_how_it_behaves():
    model = Distiller(student())
    model.compile(
        "adam",
        student_loss_fn=lambda y, p: keras.losses.categorical_crossentropy(
            y, p, from_logits=True
        ),
        distillation_loss_fn=keras.losses.KLDivergence(),
    )
    # A subclassed model's outputs are known from a batch (as the callback does).
    (spec,) = output_specs(model, ops.zeros((2, 3)))
    assert spec.kind == "categorical" and spec.from_logits
    assert spec.identified == (
        "held by Distiller.compute_loss as self.student_loss_fn; "
        "behaves as categorical cross-entropy on logits"
    )


class Named(keras.Model):
    """Other argument names, keyword calls, a repeated call, swapped tensors."""

    def compute_loss(self, inputs, targets, preds, weights=None, training=True):
        return (
            self.first(targets, preds)
            + self.second(targets, y_pred=preds)
            + self.third(y_true=targets, y_pred=preds)
            + self.first(targets, preds)
            + self.swapped(preds, targets)
            + self.on_inputs(inputs, preds)
            + self.sub(targets, preds)
            + self.scale(targets, preds)
        )


def test_calls_are_read_by_position_and_keyword_whatever_the_names():
    inputs = keras.Input((4,))
    model = Named(inputs, keras.layers.Dense(3)(inputs))
    for name in ("first", "second", "third", "swapped", "on_inputs"):
        setattr(model, name, keras.losses.mean_squared_error)
    model.sub = student()  # a model called on them is not a loss
    model.scale = 3.0  # nor is what cannot be called
    held = sorted(h.attribute for h in held_losses(model))
    assert held == ["first", "second", "third"]


class Opaque(keras.Model):
    def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
        return ops.mean((y - y_pred) ** 2)


def test_a_loss_written_inline_is_unseen_and_said_so():
    inputs = keras.Input((4,))
    model = Opaque(inputs, keras.layers.Dense(3)(inputs))
    model.compile("adam")
    assert overrides_compute_loss(model) and held_losses(model) == []
    (spec,) = output_specs(model)
    assert (spec.kind, spec.floor) == ("none", "unknown")
    assert unseen_loss(model).startswith(
        "Opaque computes its loss in its own compute_loss, which applies no "
        "attribute of the model to (y, y_pred)"
    )


class Short(keras.Model):
    def compute_loss(self, x, y):
        return self.fn(x, y)


def test_an_override_without_y_and_y_pred_arguments_holds_nothing():
    inputs = keras.Input((4,))
    model = Short(inputs, keras.layers.Dense(3)(inputs))
    model.fn = keras.losses.mean_squared_error
    assert held_losses(model) == []


def test_keras_own_compute_loss_holds_nothing():
    for model in (student(), keras.Sequential([keras.layers.Dense(2)])):
        model.compile("adam", "mse")
        assert not overrides_compute_loss(model)
        assert held_losses(model) == [] and unseen_loss(model) is None


def test_an_unreadable_source_is_logged_and_holds_nothing(caplog):
    namespace = {}
    exec(  # no file to read the source from, as in some notebooks' tools
        "import keras\n"
        "class Generated(keras.Model):\n"
        "    def compute_loss(self, x, y, y_pred, sample_weight=None):\n"
        "        return self.fn(y, y_pred)\n",
        namespace,
    )
    inputs = keras.Input((4,))
    model = namespace["Generated"](inputs, keras.layers.Dense(3)(inputs))
    model.fn = keras.losses.mean_squared_error
    with caplog.at_level(logging.INFO, logger="lossguard"):
        assert held_losses(model) == []
    assert any(
        "cannot read Generated.compute_loss" in r.message for r in caplog.records
    )


def make_local_distiller():
    class LocalDistiller(Distiller):
        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
            return self.student_loss_fn(y, y_pred)

    return LocalDistiller


def test_the_owner_is_the_class_even_when_defined_in_a_function():
    model = make_local_distiller()(student())
    model.compile("adam", keras.losses.sparse_categorical_crossentropy, None)
    (held,) = held_losses(model)
    assert held.owner == "LocalDistiller"
    assert held.how == "held by LocalDistiller.compute_loss as self.student_loss_fn"
