"""The fault registry: every code declared once, with its metadata and checks.

A fault family module (`lossguard.diagnosis.faults.labels`, ...) declares each
code it owns with `fault(...)` and registers the functions that find it with
the fault's `check(stage)` decorator, where they are written. The callback
and `diagnose` run the registry by stage (`run`); neither keeps a list of
its own.

To add a code: declare it with `fault(CODE, severity, title, summary)` in
the family module it belongs to (a new family is a module of
`lossguard.diagnosis.faults`, imported by its `__init__`); write its check
at the stage where the evidence is (below), taking that stage's context
(`lossguard.diagnosis.contexts`) and returning `FAULT.finding(message,
explanation, fix, evidence)`, every number from the context; add a section
to `lossguard/data/faults.md` (its place there is the code's place in
`Code`) that names every evidence key the check emits; add an injector to
`lossguard.testing` (`@injector(CODE)`); and, where it produces or follows
from other codes' symptoms, declare that in `faults/consequences.py`.
`tests/diagnosis/test_registry.py` then injects it and holds all of this.

To add a statistic a check needs: declare a `Stat` (name, dtype, replica
rule) beside the function of `lossguard.diagnosis.statistics` that computes
it with `keras.ops` (see that package's docstring); checks read it as
`ctx.stats[name]` (`OutputContext`: one output) or `ctx.batch[name]`
(the whole batch).

To add a backend: one module of `lossguard.backends` answering its protocol
(write a row inside the step, sync, chief or not, replicas, whether hooks
lag the step, an eager scope), and a line in its `_MODULES`; the checks
never see it.

Stages, and who runs them:

- `config`: the compile configuration of one output (`OutputSpec`); run once
  when `fit` starts and by `diagnose`.
- `model`: the model's structure (embedding layers); run once when `fit`
  starts and by `diagnose`.
- `batch`: one batch's whole-model statistics (the loss, its terms); every
  batch `fit` or `evaluate` computes a loss on, and every batch `diagnose` runs.
- `output`: one output's statistics on one batch (labels, predictions,
  weights, decoder inputs); same batches as `batch`.
- `unexplained`: the same batch, after `batch` and `output`, knowing which
  codes they (and the configuration) found: the catch-all checks.
- `crash`: an error TensorFlow raised instead of returning a loss.
- `epoch`: trained weights after an epoch (`EmbeddingDriftMonitor`).

Root causes: where one fault produces another's symptoms (a categorical
loss over one unit also shows all-zero label rows), declare it once in
`lossguard.diagnosis.faults.consequences` with `CAUSE.explains(EFFECT,
reason)`, the reason being the mathematics of the link in one sentence.
The callback and `diagnose` then mark the effect `caused_by` the cause
(`lossguard.diagnosis.causes.link`) wherever both show on the same output,
and a report leads with the cause. Declarations may not run in a circle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from lossguard.diagnosis.findings import KNOWN_CODES, SEVERITIES, Finding, docs_anchor

STAGES = (
    "config",
    "model",
    "batch",
    "output",
    "unexplained",
    "trend",
    "crash",
    "epoch",
)
#: Stages whose checks run over a block of batches (conditions on columns).
BLOCK_STAGES = ("batch", "output", "unexplained")
#: Where a stage's checks run, in words (the docs and `lossguard faults`).
RUNS_IN = {
    "config": "fit (at the start) and diagnose",
    "model": "fit (at the start) and diagnose",
    "batch": "every batch of fit, evaluate and diagnose",
    "output": "every batch of fit, evaluate and diagnose",
    "unexplained": "every batch of fit, evaluate and diagnose",
    "crash": "fit and diagnose, when the step fails",
    "epoch": "fit, after each epoch (EmbeddingDriftMonitor)",
}


@dataclasses.dataclass(frozen=True)
class Fault:
    """One code's metadata: severity, title, summary, and its checks by stage."""

    code: str
    severity: str
    title: str
    summary: str
    checks: dict = dataclasses.field(default_factory=dict, compare=False)
    #: code -> why that code's finding follows from this one (`explains`).
    consequences: dict = dataclasses.field(default_factory=dict, compare=False)

    @property
    def anchor(self) -> str:
        """The code's section in `docs/faults.md` (mkdocs' heading slug)."""
        return docs_anchor(self.code)

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(self.checks)

    def check(self, stage: str, when: Callable | None = None) -> Callable:
        """Register the decorated function as this fault's check at `stage`.

        Every check takes one argument, its stage's context
        (`lossguard.diagnosis.contexts`: `OutputContext` for `output`, ...).
        The batch stages (`batch`, `output`, `unexplained`) run over a block
        of batches at once: `when(ctx)` is the fault's condition written over
        columns (numpy arrays, one value per batch; a plain bool where the
        configuration decides), and the decorated function explains one
        batch where it holds, its context holding that batch's scalars. The
        other stages call the function directly; it returns a finding, a
        list of them, or None.
        """
        if stage not in STAGES:
            raise ValueError(f"`stage` must be one of {STAGES}. Received: {stage!r}.")
        if (when is None) == (stage in BLOCK_STAGES):
            need = "needs" if stage in BLOCK_STAGES else "takes no"
            raise ValueError(f"A check at stage {stage!r} {need} a `when` condition.")

        def register(function):
            self.checks.setdefault(stage, []).append(function)
            if all(f is not function for _, f, _, _ in _ORDER):  # one, two codes
                _ORDER.append((stage, function, when, self.code))
            return function

        return register

    def explains(self, consequence: Fault, reason: str) -> None:
        """Declare that this fault, found on an output (or the whole model),
        explains `consequence` on the same output: the consequence is then
        reported under this root cause, with its fix, and never acts alone.

        `reason` says in words why the consequence follows (it is added to
        the consequence's explanation).
        """
        if consequence.code == self.code or self.code in _descendants(consequence.code):
            raise ValueError(
                f"{self.code} cannot explain {consequence.code}: the causes "
                "would run in a circle."
            )
        self.consequences[consequence.code] = reason

    def explains_crashes(self, reason: str) -> None:
        """Declare that a step that fails while this fault shows fails
        because of it (`reason`: why, in words): `diagnose` then reports this
        finding, with the crash in its evidence, instead of an unexplained
        failure."""
        CRASH_EXPLAINERS[self.code] = reason

    def finding(self, message, explanation, fix, evidence=None, severity=None, **where):
        """A `Finding` of this code, its severity taken from the registry
        (a check may pass a milder `severity` where it knows less)."""
        return Finding(
            self.code,
            severity or self.severity,
            message,
            explanation,
            fix,
            evidence or {},
            **where,
        )


