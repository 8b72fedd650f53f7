"""Threads whose cause is outside lossguard's catalogue (scope="out").

The loss in each is computed correctly from sound labels and predictions;
what went wrong is the learning-rate schedule, what a
metric measures, dropout, or the sign of a custom loss. lossguard must
report no error and no warning on them.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tests.realworld.threads import Thread, rng, thread


def _prototypes(r, n, classes, shape, high):
    """n samples of `classes` noisy prototype images with values in [0, high]."""
    labels = r.integers(0, classes, n)
    protos = (r.uniform(size=(classes, *shape)) < 0.2) * r.uniform(
        0.5, 1, (classes, *shape)
    )
    noise = r.uniform(0, 0.3, size=(n, *shape))
    x = (protos[labels] * 0.8 + noise).clip(0, 1) * high
    return x.astype("float32"), labels


@thread
def tf_keras_loss_stuck_scheduler_misuse():
    """tensorflow/tensorflow#48308, "Keras loss is stuck at the very same value
    during training after the first epoch".

    Cause (haimat, the reporter): "Sorry, I found the issue. Problem was the
    scheduler, it seems I have miss-used it."

    Rebuilt: the thread shows neither model nor schedule. A small classifier
    (20 features -> Dense(16, relu) -> Dense(3, softmax), sparse categorical
    cross-entropy, Adam) trained with a `LearningRateScheduler` whose
    function returns 0 from the second epoch on (assumed misuse: the
    function returns a value, not the learning rate it was given).

    Keras 3 here: loss 1.2943 in epoch 1, then 1.2656 and 1.2656
    (learning_rate 0.001, 0.0, 0.0); accuracy 0.3906 in every epoch.
    """
    r = rng(48308)
    x = r.normal(size=(192, 20)).astype("float32")
    y = (x[:, :3] + 0.5 * r.normal(size=(192, 3))).argmax(axis=1)
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])

    def schedule(epoch, lr):
        return lr if epoch == 0 else 0.0

    return Thread(
        name="tf_keras_loss_stuck_scheduler_misuse",
        url="https://github.com/tensorflow/tensorflow/issues/48308",
        symptom="the loss is stuck at the very same value during training after "
        "the first epoch",
        cause="Problem was the scheduler, it seems I have miss-used it",
        expected=None,
        scope="out",
        model=model,
        x=x,
        y=y,
        fit_kwargs={
            "batch_size": 32,
            "epochs": 3,
            "callbacks": [keras.callbacks.LearningRateScheduler(schedule)],
        },
        diagnose_args=(x, y),
    )


@thread
def so_val_better_than_train_dropout():
    """Stack Overflow 43979449, "Higher validation accuracy, than training
    accurracy using Tensorflow and Keras".

    Cause (accepted answer): "This happens when you use Dropout, since the
    behaviour when training and testing are different. When training, a
    percentage of the features are set to zero (50% in your case since you
    are using Dropout(0.5)). When testing, all features are used".

    Rebuilt: 299 binary input features and 3 one-hot classes as in the
    thread; Dense(32, relu, normal init, l1_l2(0.001)) (the thread loops
    over 250..7 units) -> Dropout(0.5) -> Dense(3); categorical
    cross-entropy, adamax, batch_size 10, shuffle=False; 180 training and
    76 validation samples passed as validation_data (the thread used
    validation_split=0.3 on the same kind of split). Changed: the thread's
    output is Dense(3, activation='sigmoid') under categorical cross-entropy,
    a second fault (PREDICTIONS_NOT_PROBABILITIES) that the thread never
    discusses; the rebuild uses softmax so that only the stated cause is
    left.

    Keras 3 here: val_loss 1.425, 1.389, 1.359 below loss 1.463, 1.403,
    1.368, and val_accuracy 0.39, 0.50, 0.58 above accuracy 0.27, 0.47, 0.54.
    With the thread's sigmoid head lossguard reports
    PREDICTIONS_NOT_PROBABILITIES (rows summing to 1.45..1.51).
    """
    r = rng(43979449)
    n, features = 256, 299
    labels = r.integers(0, 3, n)
    signal = r.uniform(size=(3, features)) < 0.1
    x = (r.uniform(size=(n, features)) < 0.08) | (
        signal[labels] & (r.uniform(size=(n, features)) < 0.3)
    )
    x = x.astype("float32")
    y = keras.utils.to_categorical(labels, 3)
    model = keras.Sequential(
        [
            keras.Input((features,)),
            keras.layers.Dense(
                32,
                kernel_initializer="normal",
                activation="relu",
                kernel_regularizer=keras.regularizers.L1L2(l1=0.001, l2=0.001),
            ),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(3, kernel_initializer="normal", activation="softmax"),
        ]
    )
    model.compile("adamax", "categorical_crossentropy", metrics=["accuracy"])
    return Thread(
        name="so_val_better_than_train_dropout",
        url="https://stackoverflow.com/questions/43979449/higher-validation-accuracy"
        "-than-training-accurracy-using-tensorflow-and-keras/43982656#43982656",
        symptom="our validation data is getting better accuracy and lower loss, "
        "than our training data",
        cause="Dropout behaves differently when training and testing: 50% of "
        "the features are set to zero in training, all are used in testing",
        expected=None,
        scope="out",
        model=model,
        x=x[:180],
        y=y[:180],
        fit_kwargs={
            "batch_size": 10,
            "epochs": 3,
            "shuffle": False,
            "validation_data": (x[180:], y[180:]),
        },
        diagnose_args=(x[:180], y[:180]),
    )


@thread
def so_bce_on_multiclass_inflated_accuracy():
    """Stack Overflow 41327601 (mirror devpeace.com), "Why is
    binary_crossentropy more accurate than categorical_crossentropy for
    multiclass classification in Keras?"

    Cause (accepted answer, desertnaut): "since you have selected binary
    cross entropy as your loss function and have not specified a particular
    accuracy metric, Keras (wrongly...) infers that you are interested in the
    binary_accuracy, and this is what it returns."

    Rebuilt: the thread's MNIST CNN shrunk (Conv2D(8, 5) -> MaxPool ->
    Conv2D(8, 3) -> MaxPool -> Dropout(0.3) -> Flatten -> Dense(32) ->
    Dropout(0.3) -> Dense(32) -> Dropout(0.3) -> Dense(10, softmax)) on 256
    synthetic 28x28x1 digits in [0, 1] with one-hot labels, loss
    binary_crossentropy, adamax. Changed: Keras 3 resolves
    metrics=['accuracy'] from the shapes (one-hot (N, 10) -> categorical
    accuracy), so the string no longer inflates; the metric Keras 2 chose is
    passed explicitly as BinaryAccuracy(name='accuracy'), next to
    CategoricalAccuracy for the true figure.

    Keras 3 here: 'accuracy' (binary) is 0.90 in every epoch, the share of
    zeros in a one-hot row, while categorical_accuracy is 0.08, 0.09, 0.10
    (metrics=['accuracy'] in Keras 3 reports the latter: 0.08, 0.09, 0.10).
    """
    r = rng(41327601)
    x, labels = _prototypes(r, 256, 10, (28, 28, 1), 1.0)
    y = keras.utils.to_categorical(labels, 10)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 5, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Dropout(0.3),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        "adamax",
        "binary_crossentropy",
        metrics=[
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.CategoricalAccuracy(name="categorical_accuracy"),
        ],
    )
    return Thread(
        name="so_bce_on_multiclass_inflated_accuracy",
        url="https://devpeace.com/machine-learning/41327601/why-is-binary-"
        "crossentropy-more-accurate-than-categorical-crossentropy-for-multi",
        symptom="binary_crossentropy consistently outperforms "
        "categorical_crossentropy significantly (evaluate 0.99794, argmax "
        "accuracy 0.98999)",
        cause="with binary cross-entropy and metrics=['accuracy'] Keras infers "
        "binary_accuracy, averaged over the 10 one-hot outputs",
        expected=None,
        scope="out",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 3},
        diagnose_args=(x, y),
    )


@thread
def brats_vae_dice_sign_missing():
    """IAmSuyogJadhav/3d-mri-brain-tumor-segmentation-using-autoencoder-
    regularization#7, "Shouldn't the dice coefficient loss be negative?"

    Cause (woodywff, agreed by doc78, fixed by the maintainer): "Are we
    missing a minus here? It goes like: `return - loss_dice + 0.1 * loss_L2
    + 0.1 * loss_KL`".

    Rebuilt: the repository's loss without the minus, `loss_dice = 2 *
    sum(|y_true * y_pred|) / (sum(y_true^2) + sum(y_pred^2) + e)`, on a
    3-channel sigmoid segmentation output, binary masks. Shrunk: a tiny 2D
    conv net on 32x32 patches with 4 modalities (channels last) instead of
    the 3D U-Net on 4x160x192x128; the VAE branch and its L2 and KL terms
    (weight 0.1 each) are dropped, so the loss is the Dice term alone.
    Adam(1e-3) instead of 1e-4, batch_size 8 instead of 1, so that 3 epochs
    show the drift.

    Keras 3 here: the loss, which is the Dice overlap, falls 0.226, 0.206,
    0.201; evaluated before and after fit it drops from 0.242 to 0.200:
    training makes the segmentation overlap less with the masks.
    """
    r = rng(7)
    n, size = 64, 32
    yy, xx = np.mgrid[:size, :size]
    cy, cx = r.uniform(8, 24, (2, n, 1, 1))
    rad = r.uniform(4, 9, (n, 1, 1))
    dist = ((yy - cy) ** 2 + (xx - cx) ** 2) ** 0.5
    # whole tumour, tumour core, enhancing tumour: nested discs
    y = np.stack([dist < rad, dist < 0.6 * rad, dist < 0.3 * rad], -1).astype("float32")
    x = y[..., :1] * r.uniform(0.5, 1, (n, 1, 1, 4)) + r.normal(
        0, 0.3, (n, size, size, 4)
    )
    x = x.astype("float32")

    def loss_gt(y_true, y_pred, e=1e-8):
        intersection = ops.sum(ops.abs(y_true * y_pred), axis=[-3, -2, -1])
        dn = ops.sum(ops.square(y_true) + ops.square(y_pred), axis=[-3, -2, -1]) + e
        loss_dice = 2 * intersection / dn
        return loss_dice  # the thread: should be -loss_dice

    model = keras.Sequential(
        [
            keras.Input((size, size, 4)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(3, 1, activation="sigmoid"),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-3), loss_gt)
    return Thread(
        name="brats_vae_dice_sign_missing",
        url="https://github.com/IAmSuyogJadhav/3d-mri-brain-tumor-segmentation-"
        "using-autoencoder-regularization/issues/7",
        symptom="the loss loss_dice + 0.1 * loss_L2 + 0.1 * loss_KL is minimised, "
        "so the Dice overlap is pushed down",
        cause="a minus is missing: return - loss_dice + 0.1 * loss_L2 + 0.1 * loss_KL",
        expected=None,
        scope="out",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 8, "epochs": 3},
        diagnose_args=(x, y),
    )
