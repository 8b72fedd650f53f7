"""Threads whose cause is the loss: negative by design (likelihoods of
densities, critics, similarities, -Dice), a negative extra term, and
probabilities and logits mixed up."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from tests.realworld.threads import Thread, rng, thread


@thread
def keras_mdn_negative_loss_by_design():
    """cpmpercussion/keras-mdn-layer#15, "Negative Loss while training the
    model".

    Cause (cpmpercussion, the maintainer): "Yes the loss can be negative and
    it's ok! ... the loss is calculated using the probability density
    function of a continuous distribution ... These functions can end up
    higher than 1 at some points (leading to less that 0 loss)".

    Rebuilt: the package's MDN layer as its public parts: three Dense heads
    (mus; sigmas through ELU + 1 + 1e-7; pi logits) concatenated into ONE
    output of width K * (2D + 1), and the package's mixture loss (mean
    negative log-likelihood of a mixture of diagonal Gaussians, the mixture
    split out of that one tensor) written with `keras.ops` instead of
    TensorFlow Probability. D = 4 outputs as in the thread, K = 5 mixtures,
    one Dense(32) hidden layer, targets with a standard deviation of 0.05
    around a smooth function of the inputs. Adam(0.01) instead of the
    examples' default rate, so that the loss crosses zero within the fit
    (the thread took 2-3 epochs of a longer one).

    Keras 3 here: the loss is 3.0 at the 1st epoch, 0.77 at the 2nd and
    -0.21 at the 3rd, as in "after 2-3 epochs, the loss became negative".
    """
    out_dims, n_mixes = 4, 5
    r = rng(15)
    x = r.normal(size=(256, 6)).astype("float32")
    y = (0.3 * np.tanh(x[:, :out_dims]) + 0.05 * r.normal(size=(256, out_dims))).astype(
        "float32"
    )

    def elu_plus_one_plus_epsilon(a):
        return keras.activations.elu(a) + 1.0 + 1e-7

    inputs = keras.Input((6,))
    h = keras.layers.Dense(32, activation="relu")(inputs)
    mus = keras.layers.Dense(n_mixes * out_dims, name="mdn_mus")(h)
    sigmas = keras.layers.Dense(
        n_mixes * out_dims, activation=elu_plus_one_plus_epsilon, name="mdn_sigmas"
    )(h)
    pi = keras.layers.Dense(n_mixes, name="mdn_pi")(h)
    outputs = keras.layers.Concatenate(name="mdn_outputs")([mus, sigmas, pi])
    model = keras.Model(inputs, outputs)

    def mdn_loss_func(y_true, y_pred):
        """mdn.get_mixture_loss_func(OUTPUT_DIMS, N_MIXES), in keras.ops."""
        kd = n_mixes * out_dims
        mu = ops.reshape(y_pred[:, :kd], (-1, n_mixes, out_dims))
        sigma = ops.reshape(y_pred[:, kd : 2 * kd], (-1, n_mixes, out_dims))
        log_pi = ops.log_softmax(y_pred[:, 2 * kd :], axis=-1)
        z = (ops.expand_dims(y_true, 1) - mu) / sigma
        log_component = (
            -0.5 * ops.sum(ops.square(z), axis=-1)
            - ops.sum(ops.log(sigma), axis=-1)
            - 0.5 * out_dims * math.log(2.0 * math.pi)
        )
        return -ops.mean(ops.logsumexp(log_pi + log_component, axis=-1))

    model.compile(keras.optimizers.Adam(0.01), loss=mdn_loss_func)
    return Thread(
        name="keras_mdn_negative_loss_by_design",
        url="https://github.com/cpmpercussion/keras-mdn-layer/issues/15",
        symptom="after 2-3 epochs, the loss became negative",
        cause="the mixture negative log-likelihood of a continuous density, "
        "which can exceed 1: negative by design",
        expected=None,
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 3},
        diagnose_args=(x, y),
        expected_info="LOSS_UNBOUNDED_BELOW",
    )


@thread
def keras_gaussian_nll_negative():
    """keras-team/keras#12423, "negative loss".

    Cause (adrian-spataru, answering): "The reason that your loss is
    negative is because `result` is bigger than 1. (log(1.something) is
    positive)": a Gaussian density exceeds 1 when sigma is small.

    Rebuilt: the thread's loss line by line in `keras.ops` (`K.exp`,
    `K.square`, `K.log`, `K.mean(loss, axis=1)`), on a model whose one
    output concatenates mu (linear) and sigma (softplus: the thread does not
    say how sigma is kept positive), for a 1-D regression target with noise
    0.05. The thread gives no optimizer; Adam(0.01), batches of 16, 3
    epochs.

    Keras 3 here: the loss is 0.66 at the 1st epoch, 0.14 at the 2nd and
    -0.19 at the 3rd (the thread's fell to -1.7).
    """
    r = rng(12423)
    x = r.normal(size=(256, 4)).astype("float32")
    y = (0.5 * np.sin(x[:, :1]) + 0.05 * r.normal(size=(256, 1))).astype("float32")
    inputs = keras.Input((4,))
    h = keras.layers.Dense(32, activation="relu")(inputs)
    mu = keras.layers.Dense(1, name="mu")(h)
    sigma = keras.layers.Dense(1, activation="softplus", name="sigma")(h)
    model = keras.Model(inputs, keras.layers.Concatenate()([mu, sigma]))

    def gaussian_nll(y_true, y_pred):
        """-log(P(y_true)), P ~ N(mu, sigma), as written in the thread."""
        mu, sigma = y_pred[:, :1], y_pred[:, 1:]
        result = (y_true - mu) / (sigma + 1e-8)
        result = ops.exp(-ops.square(result) / 2) / (
            math.sqrt(2 * math.pi) * (sigma + 1e-8)
        )
        loss = -ops.log(result + 1e-8)
        return ops.mean(loss, axis=1)

    model.compile(keras.optimizers.Adam(0.01), loss=gaussian_nll)
    return Thread(
        name="keras_gaussian_nll_negative",
        url="https://github.com/keras-team/keras/issues/12423",
        symptom="the loss decreases to negative value (-1.7)",
        cause="a Gaussian density above 1 (small sigma) gives -log P < 0: "
        "negative by design",
        expected=None,
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 16, "epochs": 3},
        diagnose_args=(x, y),
        expected_info="LOSS_UNBOUNDED_BELOW",
    )


@thread
def cwgan_gp_negative_critic_loss():
    """kongyanye/cwgan-gp#1, "D_loss get negative value".

    Cause (kongyanye, the author): "D_loss is composed of wasserstein loss
    (K.mean(y_true * y_pred)) so it can be negative." ... "there's no
    activation function to restrict it. So the value can be negative."

    Rebuilt: the repository's critic model: images multiplied by an
    Embedding of their class, Dense -> LeakyReLU -> Reshape -> Conv2D ->
    LeakyReLU -> Dropout -> Flatten -> linear Dense(1), applied to a real
    and a generated batch, `wasserstein_loss = mean(y_true * y_pred)` on
    both outputs with the repository's labels -1 (real) and +1 (fake).
    Images shrink from 28x28 to 8x8 (real ones in [-1, 1], mostly
    background -1, generated ones an untrained generator's small noise),
    the convolution stack to one layer, and the gradient-penalty output is
    left out (Keras 3 losses cannot take gradients of the input). The
    repository's RMSprop(5e-5).

    Keras 3 here: the critic loss is negative from the 1st epoch and keeps
    falling at the repository's small learning rate (-0.0024, then -0.0055
    at the 2nd).
    """
    r = rng(1)
    n = 192
    digits = np.full((n, 8, 8, 1), -1.0, dtype="float32")
    labels = r.integers(0, 10, (n, 1))
    for i, c in enumerate(labels[:, 0]):
        rows = slice(1 + c % 3, 5 + c % 3)
        digits[i, rows, 2:6, 0] = r.uniform(0.2, 1.0, (4, 4))
    generated = np.tanh(0.3 * r.normal(size=(n, 8, 8, 1))).astype("float32")

    img = keras.Input((8, 8, 1))
    label = keras.Input((1,), dtype="int32")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(10, 64)(label))
    critic_input = keras.layers.Multiply()([keras.layers.Flatten()(img), embedded])
    body = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(4 * 4 * 16),
            keras.layers.LeakyReLU(0.2),
            keras.layers.Reshape((4, 4, 16)),
            keras.layers.Conv2D(16, 3, strides=2, padding="same"),
            keras.layers.LeakyReLU(0.2),
            keras.layers.Dropout(0.25),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ]
    )
    critic = keras.Model([img, label], body(critic_input))

    real_img = keras.Input((8, 8, 1))
    fake_img = keras.Input((8, 8, 1))
    class_label = keras.Input((1,), dtype="int32")
    valid = keras.layers.Identity(name="valid")(critic([real_img, class_label]))
    fake = keras.layers.Identity(name="fake")(critic([fake_img, class_label]))
    critic_model = keras.Model([real_img, class_label, fake_img], [valid, fake])

    def wasserstein_loss(y_true, y_pred):
        return ops.mean(y_true * y_pred)

    critic_model.compile(
        keras.optimizers.RMSprop(5e-5),
        loss=[wasserstein_loss, wasserstein_loss],
        loss_weights=[1, 1],
    )
    x = [digits, labels, generated]
    y = [-np.ones((n, 1), dtype="float32"), np.ones((n, 1), dtype="float32")]
    return Thread(
        name="cwgan_gp_negative_critic_loss",
        url="https://github.com/kongyanye/cwgan-gp/issues/1",
        symptom="I used your code, and get negative D_loss value",
        cause="the Wasserstein critic loss mean(y_true * y_pred) on a linear "
        "output, labels -1/+1: negative by design",
        expected=None,
        model=critic_model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 2},
        diagnose_args=(x, y),
        expected_info="LOSS_UNBOUNDED_BELOW",
    )


@thread
def so_cosine_proximity_negative_loss():
    """Stack Overflow (mirror whosebug 3073987), "Keras - negative cosine
    proximity loss".

    Cause (answer): "your loss function cosine_proximity can indeed take
    negative values; according to Keras creator Francois Chollet ...": the
    loss is minus a cosine similarity, in [-1, 1].

    Rebuilt: the thread's two LSTM(return_sequences, activation='sigmoid',
    glorot_normal) layers mapping 15 context word vectors to 15 reply word
    vectors, `CosineSimilarity()` (Keras 3's `cosine_proximity`) with Adam
    and accuracy, 100 samples as in the thread; word2vec-like vectors (a
    shared direction plus noise, entries of both signs) shrink from 300 to
    32 dimensions and the LSTMs to 32 units.

    Keras 3 here: the loss is -0.46 at the 1st epoch and -0.48 at the 2nd
    (the thread: "loss: -0.4729 ... val_loss: -0.4405" at epoch 1).
    """
    r = rng(3073987)
    dim = 32
    common = np.abs(r.normal(size=dim))  # word vectors share a direction
    vocab = ((common + 1.5 * r.normal(size=(80, dim))) / 4.0).astype("float32")
    context = vocab[r.integers(0, 80, (100, 15))]
    utterance = vocab[r.integers(0, 80, (100, 15))]
    model = keras.Sequential(
        [
            keras.Input((15, dim)),
            keras.layers.LSTM(
                32,
                return_sequences=True,
                activation="sigmoid",
                kernel_initializer="glorot_normal",
                recurrent_initializer="glorot_normal",
            ),
            keras.layers.LSTM(
                dim,
                return_sequences=True,
                activation="sigmoid",
                kernel_initializer="glorot_normal",
                recurrent_initializer="glorot_normal",
            ),
        ]
    )
    model.compile("adam", keras.losses.CosineSimilarity(), metrics=["accuracy"])
    return Thread(
        name="so_cosine_proximity_negative_loss",
        url="https://whosebug.com/question/3073987/Keras-negative-cosine-proximity-loss",
        symptom="suddenly prints negative loss and val_loss (loss: -0.4729 ... "
        "val_loss: -0.4405)",
        cause="cosine_proximity is minus a cosine similarity: negative by design",
        expected=None,
        model=model,
        x=context,
        y=utterance,
        fit_kwargs={"batch_size": 32, "epochs": 2},
        diagnose_args=(context, utterance),
        expected_info="LOSS_UNBOUNDED_BELOW",
    )


@thread
def ultrasound_nerve_negative_dice_loss():
    """EdwardTyantov/ultrasound-nerve-segmentation#8, "questions on the loss
    value and dice_coeff during the training process".

    Cause (EdwardTyantov, the author): "The answer is simple - loss function
    = - dice coeff. Motivation - gradient descent minimizes a loss
    function."

    Rebuilt: the repository's `dice_coef` (smooth=1, over the flattened
    batch) and `dice_coef_loss = -dice_coef` on a U-Net-like encoder-decoder
    ending in Conv2D(1, 1, sigmoid), with Adam and binary {0, 1} masks;
    80x112 grey images shrink to 20x28 (channels last) and the U-Net to
    Conv2D -> MaxPooling2D -> Conv2D -> UpSampling2D -> Conv2D.

    Keras 3 here: the loss is minus the metric from the first batch: "loss:
    -0.0984 - dice_coef: 0.0984" at the 1st epoch, -0.1001 at the 2nd, as in
    the thread's "loss: -0.7539 - dice_coef: 0.7539".
    """
    r = rng(8)
    n = 128
    yy, xx = np.mgrid[0:20, 0:28]
    cy, cx = r.uniform(6, 14, n), r.uniform(8, 20, n)
    ry, rx = r.uniform(2, 4, n), r.uniform(3, 6, n)
    ell = ((yy - cy[:, None, None]) / ry[:, None, None]) ** 2 + (
        (xx - cx[:, None, None]) / rx[:, None, None]
    ) ** 2
    masks = (ell < 1.0).astype("float32")[..., None]
    keep = r.random(n) < 0.6  # some images have no nerve, as in the data set
    masks[~keep] = 0.0
    x = np.clip(0.5 + 0.2 * masks + 0.2 * r.normal(size=masks.shape), 0, 1).astype(
        "float32"
    )

    def dice_coef(y_true, y_pred, smooth=1.0):
        y_true_f = ops.reshape(y_true, (-1,))
        y_pred_f = ops.reshape(y_pred, (-1,))
        intersection = ops.sum(y_true_f * y_pred_f)
        return (2.0 * intersection + smooth) / (
            ops.sum(y_true_f) + ops.sum(y_pred_f) + smooth
        )

    def dice_coef_loss(y_true, y_pred):
        return -dice_coef(y_true, y_pred)

    model = keras.Sequential(
        [
            keras.Input((20, 28, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.UpSampling2D(),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(1, 1, activation="sigmoid"),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-3), loss=dice_coef_loss, metrics=[dice_coef])
    return Thread(
        name="ultrasound_nerve_negative_dice_loss",
        url="https://github.com/EdwardTyantov/ultrasound-nerve-segmentation/issues/8",
        symptom="loss: -0.7539 - dice_coef: 0.7539 (epoch 5); why is the loss "
        "negative?",
        cause="the loss is minus the Dice coefficient: negative by design",
        expected=None,
        model=model,
        x=x,
        y=masks,
        fit_kwargs={"batch_size": 32, "epochs": 2},
        diagnose_args=(x, masks),
        expected_info="LOSS_UNBOUNDED_BELOW",
    )


@thread
def keras_activity_regularization_negative_coeff():
    """keras-team/keras#9339, "Is 0.0 acceptable for hte l1 and l2
    parameters of ActivityRegularization layer?".

    Cause (briannemsick, answering; ozabluda checked that "ActivityRegularization
    does not complain about negative values"): "total loss =
    loss(w)+ r||w|| ... If r is negative you can minimize the loss by setting
    all of the weights to infinity. Regularizers are a penalty, which is why
    r >= 0".

    Rebuilt: Dense(64, relu) -> an activity penalty with l2 = -0.01 ->
    Dense(1) under `mse` with Adam, on a 10-feature regression. Keras 3 now
    rejects `ActivityRegularization(l2=-0.01)` ("Invalid value for argument
    l2: expected a non-negative float"), so the layer is rebuilt as what it
    is, an identity layer whose `activity_regularizer` is the same L2 term
    with the negative factor, passed as a callable, which Keras 3 accepts
    unchecked.

    Keras 3 here: the extra term is -0.087 on the first batch; the total
    loss is 0.40 at the 1st epoch, -0.035 at the 2nd and -0.052 at the 3rd,
    while the activations grow.
    """
    r = rng(9339)
    x = r.normal(size=(256, 10)).astype("float32")
    y = (x[:, :3].sum(axis=1, keepdims=True) / 2.0).astype("float32")

    def negative_l2(activity):
        """regularizers.L1L2(l1=0.0, l2=-0.01), which Keras 3 refuses."""
        return -0.01 * ops.sum(ops.square(activity))

    model = keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Identity(activity_regularizer=negative_l2),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return Thread(
        name="keras_activity_regularization_negative_coeff",
        url="https://github.com/keras-team/keras/issues/9339",
        symptom="ActivityRegularization does not complain about negative values",
        cause="a negative regularisation factor turns the penalty into a "
        "reward for large activations",
        expected="NEGATIVE_AUX_LOSS",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 3},
        diagnose_args=(x, y),
    )


@thread
def tfdocs_text_classification_logits_no_from_logits():
    """tensorflow/docs#2102, "tutorials/keras/text_classification.ipynb:
    Refine exercise instruction".

    Cause (MarkDaoust, maintainer): instead of adding a softmax "could you
    set the loss function to:
    `tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)`": the
    model's Dense(4) outputs logits, the loss read them as probabilities.

    Rebuilt: the tutorial's Embedding(10001, 16) -> Dropout(0.2) ->
    GlobalAveragePooling1D -> Dropout(0.2) -> Dense(4) under
    `SparseCategoricalCrossentropy()` with Adam, labels 0..3 (the Stack
    Overflow 4-tag exercise); 256 random TextVectorization-like id
    sequences (0 padding, 1 OOV) of length 64 instead of 250, whose tag
    shows in a few tag-specific words.

    Keras 3 here: no error; the outputs lie in [-0.02, 0.03] and the loss
    reads 5.8, then 3.1, where the same model with `from_logits=True`
    reads 1.38 (log 4 for a guess); accuracy 0.27, then 0.49 (0.29, then
    0.44 with `from_logits=True`: 2 epochs are too few to show the
    thread's gap, "around 0.3, not far away from the random-guess 0.25").
    """
    r = rng(2102)
    n, length, vocab = 256, 64, 10001
    y = r.integers(0, 4, n)
    x = np.zeros((n, length), dtype="int64")
    for i, m in enumerate(r.integers(20, length + 1, n)):
        words = r.integers(1, vocab, m)
        hints = r.random(m) < 0.15
        words[hints] = 100 + 10 * y[i] + r.integers(0, 10, hints.sum())
        x[i, :m] = words
    model = keras.Sequential(
        [
            keras.Input((length,), dtype="int64"),
            keras.layers.Embedding(vocab, 16),
            keras.layers.Dropout(0.2),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(4),
        ]
    )
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"]
    )
    return Thread(
        name="tfdocs_text_classification_logits_no_from_logits",
        url="https://github.com/tensorflow/docs/pull/2102",
        symptom="the accuracy would be around 0.3, not far away from the "
        "random-guess 0.25",
        cause="Dense(4) outputs logits, SparseCategoricalCrossentropy() "
        "expects probabilities (from_logits=False)",
        expected="PREDICTIONS_NOT_PROBABILITIES",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 2},
        diagnose_args=(x, y),
    )


@thread
def tf_transfer_learning_tutorial_logit_bce():
    """tensorflow/tensorflow#28718, "Transfer Learning Using Pretrained
    ConvNets tutorial should use sigmoid activation".

    Cause (jasonzhang2022, the reporter; MeghnaNatraj, maintainer, gave the
    fix "set `from_logits=True` in the loss function"): the head `Dense(1)`
    has no activation, "this prediction will be treated as a logit", but
    `binary_crossentropy` "by default has from_logits=False and expect a
    probability".

    Rebuilt: frozen convolutional base -> GlobalAveragePooling2D -> Dense(1)
    under `loss='binary_crossentropy'` with RMSprop(1e-4), 0/1 labels; a
    tiny frozen two-layer Conv2D base on 32x32 images scaled to [-1, 1]
    replaces MobileNetV2 on 160x160 cats and dogs.

    Keras 3 here: no error; the linear outputs, in [-0.08, 0.14], are
    clipped to [1e-7, 1 - 1e-7] (a negative one costs -log(1e-7) = 16.1 on a
    label 1) and the loss reads 1.36, then 1.34, with accuracy 0.48.
    """
    r = rng(28718)
    n = 128
    y = r.integers(0, 2, (n, 1)).astype("float32")
    x = r.uniform(-1, 1, (n, 32, 32, 3)).astype("float32")
    x[:, :, :, 0] += 0.3 * (2 * y[:, :, None] - 1)  # the class tints the image
    x = np.clip(x, -1, 1)
    base = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
        ],
        name="frozen_base",
    )
    base.trainable = False
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            base,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(1),
        ]
    )
    model.compile(
        keras.optimizers.RMSprop(1e-4), loss="binary_crossentropy", metrics=["accuracy"]
    )
    return Thread(
        name="tf_transfer_learning_tutorial_logit_bce",
        url="https://github.com/tensorflow/tensorflow/issues/28718",
        symptom="the head Dense(1) outputs a logit but binary_crossentropy "
        "expects a probability",
        cause="a linear Dense(1) head under binary_crossentropy with from_logits=False",
        expected="PREDICTIONS_NOT_PROBABILITIES",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 2},
        diagnose_args=(x, y),
    )


@thread
def korean_book_sigmoid_with_from_logits_true():
    """lovedlim/tensorflow#2, "4.5 개/고양이 분류에서 from_logits 관련 Warning"
    (dogs/cats classifier: a from_logits warning).

    Cause (tsdata, the book's author): "마지막 출력층에 sigmoid 활성화함수를
    지정하지 않았어야 하는데, 오류가 있는 점을 양해 부탁 드립니다" (the last
    layer should not have had a sigmoid activation; apologies for the
    error).

    Rebuilt: a cats-vs-dogs CNN (Conv2D/MaxPooling2D stack -> Flatten ->
    Dense -> Dense(1, sigmoid)) under `BinaryCrossentropy(from_logits=True)`
    with Adam and 0/1 labels; 224x224 photos shrink to 32x32 random images
    in [0, 1] (the thread does not show its architecture).

    Keras 3 here: fit prints the thread's warning, "`binary_crossentropy`
    received `from_logits=True`, but the `output` argument was produced by a
    Sigmoid activation and thus does not represent logits. Was this
    intended?"; Keras' TensorFlow backend then reads the sigmoid's logit, so
    the loss itself is the right one (0.69, then 0.65).
    """
    r = rng(2)
    n = 128
    y = r.integers(0, 2, (n, 1)).astype("float32")
    x = r.uniform(0, 1, (n, 32, 32, 3)).astype("float32")
    x[:, 8:24, 8:24, 1] *= (1 - 0.4 * y)[:, :, None]  # dogs are darker
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(
        "adam", keras.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    return Thread(
        name="korean_book_sigmoid_with_from_logits_true",
        url="https://github.com/lovedlim/tensorflow/issues/2",
        symptom="UserWarning: `binary_crossentropy` received `from_logits=True`, "
        "but the `output` argument was produced by a sigmoid or softmax "
        "activation and thus does not represent logits. Was this intended?",
        cause="a sigmoid output layer under BinaryCrossentropy(from_logits=True)",
        expected="PROBABILITIES_AS_LOGITS",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 2},
        diagnose_args=(x, y),
    )
