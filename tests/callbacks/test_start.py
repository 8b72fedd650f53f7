"""The checks a run starts with (`lossguard/callbacks/start.py`): once per set
of output specs, with the vocabulary and vectors when given, and the rest
still checked when those do not fit the model."""

import keras
import pandas as pd
import pytest

from lossguard.callbacks.start import StartChecks
from lossguard.diagnosis.specs import output_specs
from lossguard.glove import GloveVectors
from tests.helpers import V, classifier, seq2seq

pytestmark = pytest.mark.backends


@pytest.fixture(scope="module")
def smoothed():
    """A token model with an Embedding of 8 dims, compiled with a
    label_smoothing that cannot work (a fault the configuration shows)."""
    keras.utils.set_random_seed(0)
    model = seq2seq()
    model.compile("adam", keras.losses.CategoricalCrossentropy(label_smoothing=1.5))
    return model


def codes(findings):
    return [f.code for f in findings]


def test_the_checks_run_once_per_set_of_specs(smoothed):
    said = []
    checks = StartChecks(None, None, said.append)
    specs = output_specs(smoothed)
    assert codes(checks.run(smoothed, specs)) == ["INVALID_LABEL_SMOOTHING"]
    assert checks.known == {"INVALID_LABEL_SMOOTHING"}
    assert checks.run(smoothed, specs) == []  # already checked: said once
    assert checks.known == {"INVALID_LABEL_SMOOTHING"}  # still known
    # The specs refined by a first batch are a new set: checked again.
    assert codes(checks.run(smoothed, list(specs))) == ["INVALID_LABEL_SMOOTHING"]
    checks.reset()  # a new run
    assert codes(checks.run(smoothed, specs)) == ["INVALID_LABEL_SMOOTHING"]
    assert said == []


def test_known_codes_are_those_of_the_last_specs_checked():
    healthy = classifier()
    healthy.compile("adam", "sparse_categorical_crossentropy")
    one_unit = classifier(units=1, activation="sigmoid")
    one_unit.compile("adam", "categorical_crossentropy")
    said = []
    checks = StartChecks(None, None, said.append)
    assert codes(checks.run(one_unit, output_specs(one_unit))) == [
        "SINGLE_UNIT_CATEGORICAL"
    ]
    assert checks.run(healthy, output_specs(healthy)) == []
    assert checks.known == frozenset() and said == []


def shifted_vectors(model):
    """Vectors of words w0, w1, ... equal to the model's embedding rows one id
    later: an embedding matrix built off by one."""
    (layer,) = [x for x in model.layers if isinstance(x, keras.layers.Embedding)]
    rows = keras.ops.convert_to_numpy(layer.embeddings)
    words = pd.Index([f"w{i}" for i in range(V - 1)])
    return [f"w{i}" for i in range(V)], GloveVectors(words, rows[1:].copy())


def test_given_vocabulary_and_vectors_reach_the_embedding_checks(smoothed):
    vocabulary, vectors = shifted_vectors(smoothed)
    said = []
    checks = StartChecks(vocabulary, vectors, said.append)
    found = checks.run(smoothed, output_specs(smoothed))
    assert set(codes(found)) == {"INVALID_LABEL_SMOOTHING", "EMBEDDING_MISALIGNED"}
    misaligned = next(f for f in found if f.code == "EMBEDDING_MISALIGNED")
    assert misaligned.evidence["best_offset"] == 1
    assert said == []


def test_a_vocabulary_that_does_not_fit_is_said_once_and_the_rest_checked(
    smoothed,
):
    _, vectors = shifted_vectors(smoothed)
    said = []
    checks = StartChecks({}, vectors, said.append)  # an empty word -> id map
    found = checks.run(smoothed, output_specs(smoothed))
    assert codes(found) == ["INVALID_LABEL_SMOOTHING"]
    (message,) = said
    assert message.startswith(
        "lossguard could not check the embeddings against the given vocabulary"
    )
    assert message.endswith("it checks the rest.")
    assert checks.vocabulary is None and checks.vectors is None
    checks.reset()  # the next run does not try them again
    assert codes(checks.run(smoothed, output_specs(smoothed))) == [
        "INVALID_LABEL_SMOOTHING"
    ]
    assert len(said) == 1
