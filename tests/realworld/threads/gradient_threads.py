"""Threads whose loss blew up or did not move because of what the gradients
did inside the model.

An SGD step that overshoots grows the error, and with it the next gradient,
geometrically until the loss overflows (EXPLODING_GRADIENTS, read from the
per-layer gradient norms `grad:<layer>` in `fit`); a stack of sigmoids
multiplies the first layers' gradients down until they stop learning
(VANISHING_GRADIENTS, `fit`); a ReLU layer whose units are all 0 passes no
gradient at all (DEAD_UNITS, `dead:<layer>`, in `fit` and `diagnose`); a
network that collapsed to one prediction sits at ln K (LOSS_AT_UNIFORM).
"""

from __future__ import annotations

import keras
import numpy as np

from tests.realworld.threads import Thread, rng, thread


@thread
def cv_deep_linear_unscaled_target_diverges():
    """stats.stackexchange 418955 (mirror wiki.hoelee.com), "Why is deep
    neural net with linear activation diverges?"

    Symptom: two linear `Dense(1)` layers fitted with `compile('sgd',
    loss='mse')` to y = x**2 + 3 on x = 0..99 (standardised) do not learn;
    "learning occurs only with very small learning rate".

    Cause (the asker's update): "It seems like this particular behavior is
    caused by not scaled target variable." The targets run 3..9804 while the
    input is standardised.

    Rebuilt: the thread's own code (x = arange(100), standardised, y = x**2 +
    3, Dense(1) -> Dense(1) without activation, SGD at Keras' default 0.01,
    mean squared error, batch_size 32 by default); 5 epochs of 4 steps
    instead of 300 (the loss has left float32 by the fifth step).

    Keras 3 here: batch losses 1.7e7, 5.1e6, 1.8e13, 1.8e33, then inf (the
    second epoch's first batch) and nan; the gradient norms (grad:dense,
    grad:dense_1) grow 1.2e4 and 6.5e3, 7.6e4 and 4.7e5, 4.1e10 and 7.6e9,
    then NaN. The same model on y standardised converges (loss 0.25 after
    one epoch, 0.065 after 10: the best a line does on x**2).
    """
    x = np.arange(100, dtype="float32")[:, None]
    y = x**2 + 3
    x_normed = (x - x.mean()) / x.std()
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1), keras.layers.Dense(1)]
    )
    model.compile("sgd", loss="mse")
    return Thread(
        name="cv_deep_linear_unscaled_target_diverges",
        url="https://wiki.hoelee.com/content/stats.stackexchange.com_en_all_2022-05/"
        "questions/418955/why-is-deep-neural-net-with-linear-activation-diverges",
        symptom="a two-layer linear net cannot learn y = x**2 + 3; learning "
        "occurs only with very small learning rate",
        cause="this particular behavior is caused by not scaled target variable",
        expected="EXPLODING_GRADIENTS",
        model=model,
        x=x_normed,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 5},
        diagnose_args=(x_normed, y),
        seen_before_training=False,
        callback_kwargs={"internals": True},
    )


