"""A tiny, real GloVe seq2seq with any fault of FAULTS.md injected on demand.

`tiny_seq2seq()` returns a compiled encoder-decoder over the bundled GloVe
subset, with data: the task is to reverse a short English sentence (token
ids), the decoder is fed `[<start>] + target[:-1]`, targets are sparse ids,
padding is masked. It is healthy: `diagnose` and `LossSanityCallback` report
no error or warning on it. `tiny_seq2seq(fault="NEGATIVE_LABELS")` builds the
same model and data with that one fault, the way users make it.

Used by the pytest plugin's `lossguard_tiny_seq2seq` fixture, the examples
and lossguard's own tests.
"""

from __future__ import annotations

import numpy as np

#: Sentence length (encoder and decoder steps).
STEPS = 6
#: Real words from the bundled GloVe subset (frequent, lower-case).
WORDS = slice(60, 100)

FAULTS = (
    "NEGATIVE_LABELS",
    "LABEL_SUM_NOT_ONE",
    "EMPTY_LABEL_ROWS",
    "LABELS_OUT_OF_RANGE",
    "NEGATIVE_WEIGHTS",
    "NEGATIVE_AUX_LOSS",
    "LOSS_UNBOUNDED_BELOW",
    "NONFINITE_LOSS",
    "PREDICTIONS_NOT_PROBABILITIES",
    "PROBABILITIES_AS_LOGITS",
    "SINGLE_UNIT_CATEGORICAL",
    "INVALID_LABEL_SMOOTHING",
    "DECODER_TARGET_NOT_SHIFTED",
    "PADDING_NOT_MASKED",
    "LOW_PRECISION_SATURATION",
    "EMBEDDING_OOV_ROWS",
    "EMBEDDING_MISALIGNED",
    "EMBEDDING_DRIFT",
)


def vocabulary(glove=None) -> list:
    """The tiny task's words by id: padding "", "<start>", then 40 real words."""
    from lossguard.glove import bundled_glove

    glove = glove or bundled_glove()
    return ["", "<start>", *glove.index[WORDS]]


def tiny_data(n=64, seed=0, min_len=3, vocab_size=None):
    """(encoder ids, decoder input ids, target ids): reverse the sentence."""
    vocab_size = vocab_size or 2 + (WORDS.stop - WORDS.start)
    rng = np.random.default_rng(seed)
    source = np.zeros((n, STEPS), "int32")
    target = np.zeros((n, STEPS), "int32")
    for i in range(n):
        length = rng.integers(min_len, STEPS + 1)
        words = rng.integers(2, vocab_size, length)
        source[i, :length] = words
        target[i, :length] = words[::-1]
    decoder = np.concatenate([np.ones((n, 1), "int32"), target[:, :-1]], axis=1)
    decoder[target == 0] = 0  # no token after the end
    return source, decoder, target


def _negative_bonus_layer():
    import keras

    class NegativeBonus(keras.layers.Layer):
        """An 'entropy bonus' with the wrong sign: add_loss(-5 - mean(h^2))."""

        def call(self, h):
            self.add_loss(-5.0 - keras.ops.mean(h**2))
            return h

    return NegativeBonus(name="entropy_bonus")


