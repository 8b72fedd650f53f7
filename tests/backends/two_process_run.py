"""Run by test_two_processes.py: lossguard under JAX's distributed runtime.

python two_process_run.py single OUT.json DIR
python two_process_run.py worker OUT.json DIR PROCESS_ID PORT

`single` trains on one process with the global batch; `worker` is one of
two processes training together with `keras.distribution.DataParallel`, each
on its own shard (every global batch of 16 is process 0's 8 rows, then
process 1's 8). Each trains the tiny GloVe seq2seq twice: healthy, and with
one sparse label past the vocabulary in process 1's half of global batch 2.
"""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

mode, out, folder = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "worker":
    import jax

    process_id, port = int(sys.argv[4]), int(sys.argv[5])
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=2,
        process_id=process_id,
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402

import lossguard  # noqa: E402
from lossguard.testing import tiny_seq2seq  # noqa: E402

GLOBAL, LOCAL = 16, 8
BAD = 2 * GLOBAL + LOCAL + 3  # global batch 2, process 1's row 3


def shard(array, process_id):
    """This process's rows: its half of every global batch."""
    rows = [
        array[start + process_id * LOCAL : start + (process_id + 1) * LOCAL]
        for start in range(0, len(array), GLOBAL)
    ]
    return np.concatenate(rows)


def run(fault, process_id=None):
    model, (enc, dec), y = tiny_seq2seq(n=64)
    y = np.array(y)
    if fault:
        y[BAD, 1] = 45  # the vocabulary has 42 ids
    batch = GLOBAL
    if process_id is not None:
        enc, dec, y = (shard(a, process_id) for a in (enc, dec, y))
        batch = LOCAL
    tag = f"{'bad' if fault else 'healthy'}{'' if process_id is None else process_id}"
    cb = lossguard.LossSanityCallback(
        action="record",
        log_path=os.path.join(folder, f"{tag}.csv"),
        tensorboard_dir=os.path.join(folder, f"tb_{tag}"),
    )
    model.fit(
        [enc, dec],
        y,
        batch_size=batch,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[cb],
    )
    return {
        "findings": [
            {
                "code": f.code,
                "severity": f.severity,
                "epoch": f.epoch,
                "step": f.step,
                "phase": f.phase,
                "evidence": {k: str(v) for k, v in f.evidence.items()},
            }
            for f in cb.findings
        ],
        "loss": [float(v) for v in cb.history.loss],
        "rows": [float(v) for v in cb.history.rows],
    }


if mode == "single":
    result = {"healthy": run(False), "bad": run(True)}
else:
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(
            device_mesh=keras.distribution.DeviceMesh(
                (2,), ["batch"], devices=jax.devices()
            ),
            auto_shard_dataset=False,
        )
    )
    result = {
        "devices": len(jax.devices()),
        "healthy": run(False, process_id),
        "bad": run(True, process_id),
    }
with open(out, "w") as f:
    json.dump(result, f)