@thread
def dlkerastf_ames_sale_price_mse_nan():
    """rstudio-conf-2020/dl-keras-tf#9, "train/valid loss = NAN when loss =
    "mean_squared_error" due to exploding values".

    Symptom: the Ames mini-project with `optimizer_sgd(lr = 0.1)`, `loss =
    "mean_squared_error"`, `batch_size = 16`: "loss: nan - mae: nan" from the
    first epoch.

    Cause (OmaymaS, the workshop's): "This is probably related to the range
    of the predicted value (sales price) which reaches ~ 755000. When the
    error gets squared, the sum explodes!" (the exercise asked for `msle`).

    Rebuilt: the workshop's recipe standardises the numeric features and
    one-hot encodes the categorical ones (188 columns) but leaves Sale_Price
    in dollars; here 512 homes with 40 standardised numeric columns and 148
    one-hot columns (37 features of 4 levels), and a log-normal sale price
    around $180,000 (about $35,000 to $750,000). The model as in the
    exercise, Dense(128, relu) -> Dense(1); SGD(0.1),
    mean squared error, batch_size 16; no validation split. One epoch.

    Keras 3 here: batch losses 3.0e10, 1.7e20, then inf (steps 2-3) and nan
    from step 4; gradient norms grad:dense 1.0e6 then 8.7e15, grad:dense_1
    1.3e6 then 4.5e15, NaN after. The giant second step also kills the ReLU
    layer: dead:dense is 0.8%, 40%, 96%, 99%, then 100% on every batch (NaN
    outputs read as 0 once the weights are NaN).
    """
    r = rng(9)
    n, numeric, groups, levels = 512, 40, 37, 4
    num = r.normal(size=(n, numeric))
    cats = r.integers(0, levels, size=(n, groups))
    onehot = np.eye(levels)[cats].reshape(n, groups * levels)
    x = np.concatenate([num, onehot], axis=1).astype("float32")
    signal = num[:, :8] @ r.normal(0, 0.12, 8) + onehot[:, :16] @ r.normal(0, 0.1, 16)
    y = (np.exp(12.1 + signal + 0.1 * r.normal(size=n))).astype("float32")[:, None]
    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(
        keras.optimizers.SGD(learning_rate=0.1),
        loss="mean_squared_error",
        metrics=["mae"],
    )
    return Thread(
        name="dlkerastf_ames_sale_price_mse_nan",
        url="https://github.com/rstudio-conf-2020/dl-keras-tf/issues/9",
        symptom="loss: nan - mae: nan - val_loss: nan - val_mae: nan",
        cause="the range of the predicted value (sales price) which reaches "
        "~ 755000. When the error gets squared, the sum explodes!",
        expected="EXPLODING_GRADIENTS",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 16, "epochs": 1},
        diagnose_args=(x, y),
        seen_before_training=False,
        callback_kwargs={"internals": True},
    )


@thread
def ai_se_four_sigmoid_layers_not_learning():
    """ai.stackexchange 16557, "What could be the problem when a neural
    network with four hidden layers with the sigmoid activation function is
    not learning?"

    Symptom: binary vectors mapped to real-valued outputs, "four hidden
    layers with 500 neurons in each layer, and sigmoidal activation
    functions in each layer": "The network appears to be unable to learn,
    and has high loss even on the training data."

    Cause (John Doucette's answer): "you are training a very deep neural
    network with sigmoidal activation functions at every layer ... by the
    4th layer your signal is at most 0.25^4 = 1/256 the size that it was
    at the start of the network ... This problem is known as the vanishing
    gradient."

    Rebuilt: the question shows no code. 64-bit binary inputs, a real-valued
    target (a sum of bit products, standardised), four Dense(500, sigmoid)
    layers and a linear Dense(1), Keras' default Glorot initialisation;
    plain SGD at 0.01 and mean squared error are assumed (TensorFlow's
    GradientDescentOptimizer of the time). 1024 samples, batch_size 32,
    12 epochs = 384 steps.

    Keras 3 here: the first steps overshoot (batch loss 1.3 up to 261 at
    step 6), then the output settles on the targets' mean: epoch losses
    17.8, 1.0022, 1.0022, ... 1.0022 (the targets' variance is 1). Over the
    last 200 steps the median gradient norms, first layer to output, are
    1.6e-3, 8.6e-3, 3.4e-2, 0.18 and 0.85: the first layer's is 1.9e-3 of
    the output layer's (2.7 orders of magnitude below), while the loss's
    median is 0.958 over the first 50 of those steps and 0.961 over the
    last 50.
    """
    r = rng(16557)
    x = (r.uniform(size=(1024, 64)) < 0.5).astype("float32")
    w = r.normal(size=(32,))
    y = (x[:, :32] * x[:, 32:]) @ w + x[:, :16].sum(axis=1)
    y = ((y - y.mean()) / y.std()).astype("float32")[:, None]
    model = keras.Sequential(
        [keras.Input((64,))]
        + [keras.layers.Dense(500, activation="sigmoid") for _ in range(4)]
        + [keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.SGD(learning_rate=0.01), loss="mse")
    return Thread(
        name="ai_se_four_sigmoid_layers_not_learning",
        url="https://ai.stackexchange.com/questions/16557/what-could-be-the-problem-"
        "when-a-neural-network-with-four-hidden-layers-with-the",
        symptom="the network appears to be unable to learn, and has high loss "
        "even on the training data",
        cause="a very deep network with sigmoid activations at every layer: by "
        "the 4th layer the signal is at most 0.25^4 = 1/256 ... the vanishing "
        "gradient",
        expected="VANISHING_GRADIENTS",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 12},
        diagnose_args=(x, y),
        seen_before_training=False,
        callback_kwargs={"internals": True},
    )


