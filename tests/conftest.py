"""Shared fixtures: TensorFlow is imported once, small models are shared."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# PyTorch's eager ops use an OpenMP thread per core in every process: two test
# workers on two cores then spin against each other (a 300-step fit measured
# 25 s instead of 2 s). One thread per worker, set before PyTorch loads.
if os.environ.get("PYTEST_XDIST_WORKER") and (
    os.environ.get("KERAS_BACKEND") == "torch"
):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

settings.register_profile("lossguard", max_examples=30, deadline=None)
settings.load_profile("lossguard")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


#: Keras' backend for this process (it picks one at import).
BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")


#: At most this many test workers for `-n auto`: a worker imports TensorFlow
#: (or JAX, or PyTorch) and holds its models, about 1 GB; the suite's tests
#: are mostly single-threaded Python around small models, so on 2 cores two
#: workers halve its wall time.
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config):
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def pytest_report_header(config):
    return f"keras backend: {BACKEND}"


def pytest_collection_modifyitems(config, items):
    """Under another backend than TensorFlow only the tests marked `backends`
    run (the rest use TensorFlow itself: tf.data, tf.distribute, graphs)."""
    if BACKEND == "tensorflow":
        return
    keep = [item for item in items if item.get_closest_marker("backends")]
    dropped = [item for item in items if not item.get_closest_marker("backends")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
