"""Threads whose loss sat at a telltale value: ln K (the uniform guess), or
far above it, at or past the clip's ceiling -ln(eps) = 16.12.

A cross-entropy stuck at ln 10 = 2.3026 on CIFAR-10, with accuracy at 0.1,
is a model whose prediction no longer depends on its input. lossguard's
LOSS_AT_UNIFORM reads it in `fit` (never in `diagnose`, which runs no
training); a collapse that only hovers near ln K needs the output's spread,
measured with `LossSanityCallback(predictions="all")` (the threads' rebuilds
pass it: by default the callback reads the loss alone and names only an
output that is exactly uniform); SATURATED_PREDICTIONS reads a batch loss
near or past -ln(eps) in both.
"""

from __future__ import annotations

import keras
import numpy as np

from tests.realworld.threads import Thread, rng, thread


def _cifar10_cnn(classes=10):
    """examples/cifar10_cnn.py of Keras 1 (conv 32-32, pool, dropout, conv
    64-64, pool, dropout, Dense(512), dropout, Dense(10, softmax)) with the
    filters and units divided by 4 or 8, on 16x16 inputs."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Conv2D(8, 3, padding="same", activation="relu"),
            layers.Conv2D(8, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Dropout(0.25),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.Conv2D(16, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(classes, activation="softmax"),
        ]
    )


def _cifar10_example():
    """The shrunk example compiled as it shipped: SGD(0.01, momentum 0.9,
    Nesterov), categorical cross-entropy, accuracy."""
    model = _cifar10_cnn()
    model.compile(
        keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True),
        "categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _cifar_like(r, n, classes=10):
    """n 16x16x3 images in [0, 1]: a faint class prototype (20%) under
    uniform noise (80%), so that, as on CIFAR-10, no class is easy."""
    labels = r.integers(0, classes, n)
    protos = r.uniform(size=(classes, 16, 16, 3))
    x = 0.2 * protos[labels] + 0.8 * r.uniform(size=(n, 16, 16, 3))
    return x.astype("float32"), keras.utils.to_categorical(labels, classes)


@thread
def keras_cifar10_sgd_stuck_at_ln10():
    """keras-team/keras#4066, "Cifar10 example sometimes only predicts 1
    class and does not improve".

    Symptom: examples/cifar10_cnn.py "locks into a situation where it only
    predicts a single class and accuracy fixes at 0.1"; wangdelp: "the loss
    still get stucked at 2.304, and accu=0.1" (ln 10 = 2.3026).

    Cause (aidiary, confirmed by NYcleaner and wangdelp): the example's
    SGD(lr=0.01, decay=1e-6, momentum=0.9, nesterov=True); "I solved using
    Adam instead of SGD", which "is by default using a smaller learning rate
    0.001". The too large steps kill the network: its output stops
    depending on the input.

    Rebuilt: the example's architecture shrunk (see `_cifar10_cnn`), its
    optimizer (Keras 3's SGD has no `decay`; 1e-6 over 400 steps is
    negligible), categorical cross-entropy on one-hot labels, batch_size=32
    as in the example; 6400 synthetic 16x16 CIFAR-like images in [0, 1]
    (the example divides by 255), no augmentation. Two epochs = 400 steps.

    Keras 3 here: epoch losses 2.3051, 2.3036 and accuracy 0.097, 0.100;
    after training the prediction is the same for every input (its standard
    deviation over 500 rows is 2e-5 per class) and stays near 1/10
    (0.096-0.103). Per batch of 32 the final model's loss runs 2.2936 to
    2.3137 (80% of batches within 0.2% of ln 10): the constant prediction
    still wobbles around 1/10 under SGD's noisy steps, so no 200-step run
    stays within 0.2%. With predictions="all" the output's spread (1-7% of
    1/10) shows the collapse.

    Scored DEAD_UNITS since the callback reads the ReLU layers (with
    `internals=True`, which the rebuild passes; by default it reports
    nothing, and with `predictions="all"` LOSS_AT_UNIFORM):
    from step 101 of the second epoch 90.6% of the Dense(64) ReLU units
    output 0 on every image of every batch: the collapse's mechanism (too
    large SGD steps push them below 0 for every input), whose first fix, a
    lower learning rate, is the thread's. LOSS_AT_UNIFORM follows from it
    (reported under it with predictions="all").
    """
    x, y = _cifar_like(rng(4066), 6400)
    model = _cifar10_example()
    return Thread(
        name="keras_cifar10_sgd_stuck_at_ln10",
        url="https://github.com/keras-team/keras/issues/4066",
        symptom="it only predicts a single class and accuracy fixes at 0.1; "
        "the loss still get stucked at 2.304",
        cause="SGD at lr 0.01 in the example; solved using Adam (default, "
        "smaller learning rate 0.001) instead of SGD",
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
def keras_cifar10_batch128_acc_fixed():
    """keras-team/keras#4669, "Cifar-10 acc value is decreasing or fixed in
    keras model".

    Symptom: examples/cifar10_cnn.py with batch_size raised from 32 to 128:
    "the acc when running the example is decreasing or fixed after a while
    regradless of the number of convolution layers you used".

    Cause (fchollet): the example's SGD optimizer; "I've changed the default
    optimizer in this script to RMSprop (instead of SGD)".

    Rebuilt: as keras_cifar10_sgd_stuck_at_ln10 (same shrunk model, same
    SGD(0.01, momentum=0.9, nesterov=True), CIFAR-like synthetic images) with
    batch_size=128 and 5 epochs of 6400 images (250 steps).

    Keras 3 here: epoch losses 2.3067, 2.3027, 2.3028, 2.3028, 2.3022,
    accuracy 0.095-0.102; the final prediction hardly depends on the input
    (standard deviation over 500 rows at most 5e-4 per class, means
    0.096-0.104). Per batch of 128 its loss runs 2.2978 to 2.3073 (94% of
    batches within 0.2% of ln 10): the default callback reports nothing;
    with predictions="all" the output's spread shows the collapse.
    """
    x, y = _cifar_like(rng(4669), 6400)
    model = _cifar10_example()
    return Thread(
        name="keras_cifar10_batch128_acc_fixed",
        url="https://github.com/keras-team/keras/issues/4669",
        symptom="increase the batch_size from 32 to 128, the acc ... is "
        "decreasing or fixed after a while",
        cause="the example's SGD; changed the default optimizer to RMSprop",
        expected="LOSS_AT_UNIFORM",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 128, "epochs": 5},
        diagnose_args=(x, y),
        seen_before_training=False,
        callback_kwargs={"predictions": "all"},
    )


@thread
def keras_mnist_kaggle_not_normalized():
    """keras-team/keras#6914, "MNIST not learning".

    Cause (alepacheco, the reporter): "It turns out I didn't normalized the
    input `x_train /= 255`... After that It's working as expected".

    Rebuilt: examples/mnist_mlp.py shrunk (Dense(64) instead of Dense(512)):
    784 -> Dense(relu) -> Dropout(0.2) -> Dense(relu) -> Dropout(0.2) ->
    Dense(10, softmax), categorical cross-entropy on one-hot labels,
    RMSprop(); the inputs are 256 synthetic digits (ten prototypes that
    share most strokes, plus pixel noise) as raw 0..255 pixel values, the
    Kaggle CSV's range. batch_size 32 instead of
    128 so that 3 epochs take 24 steps.

    Keras 3 here: accuracy 0.15, 0.20, 0.25 and loss 98.3, 20.5, 4.79 over
    3 epochs; the same data divided by 255 reaches accuracy 0.16, 0.37, 0.48
    (loss 2.31, 1.93, 1.66).

    Scored out of scope until SATURATED_PREDICTIONS: the first batches'
    losses are several times -ln(eps) = 16.12 (Keras reads the softmax's
    logits on TensorFlow, so the loss is the logit gap): confidently wrong on
    almost every row, which is what unscaled inputs into a dense layer do.
    """
    r = rng(6914)
    labels = r.integers(0, 10, 256)
    # ten "digits" that share 80% of their strokes, with pixel noise
    base = r.uniform(size=784) < 0.15
    own = r.uniform(size=(10, 784)) < 0.2
    digits = np.where(own, r.uniform(size=(10, 784)) < 0.15, base)
    pixels = digits[labels] * r.uniform(0.6, 1, (256, 784)) + r.uniform(
        0, 0.5, (256, 784)
    )
    x = (pixels.clip(0, 1) * 255).round().astype("float32")  # raw 0..255
    y = keras.utils.to_categorical(labels, 10)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.RMSprop(), "categorical_crossentropy", metrics=["accuracy"]
    )
    return Thread(
        name="keras_mnist_kaggle_not_normalized",
        url="https://github.com/keras-team/keras/issues/6914",
        symptom="doesn't go past 30% accuracy (the example reaches 98.40%)",
        cause="I didn't normalized the input x_train /= 255",
        expected="SATURATED_PREDICTIONS",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 3},
        diagnose_args=(x, y),
    )
