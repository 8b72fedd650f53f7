"""Threads whose cause is the labels: out of range, negative, not
distributions, empty rows, unmasked padding."""

from __future__ import annotations

import keras
import numpy as np

from tests.realworld.threads import Thread, rng, thread


def _blobs(r, n, size, threshold):
    """Binary masks of smooth random blobs, shape (n, size, size, 1)."""
    noise = r.normal(size=(n, size + 4, size + 4))
    smooth = sum(
        noise[:, i : i + size, j : j + size] for i in range(5) for j in range(5)
    )
    return (smooth / 5.0 > threshold).astype("float32")[..., None]


@thread
def unet_tgs_masks_not_normalized_negative_bce():
    """hlamba28/UNET-TGS#8, "normalization code for image data in mask
    directory does not work".

    Cause (superbunny38, the reporter): "when normalizing image data by
    dividing all images by 255.0, it does not work for images in mask
    directory ... So, I added the code myself to manually normalize image
    data in mask directory": the masks reach binary cross-entropy as 0/255.

    Rebuilt: the U-Net's sigmoid segmentation head under
    `binary_crossentropy` and Adam, images divided by 255 and masks left
    0/255, shrunk from 128x128 to 16x16 grey images and from the U-Net to
    two convolutions.

    Keras 3 here: Keras reads the sigmoid's logit and the loss has no floor:
    -8.9 at the 1st epoch, -19.3 at the 2nd, as in the thread's "negative
    values for binary cross_entroy error".
    """
    r = rng(8)
    masks = _blobs(r, 128, 16, 0.3)
    images = np.clip(0.45 + 0.35 * masks + 0.15 * r.normal(size=masks.shape), 0, 1)
    x = np.round(images * 255.0).astype("float32") / 255.0
    y = masks * 255.0  # the thread's masks: never divided by 255
    model = keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(1, 1, activation="sigmoid"),
        ]
    )
    model.compile(keras.optimizers.Adam(), "binary_crossentropy", metrics=["accuracy"])
    return Thread(
        name="unet_tgs_masks_not_normalized_negative_bce",
        url="https://github.com/hlamba28/UNET-TGS/issues/8",
        symptom="when I fit the model, it gives me negative values for binary "
        "cross_entroy error",
        cause="images were divided by 255 but the masks were not: mask values "
        "0..255 as binary cross-entropy targets",
        expected="LABELS_OUT_OF_RANGE",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 2},
        diagnose_args=(x, y),
    )


@thread
def tf_bce_label_above_one_negative():
    """tensorflow/tensorflow#71638, "Binary cross entropy produces negative
    results if input is more than 1".

    Cause (the reporter, in the title and repro): the target "is more than 1":
    `binary_crossentropy([1.0000000597], [1.0])` gives -1.7812711e-06, since
    `(1 - y) * log(1 - p)` turns negative for `y > 1`.

    Rebuilt: the thread's call put in training: a Dense(1, sigmoid) head
    under `binary_crossentropy` whose targets are all the thread's
    1.0000000597 (1 + 2**-23 in float32). The thread shows no model or
    optimizer; Adam(0.1) lets the sigmoid saturate within the fit, as the
    thread's `y_pred = 1.0` is.

    Keras 3 here: Keras reads the sigmoid's logit z, and the loss
    `-z * 2**-23 + log(1 + exp(-z))` crosses 0 once z passes about 14: 0.086
    at the 1st epoch, -1.4e-6 at the 2nd (the thread's call: -1.78e-6).
    """
    r = rng(71638)
    x = r.normal(size=(128, 8)).astype("float32")
    y = np.full((128, 1), 1.0000000597, dtype="float32")  # 1 + 2**-23
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.1), "binary_crossentropy")
    return Thread(
        name="tf_bce_label_above_one_negative",
        url="https://github.com/tensorflow/tensorflow/issues/71638",
        symptom="binary_crossentropy([1.0000000597], [1.0]) prints -1.7812711e-06",
        cause="a binary cross-entropy target slightly above 1",
        expected="LABELS_OUT_OF_RANGE",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 16, "epochs": 2},
        diagnose_args=(x, y),
    )


