"""Threads whose cause is the compile configuration: one unit, one class."""

from __future__ import annotations

import keras

from tests.realworld.threads import Thread, rng, thread


@thread
def keras_17029_categorical_on_one_unit():
    """keras-team/keras#17029, "Raise an error when use categorical_crossentropy
    for binary classification".

    Cause (haifeng-jin, Keras team): categorical cross-entropy on a binary
    classifier "does not raise any error, but have all the losses equal to 0
    during training"; "the shape of `y_true` and `y_pred` are all (None, 1)".

    Rebuilt: a 20-feature binary classifier ending in Dense(1, sigmoid),
    compiled with categorical_crossentropy, 0/1 labels of shape (N, 1).
    """
    r = rng(17029)
    x = r.normal(size=(128, 20)).astype("float32")
    y = (x[:, :1] + 0.3 * r.normal(size=(128, 1)) > 0).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    return Thread(
        name="keras_17029_categorical_on_one_unit",
        url="https://github.com/keras-team/keras/issues/17029",
        symptom="all the losses equal to 0 during training",
        cause="categorical_crossentropy used for binary classification on a "
        "(None, 1) output",
        expected="SINGLE_UNIT_CATEGORICAL",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 2},
        diagnose_args=(x, y),
    )


@thread
def so_44151760_sparse_on_one_softmax_unit():
    """Stack Overflow 44151760, "Received a label value of 1 which is outside
    the valid range of [0, 1)".

    Cause (accepted answer): the last layer is Dense(1, activation='softmax')
    under sparse_categorical_crossentropy, so there is one class, id 0, and
    the label 1 is out of range; "a softmax over one unit is always 1".

    Rebuilt: a small classifier on 8 features with 0/1 integer labels; fit
    stops on the first batch, as in the thread.
    """
    r = rng(44151760)
    x = r.normal(size=(96, 8)).astype("float32")
    y = r.integers(0, 2, 96)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return Thread(
        name="so_44151760_sparse_on_one_softmax_unit",
        url="https://stackoverflow.com/questions/44151760/received-a-label-value-of-1"
        "-which-is-outside-the-valid-range-of-0-1-python",
        symptom="InvalidArgumentError: Received a label value of 1 which is "
        "outside the valid range of [0, 1)",
        cause="Dense(1, activation='softmax'): one output unit is one class",
        expected="SINGLE_UNIT_SOFTMAX",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 1},
        diagnose_args=(x, y),
        crashes=True,
    )


@thread
def keras_softmax_one_unit_always_one():
    """keras-team/keras#500, "Neural Network only outputting 1 regardless of
    the input".

    Cause (fchollet): "Softmax on an array of size 1 is always 1, by
    definition of softmax."

    Rebuilt: the thread's code (a pastebin) is not visible; from its text, a
    next-character predictor: windows of 10 encoded letters and digits (36
    symbols, code / 35 in [0, 1]) of shape (N, 10, 1) -> LSTM(16) (shrunk) ->
    Dense(1, activation='softmax'), regressing the next character's code
    with mean squared error, RMSprop (assumed).

    Keras 3 here: predict() returns exactly 1.0 for every input; the loss
    does not move (0.3278 in each of 3 epochs).
    """
    r = rng(500)
    text = r.integers(0, 36, 10 * 192 + 1)
    codes = (text / 35.0).astype("float32")
    windows = codes[: 10 * 192].reshape(192, 10)
    x = windows[..., None]
    y = codes[10 : 10 * 192 + 1 : 10][:, None]  # the character after each window
    model = keras.Sequential(
        [
            keras.Input((10, 1)),
            keras.layers.LSTM(16),
            keras.layers.Dense(1, activation="softmax"),
        ]
    )
    model.compile("rmsprop", "mse")
    return Thread(
        name="keras_softmax_one_unit_always_one",
        url="https://github.com/keras-team/keras/issues/500",
        symptom="every prediction is exactly 1.0 for every input, for hundreds of "
        "epochs",
        cause="Softmax on an array of size 1 is always 1, by definition of softmax",
        expected="SINGLE_UNIT_SOFTMAX",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 3},
        diagnose_args=(x, y),
    )


@thread
def keras3_softmax_one_neuron_feature_request():
    """keras-team/keras#18909, "[Previous Feature Request] Throw an error if
    `softmax` is used incorrectly".

    Cause (Frightera, the reporter; accepted by the Keras team): "It's
    actually about the applied axis of the softmax": a model ending in
    `keras.layers.Dense(1, activation="softmax")` "will only produce a vector
    of 1s (ones)".

    Rebuilt: the issue's Keras 3 example as given, x = np.random.randn(100,
    1) into Dense(1, activation="softmax"); binary labels (x > 0) and
    binary_crossentropy, Adam, as the notes describe its use.

    Keras 3 here: np.allclose(model.predict(x), 1.0) is True before and
    after fitting; the loss creeps down (0.5708, 0.5694, 0.5680:
    TensorFlow's binary cross-entropy reads the logit behind the softmax)
    while accuracy stays at 0.45, the share of 1 labels.
    """
    r = rng(18909)
    x = r.normal(size=(100, 1)).astype("float32")
    y = (x > 0).astype("float32")
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, activation="softmax")]
    )
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    return Thread(
        name="keras3_softmax_one_neuron_feature_request",
        url="https://github.com/keras-team/keras/issues/18909",
        symptom="Dense(1, activation='softmax') will only produce a vector of 1s "
        "(np.allclose(model.predict(x), 1.0) is True)",
        cause="softmax over an axis of size 1 is identically 1",
        expected="SINGLE_UNIT_SOFTMAX",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 3},
        diagnose_args=(x, y),
    )


@thread
def cv_cnn_dense1_softmax_cce():
    """Cross Validated 481881, "Convolutional neural network fails even when
    given answer".

    Cause (answer): "Your last layer is a fully connected layer with 1 output
    unit and softmax activation", and a softmax over D = 1 values is always
    1; under categorical_crossentropy the loss is then identically 0.

    Rebuilt: the asker's model shrunk (Conv2D(4, 3) and Conv2D(8, 3) instead
    of 30 and 64 filters) on inputs of shape (99, 25, 2) with the boolean
    target copied into the second channel, as the asker did; 0/1 labels of
    shape (N, 1); Dense(1, activation='softmax'), adam,
    categorical_crossentropy, one epoch.

    Keras 3 here: loss exactly 0 on every batch; predict() is 1.0 for every
    input ("true for everything").
    """
    r = rng(481881)
    y = r.integers(0, 2, (128, 1)).astype("float32")
    x = r.normal(size=(128, 99, 25, 2)).astype("float32")
    x[..., 1] = y[:, :, None]  # "given answer": the target is in the input
    model = keras.Sequential(
        [
            keras.Input((99, 25, 2)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(1, activation="softmax"),
        ]
    )
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    return Thread(
        name="cv_cnn_dense1_softmax_cce",
        url="https://stats.stackexchange.com/questions/481881/convolutional-neural-"
        "network-fails-even-when-given-answer?noredirect=1",
        symptom="the CNN predicts true for everything regardless of input, even "
        "with the target copied into the input",
        cause="the last layer is Dense(1, activation='softmax'): one unit, so the "
        "output is always 1 and categorical cross-entropy is 0",
        expected="SINGLE_UNIT_CATEGORICAL",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 1},
        diagnose_args=(x, y),
    )
