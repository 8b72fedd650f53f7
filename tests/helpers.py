"""Small real Keras models shared by the tests (built per test: they are cheap)."""

import socket
import subprocess
import warnings

import keras
import numpy as np

import lossguard

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


def statistics_row(spec, y, p, w=None, *, loss, aux=0.0, inputs=None, prefix=""):
    """The row `check_batch` reads, for a hand-made batch of one output: the
    output's statistics (`output_statistics` on `y`, `p`, `w`, as floats,
    keys after `prefix`: "name/" for one of several outputs) and the model's
    (`loss` the total, `aux` the extra terms in it)."""
    from lossguard.diagnosis.statistics import output_statistics

    own = output_statistics(
        np.asarray(y), np.asarray(p, "float32"), w, spec, inputs=inputs
    )
    row = {
        prefix + key: float(keras.ops.convert_to_numpy(value))
        for key, value in own.items()
    }
    row.update(
        {
            "loss": float(loss),
            "data_loss": float(loss) - aux,
            "aux_loss": float(aux),
            "x_nonfinite": 0.0,
            "aux_nonfinite": 0.0,
            "aux:other": float(aux),
        }
    )
    return row


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


def class_data(n=40, classes=3, features=4, seed=0):
    """Features and one-hot labels for `classifier`: (x, y) as float32."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = np.eye(classes, dtype="float32")[rng.integers(0, classes, n)]
    return x, y


class RecordingSink:
    """A sink (`lossguard.callbacks.sinks.Sink`'s interface) that keeps each
    call it is given, in order, as `(name, *args)`; it raises `RuntimeError`
    on the call named `fail_on`."""

    def __init__(self, fail_on=None):
        self.calls = []
        self.fail_on = fail_on

    def _called(self, name, *args):
        self.calls.append((name, *args))
        if name == self.fail_on:
            raise RuntimeError(f"{name} failed")

    def start(self, model):
        self._called("start", model)

    def write_block(self, block):
        self._called("write_block", block)

    def finding(self, finding, report, step):
        self._called("finding", finding, report, step)

    def flush(self):
        self._called("flush")

    def end(self, report):
        self._called("end", report)

    @property
    def blocks(self):
        """The blocks written, in order."""
        return [args[0] for name, *args in self.calls if name == "write_block"]


def watched_fit(
    model, x, y, *, action="record", options=None, keras_warnings=True, **fit_kwargs
):
    """Fit `model` as the tests do (unshuffled, silent, batches of 10, one epoch)
    under a LossSanityCallback(action=action, **options); return the callback.

    keras_warnings=False silences Keras' own warnings (a softmax over one unit,
    a dataset that ran out) for tests that build those setups on purpose.
    """
    callback = lossguard.LossSanityCallback(action=action, **(options or {}))
    fit_kwargs = {"batch_size": 10, "epochs": 1, **fit_kwargs}
    with warnings.catch_warnings():
        if not keras_warnings:
            warnings.simplefilter("ignore")
        model.fit(x, y, verbose=0, shuffle=False, callbacks=[callback], **fit_kwargs)
    return callback


def loud(report):
    """The findings a user would be alerted by: errors and warnings."""
    return [f for f in report if f.severity in ("error", "warning")]
