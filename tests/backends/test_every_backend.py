"""The same faults, found the same way, on TensorFlow, JAX and PyTorch.

Keras picks its backend at import, so a backend runs in its own process:
`KERAS_BACKEND=jax python -m pytest -m backends` runs every test marked
`backends` (these, the loss oracle tests, the registry's injected codes, the
pytest fixtures, the drift monitor and the demo) under JAX; `.ci/run` does so
for JAX and PyTorch after the full suite on TensorFlow. The comparison at the
end runs the scenario under the other backends in subprocesses.
"""

import importlib.util
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

import lossguard
from lossguard.diagnosis.registry import FAULTS
from lossguard.testing import same_weights
from tests.backends import scenario

HERE = Path(__file__).resolve().parent
BACKEND = keras.backend.backend()
#: Where backends differ by design, not by lossguard (docs/backends.md):
#: a sparse id outside [0, K) stops the step on TensorFlow and PyTorch (the
#: finding explains the crash) while on JAX Keras one-hot encodes it as
#: zeros and trains on (the batch statistics show it, at its step); and
#: fine-tuned embeddings move differently, since Keras' optimizers update an
#: Embedding's rows sparsely on TensorFlow and densely elsewhere, so the
#: drift crosses the threshold in another epoch; and under a Keras softmax
#: TensorFlow computes the cross-entropy from the logits (a saturated batch
#: loses the logit gap, 117 here) where JAX and PyTorch clip probabilities
#: (at most -ln(eps) = 16.12 a term): SATURATED_PREDICTIONS's numbers differ.
CODE_ONLY = {"LABELS_OUT_OF_RANGE", "EMBEDDING_DRIFT", "SATURATED_PREDICTIONS"}
#: Findings whose explanation says what this backend computes: under binary
#: cross-entropy Keras' TensorFlow backend reads the logit behind a softmax
#: over one unit (the loss trains while the output stays 1); JAX and PyTorch
#: read the constant 1 (the loss sits at 16.12 times the share of 0 labels).
TEXT_BY_BACKEND = {"SINGLE_UNIT_SOFTMAX"}
#: Findings of a scenario whose step and numbers are where float32 overflows:
#: the injected divergence grows the loss ~10x a step, and the step at which
#: it passes 3.4e38 (NONFINITE_LOSS) moves by one with each backend's rounding
#: (the EXPLODING_GRADIENTS finding before it, its norms included, agrees).
AT_OVERFLOW = {"EXPLODING_GRADIENTS": {"NONFINITE_LOSS"}}


@pytest.fixture(scope="module")
def found(request):
    """Every fault, injected and trained once on this process's backend (or
    this backend's result from the cache, computed from the same sources;
    see `scenario.cache_key`)."""
    key = scenario.cache_key(BACKEND)
    result = _cached(request, key)
    if result is None:
        result = scenario.every_fault()
        _cache(request, key, result)
    return result


def _cached(request, key):
    cache = getattr(request.config, "cache", None)  # None: -p no:cacheprovider
    return None if cache is None else cache.get(key, None)


def _cache(request, key, result):
    if getattr(request.config, "cache", None) is not None:
        request.config.cache.set(key, result)


@pytest.mark.backends
@pytest.mark.parametrize("code", list(scenario.FAULTS))
def test_each_injected_fault_is_found_in_fit(found, code):
    result = found[code]
    finding = next((f for f in result["findings"] if f["code"] == code), None)
    assert finding is not None, f"{code} not found on {BACKEND}: {result}"
    assert finding["severity"] == FAULTS[code].severity
    assert finding["evidence"], "a finding shows the numbers behind it"
    if finding["step"] is not None:  # a batch showed it: the first one
        assert (finding["epoch"], finding["phase"]) == (0, "train")
    else:  # the configuration, the model, or a crash showed it
        assert set(FAULTS[code].stages) & {"config", "model", "crash", "epoch"}


