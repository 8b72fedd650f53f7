"""What each Keras backend's trainer does that lossguard depends on.

Each test pins one fact of docs/backends.md on the backend this process runs
(`KERAS_BACKEND=jax|torch python -m pytest -m backends`); if Keras changes
one, the test names it before a user meets it.
"""

import threading

import keras
import numpy as np
import pytest

import lossguard
from lossguard.keras_compat import get_mask
from tests.backends.aligned import misaligned

pytestmark = pytest.mark.backends
BACKEND = keras.backend.backend()
X = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
Y = np.eye(3, dtype="float32")[np.random.default_rng(1).integers(0, 3, 64)]


def _model(**compile_kwargs):
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(inp))
    model.compile("sgd", "categorical_crossentropy", **compile_kwargs)
    return model


def test_compute_loss_on_the_instance_is_what_the_steps_call():
    """Every trainer calls `model.compute_loss` (an instance attribute wins)
    in its train and test steps: once per trace where the step is compiled
    (TensorFlow's tf.function, JAX's jit), once per step where it is eager
    (PyTorch)."""
    model = _model()
    calls = []
    original = model.compute_loss

    def compute_loss(*args, **kwargs):
        calls.append(kwargs.get("training"))
        return original(*args, **kwargs)

    model.compute_loss = compute_loss
    model.fit(X, Y, batch_size=16, epochs=2, verbose=0, validation_split=0.25)
    steps = 2 * 3, 2 * 1  # train, validation
    if BACKEND == "torch":  # (and once more for the first validation batch)
        assert calls.count(True) == steps[0] and calls.count(False) >= steps[1]
    else:  # traced: a handful of calls, whatever the number of steps
        assert 1 <= calls.count(True) <= 2 and 1 <= calls.count(False) <= 2


def test_train_function_signature():
    """TensorFlow and PyTorch call `train_function(data)`; JAX calls
    `train_function(state, data)` and gets `(logs, state)` back: the state is
    the trainable, non-trainable, optimizer and metric variables' values."""
    model = _model()
    seen = []
    model.make_train_function()
    inner = model.train_function

    def train_function(*args):
        seen.append(len(args))
        return inner(*args)

    model.train_function = train_function
    model.fit(X, Y, batch_size=32, epochs=1, verbose=0)
    assert set(seen) == ({2} if BACKEND == "jax" else {1})


def test_steps_per_execution():
    """TensorFlow loops over the steps inside one compiled call, JAX in a
    Python loop of jitted steps; both call the batch hooks once per call.
    PyTorch refuses steps_per_execution > 1. lossguard records every step."""
    if BACKEND == "torch":
        with pytest.raises(ValueError, match="steps_per_execution"):
            _model(steps_per_execution=2).fit(X, Y, batch_size=16, verbose=0)
        return
    model = _model(steps_per_execution=2)
    hooks = []
    counter = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: hooks.append(batch)
    )
    cb = lossguard.LossSanityCallback(action="record")
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[cb, counter])
    assert len(hooks) == 2 and len(cb.history) == 4


def test_jit_compile_default():
    """With jit_compile="auto", JAX compiles the step with XLA; TensorFlow
    traces a tf.function (XLA only where "auto" finds a GPU, or with
    jit_compile=True); PyTorch runs eagerly."""
    model = _model()
    model.fit(X, Y, batch_size=32, epochs=1, verbose=0)
    assert bool(model.jit_compile) is (BACKEND == "jax")


class _Threads(keras.callbacks.Callback):
    async_safe = True

    def __init__(self):
        super().__init__()
        self.begin, self.end = set(), set()

    def on_train_batch_begin(self, batch, logs=None):
        self.begin.add(threading.current_thread() is threading.main_thread())

    def on_train_batch_end(self, batch, logs=None):
        self.end.add(threading.current_thread() is threading.main_thread())


def test_batch_hooks_threads():
    """With every callback `async_safe`, JAX and PyTorch run the batch-end
    hooks in a worker thread (they may lag the steps); TensorFlow runs them
    on the loop's thread. Begin hooks run on the loop's thread everywhere:
    lossguard syncs JAX's state only there."""
    threads = _Threads()
    _model().fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[threads])
    assert threads.begin == {True}
    assert threads.end == ({True} if BACKEND == "tensorflow" else {False})


class _Weights(keras.callbacks.Callback):
    def set_model(self, model):
        super().set_model(model)
        self.raw = model  # a reference that does not sync

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 2:
            kernel = self.raw.layers[-1].kernel
            self.raw_readable = kernel._value is not None if BACKEND == "jax" else True
            self.synced = keras.ops.convert_to_numpy(
                self.model.layers[-1].kernel  # Callback.model syncs on JAX
            ).copy()


def test_jax_state_lives_outside_the_variables_during_fit():
    """JAX: during an epoch the variables are emptied and the state travels
    through the step; `Callback.model` writes it back (jax_state_sync) on
    every access, so lossguard's hooks keep their own reference and sync
    only when they read. Keras syncs before validation and each epoch end."""
    probe = _Weights()
    model = _model()
    before = keras.ops.convert_to_numpy(model.layers[-1].kernel).copy()
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[probe])
    assert probe.raw_readable is (BACKEND != "jax")
    assert not np.allclose(probe.synced, before)  # two steps in


def test_masks_reach_lossguard_on_every_backend():
    """Keras attaches a mask as `_keras_mask` where the tensor type allows
    (TensorFlow's graph tensors, PyTorch's tensors) and in its global state
    otherwise (JAX's tracers, inside the jitted step):
    `lossguard.keras_compat.get_mask` reads both."""
    inp = keras.Input((4,), dtype="int32")
    h = keras.layers.Embedding(10, 4, mask_zero=True)(inp)
    model = keras.Model(inp, keras.layers.Dense(5, activation="softmax")(h))
    model.compile("sgd", "sparse_categorical_crossentropy")
    seen = {}
    original = model.compute_loss

    def compute_loss(x=None, y=None, y_pred=None, *args, **kwargs):
        seen["attribute"] = hasattr(y_pred, "_keras_mask")
        seen["mask"] = get_mask(y_pred) is not None
        return original(x, y, y_pred, *args, **kwargs)

    model.compute_loss = compute_loss
    ids = np.array([[1, 2, 0, 0]] * 8)
    model.fit(ids, ids, batch_size=8, epochs=1, verbose=0)
    assert seen == {"attribute": BACKEND != "jax", "mask": True}


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.data is TensorFlow's")
def test_tensorflow_shares_a_generators_aligned_arrays():
    """Keras trains a generator on TensorFlow through `tf.data.Dataset.
    from_generator(...).prefetch(...)`; tf.data shares the memory of an
    array aligned to 64 bytes (it copies any other): a generator that
    refills the same arrays then changes batches already prefetched, and
    the model trains on them (lossguard's rows show those batches)."""
    import tensorflow as tf

    changed = {}
    for offset in (0, 16):
        buffer = misaligned((32, 5), offset)

        def batches(buffer=buffer):
            for i in range(40):
                buffer[:] = i
                yield buffer

        spec = tf.TensorSpec((32, 5), tf.float32)
        data = tf.data.Dataset.from_generator(batches, output_signature=spec)
        changed[offset] = 0
        for i, batch in enumerate(data.prefetch(4)):
            threading.Event().wait(0.002)  # the prefetch runs ahead
            changed[offset] += int(not (batch.numpy() == i).all())
    assert changed[0] > 0 and changed[16] == 0, changed