@thread
def so_autoencoder_bce_softmax_unnormalized_mnist():
    """Stack Overflow 52441877, "How does binary cross entropy loss work on
    autoencoders?".

    Cause (accepted answer): "by default the values of MNIST are integers in
    the range [0, 255]. Usually you need to normalize them first: trainX /=
    255"; binary cross-entropy needs targets in [0, 1] (a comment adds that
    the output should be a sigmoid, not a softmax).

    Rebuilt: the dense autoencoder 784 -> ... -> Dense(784, softmax) under
    `binary_crossentropy` and Adam, fitted on raw 0..255 pixels as both
    input and target; random "digits" (a bright stroke region on a dark
    background) replace MNIST, 128 samples instead of 60000, and the hidden
    layers 128-64-28-64-128 shrink to 32-16-32.

    Keras 3 here: Keras reads the softmax's logits as sigmoid logits, so
    `-(y log p + (1 - y) log(1 - p))` with y up to 255 has no floor: the
    loss is -20 at the 1st epoch and -178 at the 2nd.
    """
    r = rng(52441877)
    n = 128
    canvas = np.zeros((n, 28, 28), dtype="float32")
    for i in range(n):
        top, left = r.integers(4, 12, 2)
        h, w = r.integers(8, 14, 2)
        canvas[i, top : top + h, left : left + w] = r.integers(120, 256, (h, w))
    x = canvas.reshape(n, 784)  # raw pixels, 0..255, as in the thread
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(784, activation="softmax"),
        ]
    )
    model.compile("adam", "binary_crossentropy")
    return Thread(
        name="so_autoencoder_bce_softmax_unnormalized_mnist",
        url="https://stackoverflow.com/questions/52441877/how-does-binary-cross-"
        "entropy-loss-work-on-autoencoders/52443301#52443301",
        symptom="binary cross-entropy loss values of an MNIST autoencoder that "
        "the asker cannot interpret",
        cause="MNIST pixels 0..255 used as binary cross-entropy targets without "
        "dividing by 255",
        expected="LABELS_OUT_OF_RANGE",
        model=model,
        x=x,
        y=x,
        fit_kwargs={"batch_size": 32, "epochs": 2},
        diagnose_args=(x, x),
    )