@pytest.mark.backends
def test_healthy_run_is_quiet_and_every_batch_recorded(found):
    healthy = found[scenario.HEALTHY]
    loud = [f for f in healthy["findings"] if f["severity"] != "info"]
    assert loud == [] and healthy["crashed"] is None
    assert healthy["rows"] == 64 // 16


@pytest.mark.backends
def test_training_runs_as_without_lossguard():
    """Same losses with and without the callback, from the same weights; one
    history row per batch, validation included; diagnose runs."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 64)]
    y[5] = -1.0  # a fault only the batch shows

    def fit(callbacks):
        inp = keras.Input((4,))
        model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(inp))
        same_weights(model)
        model.compile("sgd", "categorical_crossentropy")
        history = model.fit(
            x,
            y,
            batch_size=16,
            epochs=2,
            verbose=0,
            shuffle=False,
            validation_split=0.25,
            callbacks=callbacks,
        )
        return model, history.history

    _, plain = fit([])
    cb = lossguard.LossSanityCallback(action="record")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, watched = fit([cb])
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(watched[key], plain[key], rtol=1e-6)
    # Keras' running loss per batch: at each epoch's last batch, its epoch loss.
    for phase, key in (("train", "loss"), ("validation", "val_loss")):
        rows = cb.history[cb.history.phase == phase]
        last = rows.groupby("epoch").running_loss.last().to_numpy()
        np.testing.assert_allclose(last, watched[key], rtol=1e-5)
    assert not [w for w in caught if "cannot see" in str(w.message)]
    assert len(cb.history) == 2 * (3 + 1)  # 3 train + 1 validation batches
    assert sorted(set(cb.history.phase)) == ["train", "validation"]
    first = cb.report.get("NEGATIVE_LABELS")
    assert (first.epoch, first.step, first.phase) == (0, 0, "train")
    assert "NEGATIVE_LABELS" in lossguard.diagnose(model, x, y).codes


# ------------------------------------------------ the same on every backend
def _close(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-5)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_close, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return a == b


def _differences(ours, theirs):
    """What differs between two backends' results, where it must not."""
    out = []
    for code, mine in ours.items():
        other = theirs[code]
        codes = sorted(f["code"] for f in mine["findings"])
        other_codes = sorted(f["code"] for f in other["findings"])
        if codes != other_codes:
            out.append(f"{code}: codes {codes} vs {other_codes}")
            continue
        if code in CODE_ONLY:
            continue
        if mine["columns"] != other["columns"]:
            out.append(f"{code}: history columns differ")
        if mine["rows"] != other["rows"]:
            out.append(f"{code}: {mine['rows']} vs {other['rows']} history rows")
        by_code = {f["code"]: f for f in other["findings"]}
        for finding in mine["findings"]:
            twin = by_code[finding["code"]]
            keys = ("severity", "epoch", "step", "phase", "text")
            if finding["code"] in TEXT_BY_BACKEND:
                keys = keys[:-1]
            if finding["code"] in AT_OVERFLOW.get(code, ()):
                if (finding["severity"], finding["phase"]) != (
                    twin["severity"],
                    twin["phase"],
                ):
                    out.append(f"{code}/{finding['code']}: severity or phase differs")
                continue
            for key in keys:
                if finding[key] != twin[key]:
                    out.append(f"{code}/{finding['code']}: {key} differs")
            if not _close(finding["evidence"], twin["evidence"]):
                out.append(
                    f"{code}/{finding['code']}: evidence {finding['evidence']} "
                    f"vs {twin['evidence']}"
                )
    return out