@thread
def proteomicsml_ccs_lstm_relu_output_dead():
    """ProteomicsML/ProteomicsML#203 (pull request), "Do not use ReLU
    activation for the final regression layer".

    Symptom: the tutorial's LSTM CCS predictor (tutorials/ionmobility/
    _meier-tims-ccs.ipynb) "returning constantly 0 for all peptides in
    validation set".

    Cause (gritukan, the PR's author): "The reason seems to be using ReLU
    activation at the final linear layer. In case of unlucky initialization
    the (pre-ReLU) output of the final linear layer can be always or almost
    always negative vanishing the gradient" (the PR replaces it by a linear
    output).

    Rebuilt: the notebook's model for a small data set (num_lstm = 12):
    one-hot peptides (24 amino-acid rows x 60 positions, read by
    Bidirectional(LSTM(12, return_sequences=True)) -> Bidirectional(LSTM(12)))
    and the charge (2-4) through Dense(5, relu), concatenated into Dense(64,
    relu) -> Dense(32, relu) -> Dense(1, relu); Adam, mean squared error,
    batch_size 128. 512 synthetic peptides of 7-30 residues, CCS in Å²
    (about 300-800, growing with length and charge, as the data's 275-1118).
    The final layer's initialiser is seeded with one unlucky draw (the PR:
    "in case of unlucky initialization"); half of the twelve seeds tried
    give a dead output. 10 epochs of 4 steps.

    Keras 3 here: every prediction is 0; the loss is 259446.4 (the mean of
    CCS squared) in every epoch, the same four batch losses repeating;
    dead:<output> is 1.0 on every batch (the hidden ReLU layers 20%, 45%
    and 34%) and every grad:<layer> column is exactly 0: nothing trains.
    """
    r = rng(203)
    n, aas, positions = 512, 24, 60
    lengths = r.integers(7, 31, n)
    charge = r.integers(2, 5, n).astype("float32")[:, None]
    seq = np.zeros((n, aas, positions), dtype="float32")
    for i, length in enumerate(lengths):
        seq[i, r.integers(0, 20, length), np.arange(length)] = 1.0
    ccs = 180 + 14 * lengths + 60 * (charge[:, 0] - 2) + r.normal(0, 15, n)
    y = ccs.astype("float32")[:, None]
    layers = keras.layers
    input_a = keras.Input((None, positions))
    a = layers.Bidirectional(layers.LSTM(12, return_sequences=True))(input_a)
    a = layers.Bidirectional(layers.LSTM(12))(a)
    input_b = keras.Input((1,))
    b = layers.Dense(5, activation="relu")(input_b)
    c = layers.concatenate([a, b], axis=-1)
    c = layers.Dense(64, activation="relu")(c)
    c = layers.Dense(32, activation="relu")(c)
    c = layers.Dense(
        1,
        activation="relu",
        kernel_initializer=keras.initializers.GlorotUniform(seed=0),  # unlucky
    )(c)
    model = keras.Model([input_a, input_b], c)
    model.compile(optimizer="adam", loss="mean_squared_error")
    x = (seq, charge)
    return Thread(
        name="proteomicsml_ccs_lstm_relu_output_dead",
        url="https://github.com/ProteomicsML/ProteomicsML/pull/203",
        symptom="LSTM network returning constantly 0 for all peptides in "
        "validation set",
        cause="ReLU activation at the final linear layer: with unlucky "
        "initialization its pre-ReLU output is always negative, vanishing "
        "the gradient",
        expected="DEAD_UNITS",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 128, "epochs": 10},
        diagnose_args=(x, y),
        callback_kwargs={"internals": True},
    )


