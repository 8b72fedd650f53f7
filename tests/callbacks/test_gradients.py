"""The gradient norms and ReLU reads the callback records (`internals=True`):
the step's own gradients, the same numbers a hand computation gives, the
learning rate each step used, and nothing left behind on the model. Where
the gradients cannot be read, it says so once and keeps the rest."""

import warnings

import keras
import numpy as np
import pytest

import lossguard
from tests.helpers import watched_fit

pytestmark = pytest.mark.backends
INTERNALS = {"internals": True}


def linear(units=1):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(units, name="linear")]
    )
    return model


def data(n=40):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5], [3.0]]) + 1.0).astype("float32")


def sgd_gradient_norms(x, y, w, b, rate=0.05, batch=10):
    """Each batch's gradient norm of a linear model y = xW + b under mean
    squared error, by hand: dL/dW = 2 x^T (xW + b - y) / n and dL/db =
    2 sum(xW + b - y) / n, from the weights before the step; SGD then
    moves them by `rate` times that gradient."""
    norms = []
    for start in range(0, len(x), batch):
        xb, yb = x[start : start + batch].astype("float64"), y[start : start + batch]
        residual = xb @ w + b - yb
        dw, db = 2 * xb.T @ residual / batch, 2 * residual.sum(0) / batch
        norms.append(np.sqrt((dw**2).sum() + (db**2).sum()))
        w, b = w - rate * dw, b - rate * db
    return norms


def test_each_step_records_the_norm_of_the_gradient_it_applied():
    """A linear model under mean squared error: dL/dW = 2 x^T (xW + b - y) / n
    and dL/db = 2 sum(xW + b - y) / n, computed by hand from the weights
    before the step, batch by batch (SGD, so the weights follow by hand too)."""
    model = linear()
    model.compile(keras.optimizers.SGD(0.05), "mse")
    w, b = (np.array(v, "float64") for v in model.get_weights())
    x, y = data()
    cb = watched_fit(model, x, y, batch_size=10, options=INTERNALS)
    expected = sgd_gradient_norms(x, y, w, b)
    train = cb.history[cb.history["phase"] == "train"]
    np.testing.assert_allclose(train["grad:linear"], expected, rtol=1e-4)
    np.testing.assert_allclose(train["learning_rate"], 0.05, rtol=1e-6)


def test_the_learning_rate_column_follows_a_schedule():
    model = linear()
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 1, 0.5)
    model.compile(keras.optimizers.SGD(schedule), "mse")
    cb = watched_fit(model, *data(), batch_size=10, options=INTERNALS)
    rates = cb.history[cb.history["phase"] == "train"]["learning_rate"]
    np.testing.assert_allclose(rates, [0.1, 0.05, 0.025, 0.0125], rtol=1e-5)


def test_relu_layers_read_where_the_forward_pass_returns_them():
    """Units that are 0 on every sample: a bias of -100 kills 3 of 4."""
    keras.utils.set_random_seed(0)
    bias = keras.initializers.Constant([-100.0, -100.0, -100.0, 0.0])
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(4, "relu", bias_initializer=bias, name="hidden"),
            keras.layers.Dense(1, name="out"),
        ]
    )
    model.compile("sgd", "mse")
    x, y = data()
    cb = watched_fit(model, np.abs(x) + 1, y, batch_size=10, options=INTERNALS)
    train = cb.history[cb.history["phase"] == "train"]
    share = train["dead:hidden"].to_numpy()
    assert np.isin(share, [0.75, 1.0]).all() and (share == 0.75).any()
    np.testing.assert_array_equal(train["samples:hidden"], 10)
    assert "dead:out" not in train  # a linear layer is never read


def test_nothing_is_left_on_the_model_after_fit():
    model = linear()
    model.compile("adam", "mse")
    optimizer, layer = model.optimizer, model.layers[0]
    watched_fit(model, *data(), options=INTERNALS)
    assert "apply" not in vars(optimizer)
    assert "compute_metrics" not in vars(model)
    assert "call" not in vars(layer)


