"""Root causes and their consequences: which finding follows from which.

One cause often shows several symptoms: a categorical cross-entropy over a
1-unit output makes every prediction 1 (loss 0), its 0/1 labels read as
all-zero rows, and its sigmoid outputs as rows that do not sum to 1. The
registry declares which code explains which (`Fault.explains`); `link`
marks each finding that a present cause explains, so a report leads with
the cause and shows the symptoms under it, with the cause's fix.
"""

from __future__ import annotations

import dataclasses

from lossguard.diagnosis.findings import Finding
from lossguard.diagnosis.registry import FAULTS


def _output(finding: Finding):
    return finding.evidence.get("output") if finding.evidence else None


def reason(cause: Finding, effect: Finding) -> str | None:
    """Why `effect` follows from `cause`, or None where it does not.

    A cause explains a declared consequence on the same output; a finding
    about the whole model (no output in its evidence) and a finding about
    one output explain each other wherever declared.
    """
    if cause is effect or cause.code == effect.code:
        return None
    why = FAULTS[cause.code].consequences.get(effect.code)
    if why is None:
        return None
    a, b = _output(cause), _output(effect)
    if a is not None and b is not None and a != b:
        return None
    return why


def link(new, earlier=()) -> list[Finding]:
    """`new` findings, causes before consequences, each consequence marked.

    A finding of `new` is marked `caused_by` the first finding (of `new`,
    or of `earlier`: what the configuration or earlier batches already
    showed) that the registry says explains it. Its explanation says why it
    follows, and its fix is the cause's. A finding already marked is kept.
    """
    new = list(new)
    pool = [*earlier, *new]
    linked = []
    for finding in new:
        if finding.caused_by is None:
            for cause in _roots_first(pool, finding):
                why = reason(cause, finding)
                if why is not None:
                    finding = _as_consequence(finding, cause, why)
                    break
        linked.append(finding)
    return _causes_first(linked)


def adopt(earlier, new) -> list[Finding]:
    """`earlier` findings, each root that a root of `new` explains marked as
    its consequence: a cause seen after its symptom (a dead layer found on
    the batches of a block whose many steps already showed the loss at
    ln K) still leads the report."""
    causes = [f for f in new if f.caused_by is None]
    adopted = []
    for finding in earlier:
        if finding.caused_by is None:
            for cause in causes:
                why = reason(cause, finding)
                if why is not None and reason(finding, cause) is None:
                    finding = _as_consequence(finding, cause, why)
                    break
        adopted.append(finding)
    return adopted


def _roots_first(pool, finding):
    """Candidate causes, those that nothing in `pool` explains first."""
    others = [c for c in pool if c is not finding]

    def explained(cause):
        return cause.caused_by is not None or any(
            reason(other, cause) is not None for other in others
        )

    return sorted(others, key=explained)


def _as_consequence(finding, cause, why) -> Finding:
    return dataclasses.replace(
        finding,
        caused_by=cause.code,
        explanation=f"{finding.explanation} It follows from {cause.code}: {why}",
        fix=f"Fix the root cause, {cause.code}: {cause.fix}",
    )


def _causes_first(findings) -> list[Finding]:
    """Findings ordered so that each comes after the one it follows from."""
    codes = {f.code for f in findings}

    def depth(finding, seen=()):
        cause = finding.caused_by
        if cause is None or cause not in codes or cause in seen:
            return 0
        parent = next(f for f in findings if f.code == cause)
        return 1 + depth(parent, (*seen, finding.code))

    return sorted(findings, key=depth)