@pytest.mark.parametrize("other", ["jax", "torch", "tensorflow"])
def test_same_findings_on_every_backend(found, other, request):
    """Each fault gives the same codes at the same batch with the same
    evidence (to float32 rounding) on every backend, from the same weights
    and batches."""
    if other == BACKEND:
        pytest.skip("the backend this process runs")
    if BACKEND != "tensorflow" and other != "tensorflow":
        pytest.skip("compared once, from the TensorFlow run")
    if importlib.util.find_spec(other) is None:
        pytest.skip(
            f"the {other} backend is not installed (pip install lossguard[{other}])"
        )
    key = scenario.cache_key(other)
    theirs = _cached(request, key)
    if theirs is None:
        env = {**os.environ, "KERAS_BACKEND": other, "TF_CPP_MIN_LOG_LEVEL": "3"}
        done = subprocess.run(
            [sys.executable, str(HERE / "scenario.py")],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            cwd=HERE.parents[1],
        )
        assert done.returncode == 0, done.stderr[-3000:]
        line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
        theirs = json.loads(line.removeprefix("RESULT "))
        _cache(request, key, theirs)
    assert _differences(found, theirs) == []
    assert theirs["LABELS_OUT_OF_RANGE"]["crashed"] == (
        None
        if other == "jax"
        else {"torch": "IndexError"}.get(other, "InvalidArgumentError")
    )


@pytest.mark.backends
def test_a_setup_it_cannot_watch_never_breaks_training(monkeypatch):
    """If the statistics cannot join the state Keras carries (needed on JAX
    only), fit runs as without lossguard, and one warning says what it
    cannot see and why; elsewhere the step is watched all the same."""
    from lossguard.callbacks import state

    def refuse(*args, **kwargs):
        raise RuntimeError("no room for it")

    monkeypatch.setattr(state, "attach", refuse)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(48, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 48)]

    def fit(callbacks):
        inp = keras.Input((4,))
        model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(inp))
        same_weights(model)
        model.compile("sgd", "categorical_crossentropy")
        return model.fit(
            x, y, batch_size=16, epochs=2, verbose=0, shuffle=False, callbacks=callbacks
        ).history["loss"]

    cb = lossguard.LossSanityCallback(action="record")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        watched = fit([cb])
    np.testing.assert_allclose(watched, fit([]), rtol=1e-6)
    said = [str(w.message) for w in caught if "cannot see" in str(w.message)]
    assert len(cb.history) == 2 * 3  # a row per batch either way
    if state.needs_carried_state():
        assert len(said) == 1 and "no room for it" in said[0]
        assert cb.history.running_loss.notna().all()  # Keras' loss, recorded
    else:
        assert said == [] and cb.history.rows.notna().all()


@pytest.mark.backends
def test_raise_leaves_a_model_that_trains_on():
    """action="raise" ends fit from a hook; the model carries no more state
    than Keras' own afterwards and trains on without lossguard."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 64)]
    bad = y.copy()
    bad[40] = -1.0  # batch 2
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(inp))
    model.compile("sgd", "categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    carried = [tuple(v.shape) for v in model.metrics_variables]
    cb = lossguard.LossSanityCallback(action="raise", check_every=1)
    with pytest.raises(lossguard.LossSanityError):
        model.fit(
            x, bad, batch_size=16, epochs=1, verbose=0, shuffle=False, callbacks=[cb]
        )
    assert cb.report.get("NEGATIVE_LABELS").step == 2
    assert [tuple(v.shape) for v in model.metrics_variables] == carried
    loss = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history["loss"]
    assert np.isfinite(loss).all()
    assert np.isfinite(keras.ops.convert_to_numpy(model.layers[-1].kernel)).all()


@pytest.mark.backends
def test_a_step_whose_statistics_fail_still_trains(monkeypatch):
    """If computing the statistics fails (inside the step, or, on PyTorch,
    when its kept steps are computed), the step still runs: one warning says
    why lossguard went blind, and the history keeps one row per batch."""
    from lossguard.diagnosis.collect import BatchCollector

    def refuse(*args, **kwargs):
        raise RuntimeError("write refused")

    monkeypatch.setattr(BatchCollector, "row", refuse)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 64)]
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(inp))
    model.compile("sgd", "categorical_crossentropy")
    cb = lossguard.LossSanityCallback(action="record")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[cb])
    assert np.isfinite(history.history["loss"]).all()
    said = [str(w.message) for w in caught if "cannot see" in str(w.message)]
    assert len(said) == 1 and "write refused" in said[0]
    assert len(cb.history) == 2 * 4
