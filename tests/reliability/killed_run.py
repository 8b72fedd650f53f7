"""Run by test_crash.py: trains with log_path and waits to be SIGKILLed.

python killed_run.py LOG.csv
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import lossguard  # noqa: E402


class Hang(keras.callbacks.Callback):
    """After batch 12 of epoch 0, say so and wait to be killed mid-epoch."""

    def on_train_batch_end(self, batch, logs=None):
        if batch == 12:
            print("READY", flush=True)
            time.sleep(600)


rng = np.random.default_rng(0)
x = rng.normal(size=(400, 4)).astype("float32")
y = rng.integers(0, 3, 400)
inp = keras.Input((4,))
model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(inp))
model.compile("adam", "sparse_categorical_crossentropy")
watch = lossguard.LossSanityCallback(
    action="record", log_path=sys.argv[1], flush_every=5
)
model.fit(x, y, batch_size=10, epochs=1, verbose=0, callbacks=[watch, Hang()])