def test_by_default_neither_gradients_nor_layers_are_read():
    model = linear()
    model.compile("adam", "mse")
    callback = lossguard.LossSanityCallback(action="record")
    assert callback.internals is False
    wrapped = []

    class Look(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            wrapped.append("apply" in vars(model.optimizer))

    model.fit(*data(), batch_size=10, verbose=0, callbacks=[callback, Look()])
    assert wrapped and not any(wrapped)
    columns = list(callback.history.columns)
    assert not [c for c in columns if c.startswith(("grad:", "dead:"))]
    assert "learning_rate" not in columns
    with pytest.raises(ValueError, match="`internals` must be True or False"):
        lossguard.LossSanityCallback(internals="yes")


def test_a_loss_scale_optimizer_says_once_it_hides_the_gradients():
    """Mixed precision's LossScaleOptimizer applies its gradients inside a
    conditional: one warning, the gradient columns NaN, the rest checked
    (the negative labels are still found)."""
    model = linear(units=3)
    model.layers[-1].activation = keras.activations.softmax
    model.compile(
        keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam()),
        "categorical_crossentropy",
    )
    x, _ = data()
    y = np.tile([[1.5, -0.5, 0.0]], (40, 1)).astype("float32")
    cb = lossguard.LossSanityCallback(action="record", internals=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=10, epochs=2, verbose=0, callbacks=[cb])
    said = [str(w.message) for w in caught if "gradients" in str(w.message)]
    assert len(said) == 1 and "LossScaleOptimizer" in said[0], said
    assert "does not check EXPLODING_GRADIENTS or VANISHING_GRADIENTS" in said[0]
    assert cb.history["grad:linear"].isna().all()
    assert cb.report.get("NEGATIVE_LABELS") is not None


@pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="eager PyTorch: a read left from another call is a real tensor",
)
def test_a_relu_read_left_from_another_trace_costs_only_that_read():
    """A ReLU layer the step never runs still holds a read from elsewhere
    (here a symbolic tensor, as from a predict traced mid-fit): the row is
    recorded without the step's reads, never lost."""

    class TwoHeads(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(8, "relu", name="hidden")
            self.unused = keras.layers.Dense(8, "relu", name="unused")
            self.out = keras.layers.Dense(1, name="out")

        def call(self, x):
            return self.out(self.hidden(x))

    keras.utils.set_random_seed(0)
    model = TwoHeads()  # built by fit, before the callback starts
    model.compile("sgd", "mse")
    stale = keras.KerasTensor((None, 8), dtype="float32")

    class Poison(keras.callbacks.Callback):
        """After lossguard's on_train_begin (its reads are installed)."""

        def on_train_begin(self, logs=None):
            watch = cb.instrumenter.collector.activations
            assert [layer.name for layer in watch.layers] == ["hidden", "unused"]
            watch.latest["unused"] = (stale, stale)

    cb = lossguard.LossSanityCallback(action="record", internals=True)
    model.fit(*data(), batch_size=10, verbose=0, callbacks=[cb, Poison()])
    train = cb.history[cb.history["phase"] == "train"]
    assert len(train) == 4 and np.isfinite(train["loss"]).all()
    assert train["dead:unused"].isna().all()  # the stale read, dropped


def test_a_model_built_inside_its_first_step_gets_its_gradients_read():
    """`build(shape)` on a subclassed model makes no variables: on TensorFlow
    its layers make them inside the first step, after lossguard sized its
    columns (one per layer then; the variables are placed at the first
    `apply`). JAX and PyTorch build it before the callbacks start."""

    class Small(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(8, "relu", name="hidden")
            self.out = keras.layers.Dense(1, name="out")

        def call(self, x):
            return self.out(self.hidden(x))

    model = Small()
    model.build((None, 4))
    model.compile(keras.optimizers.SGD(0.05), "mse")
    cb = lossguard.LossSanityCallback(action="record", internals=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(*data(), batch_size=10, epochs=2, verbose=0, callbacks=[cb])
    said = [str(w.message) for w in caught if "gradients" in str(w.message)]
    assert said == []
    train = cb.history[cb.history["phase"] == "train"]
    for column in ("grad:hidden", "grad:out", "learning_rate", "dead:hidden"):
        assert np.isfinite(train[column]).all(), column
    assert (train["grad:out"] > 0).all()
    np.testing.assert_allclose(train["learning_rate"], 0.05, rtol=1e-6)


def test_a_model_built_in_its_first_step_records_the_hand_computed_norms():
    """The same hand computation as for a built model, on a subclassed linear
    model whose variables are made inside the first step (TensorFlow)."""

    class Linear(keras.Model):
        def __init__(self):
            super().__init__()
            self.linear = keras.layers.Dense(
                1, kernel_initializer=keras.initializers.Constant(0.1), name="linear"
            )

        def call(self, x):
            return self.linear(x)

    model = Linear()
    model.compile(keras.optimizers.SGD(0.05), "mse")
    x, y = data()
    cb = watched_fit(model, x, y, batch_size=10, options=INTERNALS)
    w, b = np.full((4, 1), 0.1), np.zeros(1)
    expected = sgd_gradient_norms(x, y, w, b)
    train = cb.history[cb.history["phase"] == "train"]
    np.testing.assert_allclose(train["grad:linear"], expected, rtol=1e-4)
