"""Small real Keras models shared by the tests (built per test: they are cheap)."""

import keras
import numpy as np

V, T = 24, 5


def seq2seq(
    vocab=V,
    steps=T,
    mask_zero=True,
    activation="softmax",
    units=None,
    dtype=None,
    regularizer=None,
):
    """A tiny encoder-decoder-shaped token model: ids -> per-step distribution."""
    inp = keras.Input((steps,), dtype="int32")
    h = keras.layers.Embedding(vocab, 8, mask_zero=mask_zero)(inp)
    h = keras.layers.LSTM(12, return_sequences=True)(h)
    out = keras.layers.Dense(
        units or vocab,
        activation=activation,
        dtype=dtype,
        kernel_regularizer=regularizer,
    )(h)
    return keras.Model(inp, out)


def token_data(n=40, vocab=V, steps=T, seed=0, pad_tail=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, vocab, (n, steps))
    y = rng.integers(1, vocab, (n, steps))
    if pad_tail:
        x[:, -pad_tail:] = 0
        y[:, -pad_tail:] = 0
    return x, y


def onehot(ids, vocab=V):
    return np.eye(vocab, dtype="float32")[ids]


def classifier(units=3, activation="softmax", features=4, hidden="relu"):
    inp = keras.Input((features,))
    h = keras.layers.Dense(8, activation=hidden)(inp)
    return keras.Model(inp, keras.layers.Dense(units, activation=activation)(h))
