"""Threads whose loss turned NaN or Inf, each from a different first source.

lossguard's NONFINITE_LOSS names the first non-finite tensor it finds: the
inputs (NaN in the data), the predictions (the model diverged), or, when
every tensor is finite, the loss's own arithmetic (log 0 in a hand-written
loss).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tests.realworld.threads import Thread, rng, thread


@thread
def keras_bce_epsilon_too_small_nan():
    """keras-team/keras#377, "binary cross-entropy can return nan because the
    epsilon is too small".

    Cause (melonista, fixed by fchollet): the clip was `T.clip(y, 1e-9,
    1 - 1e-9)`; in float32 `1 - 1e-9` rounds to 1.0, so "the '1' doesn't get
    clipped and therefore the binary cross entropy function returns nan"
    (log(1 - 1) = log 0).

    Rebuilt: the loss of that era as a hand-written function (clip to
    [1e-9, 1 - 1e-9], then -(y log p + (1 - y) log(1 - p))) on a small
    sigmoid classifier whose 16 inputs are unscaled counts (0..20), so its
    sigmoid saturates to exactly 1.0 for some samples; 0/1 labels. The
    thread showed no model or data; these are assumed.

    Keras 3 here: 68% of the initial predictions are exactly 1.0 and the
    loss is nan from the first batch (epoch losses nan, nan); the same model
    under Keras' own binary_crossentropy (ε = 1e-7) gives 9.22, 8.11.
    """
    r = rng(377)
    x = r.uniform(0, 20, size=(128, 16)).astype("float32")
    y = (x[:, :8].mean(1, keepdims=True) > x[:, 8:].mean(1, keepdims=True)).astype(
        "float32"
    )

    def binary_crossentropy_keras0(y_true, y_pred):
        p = ops.clip(y_pred, 1e-9, 1 - 1e-9)  # 1 - 1e-9 == 1.0 in float32
        terms = y_true * ops.log(p) + (1 - y_true) * ops.log(1 - p)
        return -ops.mean(terms, axis=-1)

    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile("adam", binary_crossentropy_keras0, metrics=["accuracy"])
    return Thread(
        name="keras_bce_epsilon_too_small_nan",
        url="https://github.com/keras-team/keras/issues/377",
        symptom="I am getting nans when fitting the model with binary "
        "cross-entropy as loss function",
        cause="in float32 1 - 1e-9 rounds to 1.0, so a saturated sigmoid output "
        "of 1 is not clipped and log(1 - p) = log 0",
        expected="NONFINITE_LOSS",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 2},
        diagnose_args=(x, y),
    )


@thread
def keras_gat_citeseer_nan_features():
    """danielegrattarola/keras-gat#14, "citeseer dataset loss is nan".

    Cause (CEfanmin; danielegrattarola: "it's probably related to the
    function used to load the data"): NaN in the loaded feature matrix; "after
    function load_data(), maybe should add: X[np.isnan(X)] = 0. then it
    works!"

    Rebuilt: citeseer's row-normalised bag-of-words features (here 256 nodes
    x 300 binary words instead of 3327 x 3703, six classes) where a few nodes
    have no word at all, so the row normalisation divides 0 by 0. The graph
    attention layers are replaced by a plain Dense classifier (Dense(16,
    elu) -> Dropout -> Dense(6, softmax)): NaN features poison any layer, so
    the graph is not needed for the fault. Categorical cross-entropy, Adam(5e-3)
    and full-batch training as in keras-gat; its train-mask sample weights
    are left out.

    Keras 3 here: loss nan from the first (full) batch; epoch losses nan,
    nan.
    """
    r = rng(14)
    n, words, classes = 256, 300, 6
    labels = r.integers(0, classes, n)
    topics = r.uniform(size=(classes, words)) < 0.08
    bag = (r.uniform(size=(n, words)) < 0.02) | (
        topics[labels] & (r.uniform(size=(n, words)) < 0.5)
    )
    bag[r.choice(n, 4, replace=False)] = False  # nodes without any word
    bag = bag.astype("float32")
    with np.errstate(invalid="ignore"):
        x = bag / bag.sum(axis=1, keepdims=True)  # 0 / 0 = NaN on empty rows
    y = keras.utils.to_categorical(labels, classes)
    model = keras.Sequential(
        [
            keras.Input((words,)),
            keras.layers.Dense(16, activation="elu"),
            keras.layers.Dropout(0.6),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.Adam(5e-3), "categorical_crossentropy", metrics=["acc"]
    )
    return Thread(
        name="keras_gat_citeseer_nan_features",
        url="https://github.com/danielegrattarola/keras-gat/issues/14",
        symptom="when i use citeseer dataset, the training loss is nan",
        cause="NaN values in the loaded feature matrix (X[np.isnan(X)] = 0 fixes it)",
        expected="NONFINITE_LOSS",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": n, "epochs": 2},
        diagnose_args=(x, y),
    )


@thread
def keras_linear_regression_nan_lr():
    """keras-team/keras#3040, "Simple Linear Regression Nan's after a few
    iterations."

    Cause (bcarpenter-pub, the reporter): "realized my learning rate was too
    high."

    Rebuilt: the thread's data and model as given: x = 1.0 * arange(200)
    (unscaled, 0..199), y = 2x, Dense(1) on one input, SGD at 1e-3, mean
    squared error, batch_size=1, one epoch. Keras 3's SGD has no `decay`
    argument; the thread's decay=1e-6 changes the step by under 0.02% over
    200 steps and is dropped.

    Keras 3 here: the running loss grows 1e5, 2e8, 5e11, ... (SGD's update
    on x = 199 multiplies the error by about 1 - 2e-3 * 199**2 = -78), is
    inf at step 17 and nan after; the epoch's loss is nan. MSE squares the
    error, so the loss overflows (a prediction near 2e19) before the
    predictions do.

    Scored EXPLODING_GRADIENTS since the callback reads the gradients (with
    `internals=True`, which the rebuild passes; by default NONFINITE_LOSS,
    whose fix then says so): the
    weight's gradient norm grows about 78-fold a step before the loss
    overflows, a learning rate too high for the inputs' scale, the thread's
    cause; NONFINITE_LOSS follows from it.
    """
    x = 1.0 * np.arange(200, dtype="float32")[:, None]
    y = 2.0 * x
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(learning_rate=1e-3), "mean_squared_error")
    return Thread(
        name="keras_linear_regression_nan_lr",
        url="https://github.com/keras-team/keras/issues/3040",
        symptom="when training even a very simple net on simple data, the "
        "weights go to Nan",
        cause="realized my learning rate was too high",
        expected="EXPLODING_GRADIENTS",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 1, "epochs": 1},
        diagnose_args=(x, y),
        seen_before_training=False,
        callback_kwargs={"internals": True},
    )


@thread
def so_custom_bce_log0_nan():
    """Stack Overflow 48951109 (mirror it1352.com/1526058), "Keras Custom
    Binary Cross Entropy Loss Function. Get NaN as output for loss".

    Cause (accepted answer, eliinx): "A naive implementation of binary cross
    entropy will suffer numerical problems on 0 output or larger than one
    output, eg log(0) -> NaN."

    Rebuilt: the asker's loss, `-(y log p + (1 - y) log(1 - p))` averaged,
    with no clip, on a Dense(64, relu) -> Dense(1, sigmoid) classifier (the
    thread gave no architecture) with 0/1 labels. The data are separable and
    Adam's learning rate is 0.05 so that the sigmoid saturates to exactly 0
    or 1 after a few steps, as in the thread ("after few iterations").

    Keras 3 here: epoch 1 is finite (loss 0.459, accuracy 0.78); the loss is
    nan from the 12th step (epoch 2's last batch) on: epoch losses 0.459,
    nan, nan.
    """
    r = rng(48951109)
    x = r.normal(size=(192, 10)).astype("float32")
    y = (x[:, :3].sum(axis=1, keepdims=True) > 0).astype("float32")

    def my_custom_loss(y_true, y_pred):
        t_loss = -1 * (y_true * ops.log(y_pred) + (1 - y_true) * ops.log(1 - y_pred))
        return ops.mean(t_loss, axis=-1)

    model = keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.05), my_custom_loss, metrics=["accuracy"])
    return Thread(
        name="so_custom_bce_log0_nan",
        url="https://www.it1352.com/1526058.html",
        symptom="after few iterations, I get NaN as output for loss function",
        cause="a naive implementation of binary cross entropy will suffer "
        "numerical problems on 0 output, eg log(0) -> NaN",
        expected="NONFINITE_LOSS",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 3},
        diagnose_args=(x, y),
        seen_before_training=False,
    )
