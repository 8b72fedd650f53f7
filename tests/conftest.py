"""Shared fixtures: TensorFlow is imported once, small models are shared."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

settings.register_profile("lossguard", max_examples=30, deadline=None)
settings.load_profile("lossguard")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
