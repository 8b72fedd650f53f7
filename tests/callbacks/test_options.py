"""`LossSanityCallback`'s arguments (`lossguard/callbacks/options.py`): each
one that cannot work fails when given, naming the argument, the value and
what it must be; each one that can is kept as given."""

import dataclasses
import importlib.util
import os
import re

import pytest

from lossguard.callbacks.options import Options

pytestmark = pytest.mark.backends


def received(name, value):
    """The end of lossguard's error message for `name=value`, as a regex."""
    return re.escape(f"Received: {name}={value!r}.")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("predictions", "some", "must be one of ('auto', 'all')"),
        ("capacity", 1, "an int of at least 2"),
        ("capacity", 2.5, "an int of at least 2"),
        ("capacity", "1024", "an int of at least 2"),
        ("flush_every", 0, "a positive int (batches)"),
        ("flush_every", True, "a positive int (batches)"),
        ("check_every", 0, "'auto' or a positive int (steps)"),
        ("check_every", 2.0, "'auto' or a positive int (steps)"),
        ("check_every", "every", "'auto' or a positive int (steps)"),
        ("check_every", False, "'auto' or a positive int (steps)"),
        ("keep_in_memory", -5, "None or a positive int (rows)"),
    ],
)
def test_a_bad_argument_names_itself_its_value_and_what_it_must_be(
    name, value, expected, tmp_path
):
    log = {"log_path": str(tmp_path / "h.csv")} if name == "keep_in_memory" else {}
    with pytest.raises(ValueError) as caught:
        Options(**log, **{name: value})
    message = str(caught.value)
    assert message.startswith(f"`{name}` must be")
    assert expected in message
    assert re.search(received(name, value), message)


def test_good_arguments_pass_through_as_given(tmp_path):
    vocabulary, vectors = ["", "the"], object()
    options = Options(
        log_path=tmp_path / "h.csv",
        flush_every=7,
        capacity=2,
        predictions="all",
        tensorboard_dir=tmp_path / "tb",
        check_every=1,
        keep_in_memory=10,
        vocabulary=vocabulary,
        vectors=vectors,
        mlflow=0,
    )
    # Paths become strings (the sinks test their suffix and join them).
    assert options.log_path == str(tmp_path / "h.csv")
    assert options.tensorboard_dir == str(tmp_path / "tb")
    assert (options.flush_every, options.capacity, options.check_every) == (7, 2, 1)
    assert options.predictions == "all" and options.keep_in_memory == 10
    assert options.vocabulary is vocabulary and options.vectors is vectors
    assert options.mlflow is False
    assert Options().check_every == "auto" and Options().log_path is None


def test_options_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Options().capacity = 4


@pytest.mark.parametrize("name", ["h.txt", "h.csv.gz", "h"])
def test_log_path_must_be_a_csv_or_parquet_file(name, tmp_path):
    path = str(tmp_path / name)
    with pytest.raises(ValueError, match="must end in .csv or .parquet") as caught:
        Options(log_path=path)
    assert re.search(received("log_path", path), str(caught.value))


def test_log_path_in_a_missing_folder_fails_when_given_not_inside_fit(tmp_path):
    path = str(tmp_path / "no" / "such" / "h.csv")
    with pytest.raises(ValueError, match="Create the folder first") as caught:
        Options(log_path=path)
    message = str(caught.value)
    assert repr(path) in message and repr(os.path.dirname(path)) in message


def test_a_bare_file_name_is_a_file_in_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Options(log_path="h.parquet").log_path == "h.parquet"


@pytest.mark.parametrize("log_path", [None, "h.parquet"])
def test_keep_in_memory_needs_a_csv_log_that_keeps_every_row(log_path, tmp_path):
    path = None if log_path is None else str(tmp_path / log_path)
    with pytest.raises(ValueError, match="needs a .csv `log_path`") as caught:
        Options(log_path=path, keep_in_memory=100)
    assert re.search(received("log_path", path), str(caught.value))


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"vocabulary": ["", "the"]}, "vocabulary=given, vectors=None"),
        ({"vectors": object()}, "vocabulary=None, vectors=given"),
    ],
)
def test_vocabulary_and_vectors_come_together(given, says):
    with pytest.raises(ValueError, match="Pass `vocabulary` and `vectors` together"):
        Options(**given)
    with pytest.raises(ValueError, match=re.escape(says)):
        Options(**given)


@pytest.fixture
def not_installed(monkeypatch):
    """Make `importlib.util.find_spec` miss the packages named in a set."""
    missing = set()
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name in missing else real(name, *args),
    )
    return missing


def test_optional_packages_are_asked_for_when_given(not_installed, tmp_path):
    not_installed |= {"pyarrow", "tensorboard", "mlflow"}
    with pytest.raises(ImportError, match="pip install pyarrow"):
        Options(log_path=tmp_path / "h.parquet")
    with pytest.raises(ImportError, match=r'pip install "lossguard\[tensorboard\]"'):
        Options(tensorboard_dir=tmp_path)
    with pytest.raises(ImportError, match=r'pip install "lossguard\[mlflow\]"'):
        Options(mlflow=True)
    # Without those arguments nothing optional is needed.
    assert Options(log_path=tmp_path / "h.csv").log_path.endswith("h.csv")


def test_the_callback_hands_each_argument_to_its_own_option(tmp_path):
    """The callback passes its arguments on by position: each must land in
    the field of its name."""
    from lossguard import LossSanityCallback

    given = {
        "log_path": str(tmp_path / "h.csv"),
        "flush_every": 7,
        "capacity": 16,
        "predictions": "all",
        "tensorboard_dir": str(tmp_path / "tb"),
        "check_every": 3,
        "keep_in_memory": 50,
        "vocabulary": ["", "the"],
        "vectors": object(),
        "mlflow": False,
        "internals": False,
    }
    assert set(given) == {field.name for field in dataclasses.fields(Options)}
    cb = LossSanityCallback(action="record", **given)
    for name, value in given.items():
        assert getattr(cb.options, name) == value, name
        assert getattr(cb, name) == value, name


def test_reading_less_often_than_the_buffer_holds_is_refused():
    with pytest.raises(ValueError) as caught:
        Options(capacity=8, check_every=20)
    message = str(caught.value)
    assert message.startswith("`check_every` must be at most `capacity`")
    assert "Received: check_every=20, capacity=8" in message
    assert Options(capacity=8, check_every=8).check_every == 8
