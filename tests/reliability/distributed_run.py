"""Run by test_distributed.py in a fresh process (devices are fixed at start).

python distributed_run.py mirrored OUT.json
python distributed_run.py worker OUT.json LOG.csv   (TF_CONFIG set by caller)
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

mode, out = sys.argv[1], sys.argv[2]
if mode == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402

import lossguard  # noqa: E402

V, T = 12, 4


def build():
    keras.utils.set_random_seed(0)
    inp = keras.Input((T,), dtype="int32")
    h = keras.layers.Embedding(V, 8, mask_zero=True)(inp)
    h = keras.layers.LSTM(8, return_sequences=True)(h)
    out = keras.layers.Dense(V, activation="softmax")(h)
    model = keras.Model(inp, out)
    model.compile("adam", "categorical_crossentropy")
    return model


def data():
    rng = np.random.default_rng(0)
    x = rng.integers(1, V, (40, T))
    y = np.eye(V, dtype="float32")[rng.integers(1, V, (40, T))]
    y[20:30, -1] = -1.0  # batch 2 of 4 has a -1 padding row
    y[21, 1] = 0.0  # and one empty row
    return x, y


def fit(model, log_path=None):
    x, y = data()
    cb = lossguard.LossSanityCallback(action="record", log_path=log_path)
    model.fit(x, y, batch_size=10, shuffle=False, verbose=0, callbacks=[cb])
    return {
        "findings": [
            {"code": f.code, "step": f.step, "evidence": f.evidence}
            for f in cb.findings
        ],
        "loss": cb.history.loss.tolist(),
        "rows": cb.history.rows.tolist(),
        "label_min": cb.history.label_min.tolist(),
    }


if mode == "mirrored":
    single = fit(build())
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = build()
    result = {"single": single, "replicas": strategy.num_replicas_in_sync}
    result["mirrored"] = fit(model)
elif mode == "plain-worker":
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = build()
    x, y = data()
    model.fit(x, y, batch_size=10, shuffle=False, verbose=0)
    result = {"replicas": strategy.num_replicas_in_sync}
else:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = build()
    result = {"replicas": strategy.num_replicas_in_sync}
    result["run"] = fit(model, log_path=sys.argv[3])
with open(out, "w") as handle:
    json.dump(result, handle, default=str)
