"""lossguard on Keras' other backends: PyTorch is watched like TensorFlow;
on JAX, which it cannot watch yet, training runs as without it.

Each check runs in a fresh process with `KERAS_BACKEND` set (Keras picks its
backend at import). A backend that is not installed is skipped, saying so.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import warnings
    import numpy as np
    import keras
    import lossguard

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 64)]
    y[5] = -1.0  # a fault the configuration cannot show

    def fit(callbacks):
        keras.utils.set_random_seed(0)
        inp = keras.Input((4,))
        model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(inp))
        model.compile("sgd", "categorical_crossentropy", loss_weights=[-1.0])
        history = model.fit(
            x, y, batch_size=16, epochs=2, verbose=0, shuffle=False,
            validation_split=0.25, callbacks=callbacks,
        )
        return history.history["loss"]

    plain = fit([])
    cb = lossguard.LossSanityCallback(action="record")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        watched = fit([cb])
    np.testing.assert_allclose(watched, plain, rtol=1e-6)
    said = [str(w.message) for w in caught if "lossguard cannot see" in str(w.message)]
    print("WARNINGS", len(said), said[0][:80] if said else "")
    print("ROWS", len(cb.history), sorted(set(cb.history.phase)))
    print("CODES", sorted(cb.report.codes))
    first = cb.report.get("NEGATIVE_LABELS")
    if first is not None:
        print("FIRST", first.epoch, first.step, first.phase)
    print("DIAGNOSE", sorted(lossguard.diagnose(cb.model, x, y).codes))
    """
)

#: What each backend gives: (lossguard's warnings, finding codes in fit).
EXPECTED = {
    "jax": (1, ["NEGATIVE_WEIGHTS"]),
    "torch": (0, ["LABEL_SUM_NOT_ONE", "NEGATIVE_LABELS", "NEGATIVE_WEIGHTS"]),
}


@pytest.mark.parametrize("backend", sorted(EXPECTED))
def test_fit_runs_as_without_lossguard_and_says_what_it_cannot_see(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"the {backend} backend is not installed (pip install {backend})")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    warned, codes = EXPECTED[backend]
    assert f"WARNINGS {warned}" in out
    if warned:
        assert "lossguard cannot see the batches on this backend" in out
    else:  # watched: the -1 row of batch 0, in training
        assert "FIRST 0 0 train" in out
    assert "ROWS 8 ['train', 'validation']" in out  # 3 + 1 batches, 2 epochs
    assert f"CODES {codes}" in out  # the configuration is checked everywhere
    diagnosed = ["LABEL_SUM_NOT_ONE", "NEGATIVE_LABELS", "NEGATIVE_WEIGHTS"]
    assert f"DIAGNOSE {diagnosed}" in out  # diagnose runs on every backend