@thread
def keras_4652_cifar10_lr_loss_not_going_down():
    """keras-team/keras#4652 (pull request), "The loss do not go down with
    original learning rate".

    Symptom (patyork, running examples/cifar10_cnn.py as shipped): "loss:
    2.3037 - acc: 0.0978 ... loss: 2.3034 - acc: 0.0990" over the first 35
    epochs, at ln 10 = 2.3026.

    Cause (wangdelp, the PR): the example's SGD learning rate 0.01 is too
    high; "reduced the learning rate to 0.001: 100 epoch val_loss: 0.46,
    val_acc: 0.84".

    Rebuilt: as keras_cifar10_sgd_stuck_at_ln10 (telltale_threads: the
    example shrunk, SGD(0.01, momentum 0.9, Nesterov), batch_size 32) on
    another draw of 6400 CIFAR-like images; two epochs = 400 steps.

    Keras 3 here: epoch losses 2.3048, 2.3033; batch losses stay within
    2.278-2.341 of ln 10 from step 141 on, each batch's predictions differing
    from row to row by at most 0.008. By the last batches the Dense(64) ReLU
    layer is 92% dead (dead:dense 0.92) and the convolutions' gradient norms
    are 1e-3 or below (0 on some steps): lossguard names DEAD_UNITS (90.6%
    dead over the last 8 batches) first and LOSS_AT_UNIFORM under it.

    Scored DEAD_UNITS, read with `internals=True`: the collapse's measured
    mechanism (too large SGD steps push the ReLU units below 0 for every
    input), whose first fix, a lower learning rate, is the thread's; the
    loss at ln 10 follows from it (with `predictions="all"` LOSS_AT_UNIFORM
    is reported under it).
    """
    # Imported here: importing telltale_threads at the top would register its
    # threads before this module's siblings and reorder the benchmark.
    from tests.realworld.threads.telltale_threads import (
        _cifar10_example,
        _cifar_like,
    )

    x, y = _cifar_like(rng(4652), 6400)
    model = _cifar10_example()
    return Thread(
        name="keras_4652_cifar10_lr_loss_not_going_down",
        url="https://github.com/keras-team/keras/pull/4652",
        symptom="loss: 2.3037 - acc: 0.0978 ... loss: 2.3034 - acc: 0.0990 "
        "(the example as shipped)",
        cause="the original learning rate: reduced the learning rate to 0.001 "
        "(val_acc 0.84 after 100 epochs)",
        expected="DEAD_UNITS",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 2},
        diagnose_args=(x, y),
        seen_before_training=False,
        callback_kwargs={"internals": True},
    )


@thread
def cv_keras_simple_linear_regression_nan():
    """stats.stackexchange 284189, "Simple Linear Regression in Keras".

    Symptom: a single linear `Dense(1)` fitted with `keras.optimizers.SGD()`
    and `loss='mse'`, `batch_size=1`, `shuffle=False`, to predict one column
    of a small data set (television advertising) from another: "Running the
    model like that gives me nan loss on every epoch"; only
    `SGD(lr=0.0000001)` gives a decent model.

    Cause (the accepted answer): "This is probably because there was no
    normalization done. Neural network are very sensitive to non-normalized
    data"; standardising x and y with `StandardScaler` fixes it.

    Rebuilt: the thread's model and fit arguments with the data of the
    Advertising set it plots: 200 TV budgets in 0.7..296.4 and sales
    7.0 + 0.0475 * TV + noise (about 1.6..27), unscaled; SGD at Keras'
    default 0.01; one epoch of 200 steps instead of 30.

    Keras 3 here: batch losses 1.0e3, 4.5e7, 2.1e11, 9.0e15, ... 7.7e36 at
    step 8, inf at step 9, nan after; grad:dense 7.8e3, 1.2e6, 3.6e7,
    5.2e10, ... inf at step 8 (each step multiplies the error by about
    1 - 2 * 0.01 * TV**2).
    """
    r = rng(284189)
    tv = r.uniform(0.7, 296.4, 200).astype("float32")[:, None]
    sales = (7.03 + 0.0475 * tv + r.normal(0, 3.2, (200, 1))).astype("float32")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(), loss="mse", metrics=["mse"])
    return Thread(
        name="cv_keras_simple_linear_regression_nan",
        url="https://stats.stackexchange.com/questions/284189/simple-linear-"
        "regression-in-keras",
        symptom="Running the model like that gives me nan loss on every epoch",
        cause="This is probably because there was no normalization done. Neural "
        "network are very sensitive to non-normalized data",
        expected="EXPLODING_GRADIENTS",
        model=model,
        x=tv,
        y=sales,
        fit_kwargs={"batch_size": 1, "epochs": 1, "shuffle": False},
        diagnose_args=(tv, sales),
        seen_before_training=False,
        callback_kwargs={"internals": True},
    )