def tiny_seq2seq(fault=None, *, n=64, seed=0, glove=None):
    """A compiled GloVe encoder-decoder and its data, optionally with a fault.

    Args:
        fault: None for the healthy setup, or a code of FAULTS.md (see
            `FAULTS`). `EMBEDDING_DRIFT` gives a fine-tuned embedding and a
            high learning rate: fit it with `EmbeddingDriftMonitor` to see it.
        n: Number of sentences.
        seed: Seeds Keras' weights and the data.
        glove: The `GloveVectors` (default: the bundled subset).

    Returns:
        `(model, x, y)` with `x = [encoder_ids, decoder_ids]`.

    Raises:
        ValueError: For an unknown fault, naming the known ones.
    """
    if fault is not None and fault not in FAULTS:
        raise ValueError(
            f"Unknown `fault` {fault!r}. Pass None or one of: {', '.join(FAULTS)}."
        )
    import keras

    from lossguard.diagnosis.embeddings import remember_source
    from lossguard.glove import bundled_glove, embedding_matrix, glove_embedding

    keras.utils.set_random_seed(seed)
    glove = glove or bundled_glove()
    vocab = vocabulary(glove)
    if fault == "EMBEDDING_OOV_ROWS":
        vocab = vocab + [f"zq{i}xv" for i in range(20)]  # tokens GloVe lacks
    size = len(vocab)
    source, decoder, target = tiny_data(
        n, seed, min_len=1 if fault == "PADDING_NOT_MASKED" else 3, vocab_size=size
    )
    if fault == "PADDING_NOT_MASKED":
        target[:, 2:] = 0  # mostly padding: 1-2 word answers padded to 6
        decoder[:, 3:] = 0
        source[:, 2:] = 0
    masked = fault not in ("EMPTY_LABEL_ROWS", "PADDING_NOT_MASKED")
    if fault == "EMBEDDING_MISALIGNED":
        matrix, _ = embedding_matrix([v for v in vocab if v != "<start>"], glove)
        matrix = np.vstack([matrix, np.zeros((1, glove.dim), "float32")])
        embed = keras.layers.Embedding(
            size,
            glove.dim,
            embeddings_initializer=keras.initializers.Constant(matrix),
            trainable=False,
            mask_zero=True,
            name="glove_embedding",
        )
        remember_source(embed, vocab, glove)  # what the tokenizer uses
    else:
        embed, _ = glove_embedding(
            vocab, glove, trainable=fault == "EMBEDDING_DRIFT", mask_zero=masked
        )

    enc_in = keras.Input((STEPS,), dtype="int32", name="encoder_ids")
    dec_in = keras.Input((STEPS,), dtype="int32", name="decoder_ids")
    _, h, c = keras.layers.LSTM(32, return_state=True, name="encoder")(embed(enc_in))
    seq = keras.layers.LSTM(32, return_sequences=True, name="decoder")(
        embed(dec_in), initial_state=[h, c]
    )
    if fault == "NEGATIVE_AUX_LOSS":
        seq = _negative_bonus_layer()(seq)
    units, activation, dtype = size, "softmax", None
    if fault == "NEGATIVE_LABELS":
        units = glove.dim  # GloVe vectors as targets, through a softmax
    elif fault == "SINGLE_UNIT_CATEGORICAL":
        units = 1
    elif fault == "PREDICTIONS_NOT_PROBABILITIES":
        activation = None
    elif fault == "LOW_PRECISION_SATURATION":
        dtype = "float16"
    dense = keras.layers.Dense(units, activation=activation, dtype=dtype, name="next")
    out = dense(seq)
    model = keras.Model([enc_in, dec_in], out, name="tiny_seq2seq")
    if fault == "LOW_PRECISION_SATURATION":
        signs = np.sign(np.random.default_rng(seed).normal(size=dense.kernel.shape))
        dense.kernel.assign(3000.0 * signs)  # logits beyond float16's range

    y = target
    loss = "sparse_categorical_crossentropy"
    onehot = np.eye(size, dtype="float32")
    if fault == "NEGATIVE_LABELS":
        matrix, _ = embedding_matrix(vocab, glove)
        y, loss = matrix[target], "categorical_crossentropy"
    elif fault == "LABEL_SUM_NOT_ONE":
        y = onehot[target] + onehot[(target + 1) % size]  # two-hot rows
        y[target == 0] = 0
        loss = "categorical_crossentropy"
    elif fault == "EMPTY_LABEL_ROWS":
        y = onehot[target]
        y[target == 0] = 0  # padding one-hot encoded as zeros, unmasked
        loss = "categorical_crossentropy"
    elif fault == "LABELS_OUT_OF_RANGE":
        y = target.copy()
        y[0, 0] = size + 3  # an id past the vocabulary
    elif fault == "NONFINITE_LOSS":
        y = onehot[target]
        y[1, 0, 2] = np.nan
        loss = "categorical_crossentropy"
    elif fault == "LOSS_UNBOUNDED_BELOW":
        y, loss = onehot[target], "cosine_similarity"
    elif fault == "PROBABILITIES_AS_LOGITS":
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    elif fault == "SINGLE_UNIT_CATEGORICAL":
        y, loss = np.ones((n, STEPS, 1), "float32"), "categorical_crossentropy"
    elif fault == "INVALID_LABEL_SMOOTHING":
        y = onehot[target]
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=1.5)
    elif fault == "DECODER_TARGET_NOT_SHIFTED":
        decoder = target.copy()
    optimizer = keras.optimizers.Adam(0.05 if fault == "EMBEDDING_DRIFT" else 0.01)
    if fault == "LOW_PRECISION_SATURATION":
        optimizer = keras.optimizers.SGD(0.0)  # keep the saturating weights
    model.compile(
        optimizer,
        loss,
        loss_weights=[-1.0] if fault == "NEGATIVE_WEIGHTS" else None,
    )
    return model, [source, decoder], y
