"""`LossSanityCallback`'s arguments, checked when they are given.

Every argument that cannot work fails in the constructor, naming the
argument, the value and the fix; nothing accepted here may fail later,
inside the user's `fit` (a folder that does not exist, an optional package
that is not installed).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os

PREDICTIONS = ("auto", "all")


def installed(package) -> bool:
    """Whether an optional package is installed (found, not imported)."""
    return importlib.util.find_spec(package) is not None


@dataclasses.dataclass(frozen=True)
class Options:
    """The callback's arguments but `action`, checked (`check`)."""

    log_path: str | None = None
    flush_every: int = 100
    capacity: int = 1024
    predictions: str = "auto"
    tensorboard_dir: str | None = None
    check_every: object = "auto"
    keep_in_memory: int | None = None
    vocabulary: object = None
    vectors: object = None
    mlflow: bool = False
    internals: bool = False

    def __post_init__(self):
        for name in ("log_path", "tensorboard_dir"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, os.fspath(value))
        object.__setattr__(self, "mlflow", bool(self.mlflow))
        self.check()

    def check(self):
        _one_of("predictions", self.predictions, PREDICTIONS)
        if not isinstance(self.internals, bool):
            _fail("internals", self.internals, "True or False")
        if not isinstance(self.capacity, int) or self.capacity < 2:
            _fail("capacity", self.capacity, "an int of at least 2")
        self._check_log()
        if not _positive(self.flush_every):
            _fail("flush_every", self.flush_every, "a positive int (batches)")
        if self.check_every != "auto" and not _positive(self.check_every):
            _fail("check_every", self.check_every, "'auto' or a positive int (steps)")
        if self.check_every != "auto" and self.check_every > self.capacity:
            raise ValueError(
                f"`check_every` must be at most `capacity`: the buffer holds "
                f"{self.capacity} steps between reads, so reading every "
                f"{self.check_every} would lose the rest. Received: "
                f"check_every={self.check_every}, capacity={self.capacity}; raise "
                "capacity or lower check_every."
            )
        if self.keep_in_memory is not None and not _positive(self.keep_in_memory):
            _fail(
                "keep_in_memory", self.keep_in_memory, "None or a positive int (rows)"
            )
        if self.keep_in_memory is not None and not str(self.log_path or "").endswith(
            ".csv"
        ):
            raise ValueError(
                "`keep_in_memory` needs a .csv `log_path` that keeps every row. "
                f"Received: log_path={self.log_path!r}."
            )
        if (self.vocabulary is None) != (self.vectors is None):
            raise ValueError(
                "Pass `vocabulary` and `vectors` together (the tokenizer's words "
                "by id and the GloveVectors the embedding came from). Received: "
                f"vocabulary={'None' if self.vocabulary is None else 'given'}, "
                f"vectors={'None' if self.vectors is None else 'given'}."
            )
        self._check_packages()

    def _check_log(self):
        path = self.log_path
        if path is None:
            return
        if not path.endswith((".csv", ".parquet")):
            raise ValueError(
                f"`log_path` must end in .csv or .parquet. Received: log_path={path!r}."
            )
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise ValueError(
                "`log_path` must be in a folder that exists and can be written. "
                f"Received: log_path={path!r} (folder {folder!r}). Create the "
                "folder first."
            )
        if path.endswith(".parquet") and not installed("pyarrow"):
            raise ImportError(
                "A .parquet `log_path` needs the pyarrow package, which is not "
                f"installed. Received: log_path={path!r}. Install it with "
                "pip install pyarrow, or log to a .csv path."
            )

    def _check_packages(self):
        if self.mlflow and not installed("mlflow"):
            raise ImportError(
                "`mlflow=True` needs the mlflow package, which is not installed. "
                'Install it with pip install "lossguard[mlflow]", or leave '
                "mlflow=False."
            )
        if self.tensorboard_dir is not None and not installed("tensorboard"):
            raise ImportError(
                "`tensorboard_dir` needs the tensorboard package, which is not "
                f"installed. Received: tensorboard_dir={self.tensorboard_dir!r}. "
                'Install it with pip install "lossguard[tensorboard]", or leave '
                "tensorboard_dir=None."
            )


def _positive(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _one_of(name, value, allowed):
    if value not in allowed:
        raise ValueError(
            f"`{name}` must be one of {allowed}. Received: {name}={value!r}."
        )


def _fail(name, value, expected):
    raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}.")
