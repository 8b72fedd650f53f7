"""Small real Keras models shared by the tests (built per test: they are cheap)."""

import socket
import subprocess

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


def value_and_grad(fn, x):
    """`fn(x)` and the gradient of its sum with respect to `x`, as NumPy
    arrays, with the autodiff of whichever backend Keras runs on."""
    backend = keras.backend.backend()
    x = np.asarray(x, "float32")
    if backend == "tensorflow":
        import tensorflow as tf

        var = tf.Variable(x)
        with tf.GradientTape() as tape:
            value = fn(var)
            total = tf.reduce_sum(value)
        return np.asarray(value), tape.gradient(total, var).numpy()
    if backend == "jax":
        import jax

        value = fn(x)
        grad = jax.grad(lambda v: keras.ops.sum(fn(v)))(x)
        return np.asarray(value), np.asarray(grad)
    if backend == "torch":
        import torch

        var = torch.tensor(x, requires_grad=True)
        value = fn(var)
        value.sum().backward()
        return value.detach().cpu().numpy(), var.grad.cpu().numpy()
    raise NotImplementedError(f"no autodiff helper for the {backend} backend")


def free_ports(n):
    """`n` TCP ports free on localhost right now."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def communicate_all(procs, timeout):
    """(return code, output) of each process; all are killed if one hangs."""
    results = []
    for proc in procs:
        try:
            log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise
        results.append((proc.returncode, log))
    return results
