"""Fixtures the callback pieces' tests share."""

import keras
import pytest

from tests.helpers import classifier


@pytest.fixture(scope="module")
def model():
    """A compiled classifier shared by the fits of one test module."""
    keras.utils.set_random_seed(0)
    model = classifier()
    model.compile("adam", "categorical_crossentropy")
    return model
