"""Healthy runs whose gradients or ReLU layers look like a fault, and are not.

Issue #25's controls for EXPLODING_GRADIENTS, VANISHING_GRADIENTS and
DEAD_UNITS (the shallow controls of test_telltale_controls.py run with them
too): deep stacks, a high rate held by gradient clipping, a converged model
whose loss no longer moves, a CNN, a regression, sparse inputs. Each trains
for more than the 200 steps the trend checks read, with
`internals=True`, and must end with no error or warning; each also
checks that the columns those codes read were recorded (a control that
measured nothing would prove nothing).
"""

import keras
import numpy as np
import pytest

from tests.helpers import loud, watched_fit

pytestmark = pytest.mark.backends
K, FEATURES, N, BATCH = 10, 20, 2400, 8  # 300 steps an epoch
layers = keras.layers


def task(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, FEATURES)).astype("float32")
    return x, (x @ rng.normal(size=(FEATURES, K))).argmax(1)


def deep(activation, depth=6, init="glorot_uniform"):
    stack = [keras.Input((FEATURES,))]
    stack += [
        layers.Dense(32, activation, kernel_initializer=init) for _ in range(depth)
    ]
    return keras.Sequential([*stack, layers.Dense(K, "softmax")])


def images():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, K, N)
    protos = rng.uniform(size=(K, 12, 12, 1))
    x = 0.5 * protos[labels] + 0.5 * rng.uniform(size=(N, 12, 12, 1))
    return x.astype("float32"), labels


def cnn():
    return keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            layers.Conv2D(8, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(16, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(K, "softmax"),
        ]
    )


def bag_of_words():
    """Binary word-presence inputs, 95% zeros, into a ReLU layer."""
    rng = np.random.default_rng(2)
    x = (rng.uniform(size=(N, 200)) < 0.05).astype("float32")
    return x, (x @ rng.normal(size=(200, K))).argmax(1)


def regression():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N, FEATURES)).astype("float32")
    y = x @ rng.normal(size=(FEATURES, 1)) + 0.1 * rng.normal(size=(N, 1))
    return x, ((y - y.mean()) / y.std()).astype("float32")


def run(control):
    """(model, x, y, epochs) of a control, compiled."""
    keras.utils.set_random_seed(0)
    x, y = task()
    epochs, loss = 1, "sparse_categorical_crossentropy"
    if control == "a deep ReLU stack, He initialised":
        model, optimizer = deep("relu", init="he_normal"), "adam"
    elif control == "a deep tanh stack under Adam":
        model, optimizer = deep("tanh"), "adam"
    elif control == "a deep sigmoid stack under Adam":
        model, optimizer = deep("sigmoid", depth=4), keras.optimizers.Adam(0.003)
    elif control == "SGD at a high rate, clipped":
        model = deep("relu", depth=2, init="he_normal")
        optimizer = keras.optimizers.SGD(0.5, clipnorm=1.0)
    elif control == "a converged model":
        model, optimizer, epochs = deep("relu", depth=2), keras.optimizers.Adam(0.01), 3
    elif control == "a ReLU CNN":
        (x, y), model, optimizer = images(), cnn(), "adam"
    elif control == "sparse bag-of-words inputs":
        (x, y), optimizer = bag_of_words(), "adam"
        model = keras.Sequential(
            [keras.Input((200,)), layers.Dense(32, "relu"), layers.Dense(K, "softmax")]
        )
    else:  # "a standardised regression under SGD"
        (x, y), optimizer, loss = regression(), keras.optimizers.SGD(0.01), "mse"
        model = keras.Sequential(
            [
                keras.Input((FEATURES,)),
                layers.Dense(32, "relu"),
                layers.Dense(32, "relu"),
                layers.Dense(1),
            ]
        )
    model.compile(optimizer, loss)
    return model, x, y, epochs


CONTROLS = [
    "a deep ReLU stack, He initialised",
    "a deep tanh stack under Adam",
    "a deep sigmoid stack under Adam",
    "SGD at a high rate, clipped",
    "a converged model",
    "a ReLU CNN",
    "sparse bag-of-words inputs",
    "a standardised regression under SGD",
]


@pytest.mark.parametrize("control", CONTROLS)
def test_a_healthy_control_is_quiet_with_its_internals_measured(control):
    model, x, y, epochs = run(control)
    options = {"internals": True}
    cb = watched_fit(model, x, y, batch_size=BATCH, epochs=epochs, options=options)
    history = cb.history[cb.history["phase"] == "train"]
    assert len(history) == epochs * N // BATCH
    grads = [c for c in history.columns if c.startswith("grad:")]
    assert len(grads) >= 2 and np.isfinite(history[grads].to_numpy()).all()
    assert (history[grads].to_numpy() > 0).any(axis=0).all()
    dead = [c for c in history.columns if c.startswith("dead:")]
    if "tanh" not in control and "sigmoid" not in control:
        assert dead and np.isfinite(history[dead].to_numpy()).all()
    assert loud(cb.report) == [], cb.report