@thread
def so_tokenizer_labels_1_to_5_dense5():
    """Stack Overflow (mirror stackoom 4F1Ib), "Units of the last dense output
    layer in case of multiple categories".

    Cause (answer): "the encode targets are in [1,5] but keras sparse_cat
    creates one-hot labels from 0 ... to use Dense(5, activation='softmax')
    you simply can do y-1": a Tokenizer numbered the 5 BBC-news categories
    1..5, and id 5 has no unit.

    Rebuilt: the course's text classifier Embedding -> GlobalAveragePooling1D
    -> Dense(24, relu) -> Dense(5, softmax) under
    `sparse_categorical_crossentropy`, labels 1..5 as the Tokenizer gives
    them; 160 random padded token sequences of length 40 over 500 words
    replace the 1780 articles of length 120 over 1000 words.

    Keras 3 here: TensorFlow on CPU stops fit on the first batch with a
    label 5: "Received a label value of 5 which is outside the valid range
    of [0, 5)" (the thread, on its Colab, saw "Accuracy is always 0").
    """
    r = rng(41)
    n, length, vocab = 160, 40, 500
    lengths = r.integers(12, length + 1, n)
    x = np.zeros((n, length), dtype="int32")
    for i, m in enumerate(lengths):
        x[i, :m] = r.integers(2, vocab, m)
    y = r.integers(1, 6, n)  # {'sport': 1, ..., 'entertainment': 5}
    model = keras.Sequential(
        [
            keras.Input((length,), dtype="int32"),
            keras.layers.Embedding(vocab, 16),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(24, activation="relu"),
            keras.layers.Dense(5, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return Thread(
        name="so_tokenizer_labels_1_to_5_dense5",
        url="https://stackoom.com/en/question/4F1Ib",
        symptom="with Dense(5, activation='softmax') model.fit does not work: "
        "Accuracy is always 0",
        cause="Tokenizer label ids 1..5 for 5 classes: sparse cross-entropy "
        "needs ids 0..4",
        expected="LABELS_OUT_OF_RANGE",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 1},
        diagnose_args=(x, y),
        crashes=True,
    )


@thread
def hanser_book_sparse_negative_classes_nan():
    """tplusone/hanser_ml_zeitreihen#3, "Beispiel 5.2.3 zu
    "sparse_categorical_crossentropy" fehlt".

    Cause (mazl-io, the reader, after comparing with the author's code): "Die
    'Classes' ... müssen scheinbar unsigned sein, d.h. ab 0 beginnend +=1
    aufsteigend sein. Ich hatte eine Skala von -6 bis +6": class ids -6..+6
    instead of 0..12.

    Rebuilt: a dense classifier on scikit-learn-like synthetic features
    (20 features, classes -6..+6 from a noisy linear score) ending in
    Dense(13, softmax) under `sparse_categorical_crossentropy` and Adam.

    Keras 3 here: TensorFlow on CPU stops fit on the first batch: "Received
    a label value of -6 which is outside the valid range of [0, 13)" (the
    reader got NaN predictions instead, as TensorFlow gives on a GPU).
    """
    r = rng(523)
    x = r.normal(size=(192, 20)).astype("float32")
    score = x[:, :3].sum(axis=1) + 0.5 * r.normal(size=192)
    y = np.clip(np.round(score * 2.0), -6, 6).astype("int64")  # -6..+6
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(13, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return Thread(
        name="hanser_book_sparse_negative_classes_nan",
        url="https://github.com/tplusone/hanser_ml_zeitreihen/issues/3",
        symptom="always 'NaN' predictions with sparse_categorical_crossentropy",
        cause="class ids on a scale from -6 to +6; sparse ids must start at 0",
        expected="LABELS_OUT_OF_RANGE",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 1},
        diagnose_args=(x, y),
        crashes=True,
    )


@thread
def so_seq2seq_word2vec_targets_cce_negative():
    """Stack Overflow (mirror javaroad 285858), Keras seq2seq chatbot with
    word2vec targets: the loss is negative under categorical_crossentropy.

    Cause (the asker and the answer): "the values in each dimension of
    word2vec are not between 0 and 1"; "to use categorical_crossentropy the
    word vectors must be normalized before training and softmax used as the
    activation of the output layer".

    Rebuilt: the thread's encoder-decoder LSTM -> Dropout -> Dense ->
    RepeatVector -> LSTM -> Dropout -> TimeDistributed(Dense(dim, linear))
    under `categorical_crossentropy` and Adam, with word2vec-like sentence
    tensors (random vectors of a 60-word vocabulary, entries of both signs,
    zero rows after each sentence, as the thread zero-pads) as inputs and
    targets. The thread stacks two LSTMs on each side, here one; the
    vectors shrink from 250 to 32 dimensions, the hidden size to 32 and the
    sentences to 8 steps. The linear output and the zero padding rows are
    the thread's own, and are faults of their own (`also`): the answer asks
    for a softmax output, and zero padding rows count in the mean.

    Keras 3 here: the loss is 0.48 at the 1st epoch and -0.70 at the 2nd.
    """
    r = rng(285858)
    n, steps, dim = 96, 8, 32
    vectors = (0.3 * r.normal(size=(60, dim))).astype("float32")

    def sentences():
        out = np.zeros((n, steps, dim), dtype="float32")
        for i, m in enumerate(r.integers(3, steps + 1, n)):
            out[i, :m] = vectors[r.integers(0, 60, m)]
        return out

    x, y = sentences(), sentences()
    model = keras.Sequential(
        [
            keras.Input((steps, dim)),
            keras.layers.LSTM(32),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.RepeatVector(steps),
            keras.layers.LSTM(dim, return_sequences=True),
            keras.layers.Dropout(0.1),
            keras.layers.TimeDistributed(keras.layers.Dense(dim, activation="linear")),
        ]
    )
    model.compile(keras.optimizers.Adam(), "categorical_crossentropy", metrics=["acc"])
    return Thread(
        name="so_seq2seq_word2vec_targets_cce_negative",
        url="https://www.javaroad.cn/questions/285858",
        symptom="the loss value during training is negative; every predicted "
        "sentence is the same",
        cause="word2vec vectors (entries not between 0 and 1) as categorical "
        "cross-entropy targets",
        expected="NEGATIVE_LABELS",
        also=("PREDICTIONS_NOT_PROBABILITIES", "EMPTY_LABEL_ROWS"),
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 2},
        diagnose_args=(x, y),
    )


@thread
def so_multilabel_softmax_cce():
    """Stack Overflow 44164749, "How does Keras handle multilabel
    classification?".

    Cause (accepted answer): "Don't use softmax. Use sigmoid for activation
    of your output layer. Use binary_crossentropy ... In softmax when
    increasing score for one label, all others are lowered (it's a
    probability distribution)": multi-hot rows are not distributions.

    Rebuilt: MultiLabelBinarizer-style targets over 11 classes with 1 to 3
    ones a row, bag-of-words-like inputs, the thread's Dense -> Dropout ->
    Dense -> Dropout -> Dense(11, softmax) under `categorical_crossentropy`
    with SGD(0.01, momentum 0.9, Nesterov) (Keras 3 has no `decay`); the
    inputs shrink from thousands of features to 100 and the hidden layers
    from 5000-600 to 64-32.

    Keras 3 here: no error; the loss stays at 4.80, then 4.79, since no
    softmax can give two or three classes probability 1.
    """
    r = rng(44164749)
    n = 256
    x = (r.random((n, 100)) < 0.1).astype("float32") * r.random((n, 100)).astype(
        "float32"
    )
    y = np.zeros((n, 11), dtype="float32")
    for i, k in enumerate(r.integers(1, 4, n)):
        y[i, r.choice(11, k, replace=False)] = 1.0
    model = keras.Sequential(
        [
            keras.Input((100,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(11, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
        "categorical_crossentropy",
        metrics=["accuracy"],
    )
    return Thread(
        name="so_multilabel_softmax_cce",
        url="https://stackoverflow.com/questions/44164749/how-does-keras-handle-"
        "multilabel-classification",
        symptom="multi-label targets train with no error, but what is optimised "
        "cannot be interpreted",
        cause="multi-hot targets with a softmax output and categorical cross-entropy",
        expected="LABEL_SUM_NOT_ONE",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 64, "epochs": 2},
        diagnose_args=(x, y),
    )


@thread
def keras_lstm_seq2seq_padding_zero_targets():
    """keras-team/keras#13266, "low accuracy with incorrect one-hot encoding
    in lstm_seq2seq.py example".

    Cause (tykimos, the reporter; fixed by PR #13269): "I found that one-hot
    encoding after tokenizing wasn't applied for the back padding of
    sentences": the padded target timesteps are all-zero rows.

    Rebuilt: the example's character-level encoder-decoder: one-hot encoder
    input -> LSTM(return_state) whose states start the decoder LSTM over
    the one-hot decoder input -> Dense(softmax) under
    `categorical_crossentropy` with rmsprop and `metrics=['accuracy']`,
    `decoder_target_data = np.zeros(...)` filled only up to each sentence's
    end. Random "sentences" replace fra-eng; the vocabularies shrink to 20
    and 24 characters, the lengths to 10 and 14, the LSTMs from 256 to 32
    units.

    Keras 3 here: no error; 54% of the target rows are all zero, and the
    reported loss (1.47, then 1.47) and accuracy (0.02, then 0.04) are
    averaged over them.
    """
    r = rng(13266)
    n, enc_len, dec_len, enc_tokens, dec_tokens = 128, 10, 14, 20, 24
    enc = np.zeros((n, enc_len, enc_tokens), dtype="float32")
    dec_in = np.zeros((n, dec_len, dec_tokens), dtype="float32")
    dec_out = np.zeros((n, dec_len, dec_tokens), dtype="float32")
    for i in range(n):
        m = r.integers(3, enc_len + 1)
        enc[i, np.arange(m), r.integers(0, enc_tokens, m)] = 1.0
        t = r.integers(3, 13)  # the target sentence, '\t' ... '\n'
        chars = np.concatenate([[0], r.integers(2, dec_tokens, t - 2), [1]])
        dec_in[i, np.arange(t), chars] = 1.0
        dec_out[i, np.arange(t - 1), chars[1:]] = 1.0  # the rest stays zero
    encoder_inputs = keras.Input((None, enc_tokens))
    _, h, c = keras.layers.LSTM(32, return_state=True)(encoder_inputs)
    decoder_inputs = keras.Input((None, dec_tokens))
    seq = keras.layers.LSTM(32, return_sequences=True)(
        decoder_inputs, initial_state=[h, c]
    )
    outputs = keras.layers.Dense(dec_tokens, activation="softmax")(seq)
    model = keras.Model([encoder_inputs, decoder_inputs], outputs)
    model.compile("rmsprop", "categorical_crossentropy", metrics=["accuracy"])
    x = [enc, dec_in]
    return Thread(
        name="keras_lstm_seq2seq_padding_zero_targets",
        url="https://github.com/keras-team/keras/issues/13266",
        symptom="lstm_seq2seq.py with metrics=['accuracy'] didn't achieve high "
        "accuracy (22%; 87% after the fix)",
        cause="one-hot encoding was not applied to the back padding: padded "
        "target timesteps are all-zero rows",
        expected="EMPTY_LABEL_ROWS",
        model=model,
        x=x,
        y=dec_out,
        fit_kwargs={"batch_size": 32, "epochs": 2},
        diagnose_args=(x, dec_out),
    )


@thread
def lstm_pos_tagger_padding_not_masked():
    """aneesh-joshi/LSTM_POS_Tagger#8, "Padding without masking".

    Cause (aneesh-joshi, the maintainer, answering "Does this not cause your
    progress to be based on correctfully guessing where the paddings are?"):
    "Unfortunately, yes. I wasn't aware of masking at the time of writing
    this."

    Rebuilt: sentences padded with 0 to MAX_LEN, an Embedding initialised
    from "pre-trained" vectors without `mask_zero` ->
    Bidirectional(LSTM(return_sequences)) -> TimeDistributed(Dense(n_tags,
    softmax)) under `categorical_crossentropy` with Adam, one-hot tags
    where padding is tag 0. Random vectors replace GloVe (300 -> 16
    dimensions), 200 words and 12 tags, 128 sentences of 4..14 words padded
    to 24, the LSTM shrinks from 64 to 16 units.

    Keras 3 here: no error; 61% of the target positions are padding, and
    accuracy jumps to that share (0.43, then 0.64) while the loss on the
    real tags barely moves (2.45, then 2.35).
    """
    r = rng(8)
    n, max_len, vocab, n_tags = 128, 24, 200, 12
    x = np.zeros((n, max_len), dtype="int32")
    tags = np.zeros((n, max_len), dtype="int64")
    word_tag = r.integers(1, n_tags, vocab)
    for i, m in enumerate(r.integers(4, 15, n)):
        words = r.integers(1, vocab, m)
        x[i, max_len - m :] = words  # pad_sequences pads in front
        tags[i, max_len - m :] = word_tag[words]
    y = np.eye(n_tags, dtype="float32")[tags]  # padding: tag 0, one-hot
    vectors = (0.5 * r.normal(size=(vocab, 16))).astype("float32")
    vectors[0] = 0.0
    model = keras.Sequential(
        [
            keras.Input((max_len,), dtype="int32"),
            keras.layers.Embedding(
                vocab, 16, embeddings_initializer=keras.initializers.Constant(vectors)
            ),
            keras.layers.Bidirectional(keras.layers.LSTM(16, return_sequences=True)),
            keras.layers.TimeDistributed(
                keras.layers.Dense(n_tags, activation="softmax")
            ),
        ]
    )
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    return Thread(
        name="lstm_pos_tagger_padding_not_masked",
        url="https://github.com/aneesh-joshi/LSTM_POS_Tagger/issues/8",
        symptom="the tagger reaches about 99% accuracy, perhaps only by "
        "guessing where the padding is",
        cause="sentences padded with 0 and scored without masking",
        expected="PADDING_NOT_MASKED",
        model=model,
        x=x,
        y=y,
        fit_kwargs={"batch_size": 32, "epochs": 2},
        diagnose_args=(x, y),
    )
