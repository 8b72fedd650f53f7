"""Every catalogued fault injected into the tiny GloVe seq2seq, trained with
the callback: what was found, normalised so backends can be compared.

Imported by the tests on the backend they run on, and run as a script
(`KERAS_BACKEND=jax python tests/backends/scenario.py`) to print the same
result as JSON for another backend.

A result is cached in pytest's cache under `cache_key(backend)`, a hash of
every file of the lossguard package, this script and the versions of the
packages the run depends on: `.ci/run` computes each backend's result once
(the TensorFlow suite runs the other backends in subprocesses; the JAX and
PyTorch runs after it find their own results and TensorFlow's there).
`python -m pytest --cache-clear` computes them again.
"""

import hashlib
import importlib.metadata
import json
import math
import re
import sys
import warnings
from pathlib import Path

import lossguard
from lossguard.diagnosis.registry import FAULTS as REGISTRY
from lossguard.testing import FAULTS, NEEDS_INTERNALS, tiny_seq2seq

#: Faults only trained weights show: fit long enough for them, with the monitor.
AFTER_TRAINING = ("EMBEDDING_DRIFT",)
#: Faults read over many training steps: 256 batches of one sentence each.
OVER_STEPS = tuple(c for c in FAULTS if REGISTRY[c].stages == ("trend",))
HEALTHY = "healthy"


def run(code):
    """Fit the tiny seq2seq with `code` injected (or none, for HEALTHY)."""
    n, batch_size = (256, 1) if code in OVER_STEPS else (64, 16)
    model, x, y = tiny_seq2seq(None if code == HEALTHY else code, n=n)
    # The healthy run reads the internals too: they must stay quiet there.
    internals = code in NEEDS_INTERNALS or code == HEALTHY
    watch = lossguard.LossSanityCallback(
        action="record", check_every=1, internals=internals
    )
    callbacks = [watch]
    epochs = 1
    if code in AFTER_TRAINING:
        callbacks.append(
            lossguard.EmbeddingDriftMonitor(threshold=0.95, action="record")
        )
        epochs = 4
    crashed = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model.fit(
                x,
                y,
                batch_size=batch_size,
                epochs=epochs,
                verbose=0,
                shuffle=False,
                callbacks=callbacks,
            )
        except Exception as error:  # noqa: BLE001 - a crash the fault causes
            crashed = type(error).__name__
    findings = [f for cb in callbacks for f in cb.findings]
    return {
        "findings": [normalised(f) for f in findings],
        "crashed": crashed,
        "rows": len(watch.history),
        "columns": list(watch.history.columns),
    }


def normalised(finding):
    """What must agree across backends: the code, where, the evidence
    (numbers as floats; the text of a backend's own error is left out) and
    the explanation (its numbers masked: they are the evidence's)."""
    evidence = {
        key: _value(value)
        for key, value in finding.evidence.items()
        if key != "error"  # TensorFlow's and PyTorch's own wording
    }
    text = " ".join((finding.message, finding.explanation, finding.fix))
    return {
        "text": re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", text),
        "code": finding.code,
        "severity": finding.severity,
        "epoch": finding.epoch,
        "step": finding.step,
        "phase": finding.phase,
        "evidence": evidence,
    }


def _value(value):
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, (list, tuple)):
        return [_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _value(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return _value(value.tolist())
    return str(value)


#: The packages whose versions a backend's result depends on.
PACKAGES = {
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "jax": ("jax", "jaxlib"),
    "torch": ("torch",),
}


def cache_key(backend):
    """Where `backend`'s result is cached: it changes with any file of the
    package, this script, or a version of Python, Keras, NumPy or the
    backend."""
    here = Path(__file__).resolve()
    package = here.parents[2] / "lossguard"
    digest = hashlib.sha256(sys.version.encode())
    files = sorted(p for p in package.rglob("*") if p.is_file() and p.suffix != ".pyc")
    for path in [*files, here]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for name in ("keras", "numpy", *PACKAGES[backend]):
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"{name}={version};".encode())
    return f"lossguard/scenario/{backend}/{digest.hexdigest()[:20]}"


def every_fault():
    return {code: run(code) for code in (HEALTHY, *FAULTS)}


if __name__ == "__main__":
    print("RESULT " + json.dumps(every_fault()))
