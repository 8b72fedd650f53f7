"""Real users' bug threads, rebuilt in Keras 3 with synthetic data.

Each builder rebuilds the model, loss and data layout of one public thread
(a GitHub issue or a Q&A page) in which a Keras user showed a broken or
impossible loss and the thread established the cause. Data sets are
replaced by small synthetic data of the same shapes, dtypes and value
ranges; layers are shrunk so that a fit takes a second or two. The
builder's docstring cites the thread, quotes the cause as the thread states
it, and says what the rebuild changed.

`Thread.expected` is the code lossguard must report as the first root cause
(in `fit` and in `diagnose`), with no error or warning that points
elsewhere; None where no error or warning is right (a loss that is negative
by design, whose only finding is the info `LOSS_UNBOUNDED_BELOW`, or a cause
outside the catalogue: `scope="out"`, scored honestly as not found).

A builder takes no argument and returns a `Thread`; call
`keras.utils.set_random_seed` first. Nothing is built at import time.
"""

from __future__ import annotations

import dataclasses
from typing import Any

#: name -> builder, in registration order.
THREADS: dict = {}


@dataclasses.dataclass
class Thread:
    """One rebuilt thread: the compiled model, its data, and the verdict.

    Attributes:
        name: Short id (the pytest parameter).
        url: The thread, as published.
        symptom: What the user saw, with their numbers.
        cause: The cause as the thread states it (a short quote).
        expected: The code lossguard must name first, or None (see module).
        scope: "in" (the cause is in lossguard's catalogue) or "out".
        model, x, y: What `fit` gets.
        fit_kwargs: More `fit` arguments (batch_size, epochs, ...).
        diagnose_args: Arguments after `model` for `lossguard.diagnose`, or
            None where it cannot run before training (e.g. no call()).
        diagnose_kwargs, callback_kwargs: More arguments for each
            (`vocabulary=`, `vectors=`).
        crashes: Keras itself stops `fit` (the thread's error); lossguard
            must explain it and let the error through.
        expected_info: An info code lossguard must also report (e.g.
            `LOSS_UNBOUNDED_BELOW` for a loss negative by design).
        also: Codes of other real faults in the thread's own setup (each
            named in the builder's docstring, with what the thread says of
            it): reported as root causes of their own, after the expected
            one, they are not wrong-cause findings.
        seen_before_training: Whether the cause shows on the untrained
            model (False for a loss that only diverges after some steps:
            `diagnose` must then stay quiet rather than name another cause).
    """

    name: str
    url: str
    symptom: str
    cause: str
    expected: str | None
    model: Any
    x: Any
    y: Any = None
    scope: str = "in"
    fit_kwargs: dict = dataclasses.field(default_factory=dict)
    diagnose_args: tuple | None = None
    diagnose_kwargs: dict = dataclasses.field(default_factory=dict)
    callback_kwargs: dict = dataclasses.field(default_factory=dict)
    crashes: bool = False
    expected_info: str | None = None
    also: tuple = ()
    seen_before_training: bool = True

    def __post_init__(self):
        if self.scope not in ("in", "out"):
            raise ValueError(f"scope must be 'in' or 'out'. Received: {self.scope!r}")
        if self.scope == "out" and self.expected is not None:
            raise ValueError("an out-of-scope thread expects no code")


def thread(builder):
    """Register a builder under its function name."""
    THREADS[builder.__name__] = builder
    return builder


def rng(seed=0):
    import numpy as np

    return np.random.default_rng(seed)


# The builders, by family (importing registers them).
from tests.realworld.threads import (  # noqa: E402,F401
    config_threads,
    embedding_threads,
    gradient_threads,
    label_threads,
    loss_threads,
    nonfinite_threads,
    scope_threads,
    telltale_threads,
)