#: code -> Fault, in declaration order.
FAULTS: dict[str, Fault] = {}
#: code -> why a failing step follows from it (`Fault.explains_crashes`).
CRASH_EXPLAINERS: dict[str, str] = {}
#: (stage, check, condition, code) in registration order: the order findings
#: are produced in.
_ORDER: list[tuple] = []


def fault(code: str, severity: str, title: str, summary: str) -> Fault:
    """Declare a fault code once; returns the `Fault` to register checks on."""
    if code in FAULTS:
        raise ValueError(f"Fault code {code!r} is declared twice.")
    if severity not in SEVERITIES:
        raise ValueError(
            f"`severity` must be one of {SEVERITIES}. Received: severity={severity!r}."
        )
    FAULTS[code] = declared = Fault(code, severity, title, summary)
    KNOWN_CODES.add(code)
    return declared


def arrange(order) -> None:
    """Put the codes (and so `Code`) in `order`, the catalogue's
    (`lossguard.catalogue.codes()`, the order of docs/faults.md); codes it
    does not list follow, in declaration order. The checks run family by
    family (a family: the module its checks are written in), in the
    catalogue's order of each family's first code, and within a family in
    the order they are written: that is the order of a batch's findings."""
    rank = {code: i for i, code in enumerate(order)}
    last = len(rank)
    arranged = sorted(FAULTS, key=lambda code: rank.get(code, last))
    faults = {code: FAULTS[code] for code in arranged}
    FAULTS.clear()
    FAULTS.update(faults)
    family = {}
    for _, function, _, code in _ORDER:
        module = function.__module__
        family[module] = min(family.get(module, last), rank.get(code, last))
    _ORDER.sort(key=lambda entry: family[entry[1].__module__])  # stable


def _descendants(code: str) -> set[str]:
    """Every code that follows from `code`, directly or through others."""
    found, todo = set(), [code]
    while todo:
        for child in FAULTS[todo.pop()].consequences:
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def explainers(code: str) -> set[str]:
    """The codes declared to explain `code`."""
    return {c for c, f in FAULTS.items() if code in f.consequences}


def checks(stage: str) -> list[tuple]:
    """`(check, condition, code)` of every check at `stage`, in order."""
    return [(f, when, code) for s, f, when, code in _ORDER if s == stage]


def run(stage: str, ctx) -> list:
    """Run every check of a direct stage on its context; each returns a
    finding, a list, or None."""
    found = []
    for function, _, _ in checks(stage):
        result = function(ctx)
        if result is None:
            continue
        found.extend(result if isinstance(result, list) else [result])
    return found
