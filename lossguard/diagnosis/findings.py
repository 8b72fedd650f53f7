"""Findings and reports: what lossguard found, the numbers, why, and the fix."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

SEVERITIES = ("error", "warning", "info")


#: Every declared fault code; filled by `lossguard.diagnosis.registry.fault`.
KNOWN_CODES: set[str] = set()
#: Where each code is explained: the docs' catalogue page (mkdocs' anchor of
#: its heading); `lossguard explain CODE` prints the same section offline.
DOCS_PAGE = "faults.md"


def docs_anchor(code: str) -> str:
    """Where a code's mechanism, evidence, fix and reproduction are written."""
    return f"{DOCS_PAGE}#{code.lower()}"


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem, measured: code, severity, the numbers, why, and the fix."""

    code: str
    severity: str
    message: str
    explanation: str
    fix: str
    evidence: dict = dataclasses.field(default_factory=dict)
    epoch: int | None = None
    step: int | None = None
    #: "train" or "validation" in fit/evaluate; None in diagnose.
    phase: str | None = None
    #: The code of the root cause this finding follows from (declared in the
    #: registry); None for a root cause. A consequence keeps its own
    #: evidence, and its explanation and fix name the cause.
    caused_by: str | None = None

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(
                f"`severity` must be one of {SEVERITIES}. "
                f"Received: severity={self.severity!r}."
            )
        code = str(getattr(self.code, "value", self.code))
        if code not in KNOWN_CODES:
            raise ValueError(
                f"`code` must be a declared fault code. Received: code={code!r}. "
                f"Known codes: {', '.join(sorted(KNOWN_CODES))}."
            )
        object.__setattr__(self, "code", code)
        if self.caused_by is not None:
            cause = str(getattr(self.caused_by, "value", self.caused_by))
            if cause not in KNOWN_CODES or cause == code:
                raise ValueError(
                    "`caused_by` must be another declared fault code or None. "
                    f"Received: caused_by={cause!r} for code={code!r}."
                )
            object.__setattr__(self, "caused_by", cause)

    @property
    def where(self) -> str:
        parts = []
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch}")
        if self.step is not None:
            step = f"step {self.step}" if parts else f"batch {self.step}"
            if self.phase == "validation":
                step = f"validation {step}"
            parts.append(step)
        return ", ".join(parts)

    def __repr__(self) -> str:
        at = f" at {self.where}" if self.where else ""
        return f"<Finding {self.severity} {self.code}{at}: {self.message}>"

    def __str__(self) -> str:
        at = f" ({self.where})" if self.where else ""
        return (
            f"[{self.severity.upper()}] {self.code}{at}\n"
            f"  {self.message}\n"
            f"  Why: {self.explanation}\n"
            f"  Fix: {self.fix}\n"
            f"  More: lossguard explain {self.code} (docs: {docs_anchor(self.code)})"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def _repr_html_(self) -> str:
        from lossguard.diagnosis.render import finding_html

        return finding_html(self)


def _severity_rank(finding: Finding) -> int:
    return SEVERITIES.index(finding.severity)


class Report:
    """Many findings, root causes first: a DataFrame, a story, JSON for tools.

    A finding whose `caused_by` names another finding of the report is a
    consequence: `str(report)` shows it under its root cause, and the first
    thing to fix is the first root cause's fix.
    """

    COLUMNS = (
        "code",
        "severity",
        "message",
        "fix",
        "epoch",
        "step",
        "phase",
        "caused_by",
        "evidence",
    )

    def __init__(self, findings=(), notes=(), history=None):
        self.findings: list[Finding] = list(findings)
        #: What lossguard could not check, and why (one sentence each).
        self.notes: list[str] = list(notes)
        self._history = history

    @property
    def history(self):
        """The per-batch history behind a callback's report (None for
        `diagnose`): drawn inline in a notebook."""
        history = self._history
        return history() if callable(history) else history

    @property
    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def has(self, severity: str = "error") -> bool:
        """Whether a finding of `severity` or worse exists."""
        bar = SEVERITIES.index(severity)
        return any(_severity_rank(f) <= bar for f in self.findings)

    def get(self, code: str) -> Finding | None:
        return next((f for f in self.findings if f.code == code), None)

    def root_causes(self, severity: str | None = None) -> list[Finding]:
        """The findings no other finding of the report explains, worst first.

        A consequence whose cause is not in the report counts as a root.
        With `severity`, only the roots that are, or explain a finding that
        is, at that severity or worse.
        """
        codes = self.codes
        roots = [f for f in self.findings if f.caused_by not in codes]
        if severity is not None:
            bar = SEVERITIES.index(severity)
            roots = [r for r in roots if min(map(_severity_rank, self._tree(r))) <= bar]
        return sorted(roots, key=_severity_rank)

    def _tree(self, finding) -> list[Finding]:
        """`finding` and everything that follows from it."""
        tree, todo = [], [finding]
        while todo:
            current = todo.pop()
            if all(current is not f for f in tree):
                tree.append(current)
                todo += self.consequences(current.code)
        return tree

    def consequences(self, code: str) -> list[Finding]:
        """The findings that follow directly from the finding `code`."""
        return [f for f in self.findings if f.caused_by == code and f.code != code]

    def ordered(self) -> list[Finding]:
        """Every finding: each root cause (worst first), then what follows
        from it, depth first."""
        result: list[Finding] = []

        def visit(finding):
            if any(f is finding for f in result):
                return
            result.append(finding)
            for consequence in sorted(
                self.consequences(finding.code), key=_severity_rank
            ):
                visit(consequence)

        for root in self.root_causes():
            visit(root)
        return result

    def __len__(self) -> int:
        return len(self.findings)

    def __iter__(self):
        return iter(self.findings)

    def __contains__(self, code) -> bool:
        return str(getattr(code, "value", code)) in self.codes

    def to_frame(self):
        import pandas as pd

        rows = [{c: getattr(f, c) for c in self.COLUMNS} for f in self.ordered()]
        return pd.DataFrame(rows, columns=list(self.COLUMNS))

    def to_dict(self) -> dict[str, Any]:
        return {
            "root_causes": [f.code for f in self.root_causes()],
            "findings": [f.to_dict() for f in self.ordered()],
            "notes": list(self.notes),
        }

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), default=_jsonable, **kwargs)

    def __repr__(self) -> str:
        counts = {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}
        roots = ", ".join(f.code for f in self.root_causes()) or "-"
        return (
            f"<Report {counts['error']} error(s), {counts['warning']} warning(s), "
            f"{counts['info']} info; root causes: {roots}"
            f"{f'; {len(self.notes)} note(s)' if self.notes else ''}>"
        )

    def __str__(self) -> str:
        notes = [f"Not checked: {note}" for note in self.notes]
        if not self.findings:
            if notes:
                return "\n".join(
                    ["lossguard: no findings in what it could check.", *notes]
                )
            return "lossguard: no findings. The loss is explained by the data."
        roots = self.root_causes()
        follow = len(self.findings) - len(roots)
        head = f"lossguard found {len(roots)} root cause(s)"
        if follow:
            head += f" and {follow} finding(s) that follow from them"
        lines = [head + ":", ""]
        for root in roots:
            lines.append(str(root))
            lines += self._consequence_lines(root.code, "  ")
            lines.append("")
        lines += [*notes, *([""] if notes else [])]
        first = roots[0]
        lines.append(f"First thing to fix ({first.code}): {first.fix}")
        return "\n".join(lines)

    def _consequence_lines(self, code, indent) -> list[str]:
        lines = []
        for finding in sorted(self.consequences(code), key=_severity_rank):
            at = f" ({finding.where})" if finding.where else ""
            lines.append(
                f"{indent}-> follows from {code}: [{finding.severity.upper()}] "
                f"{finding.code}{at}"
            )
            lines.append(f"{indent}   {finding.message}")
            lines += self._consequence_lines(finding.code, indent + "   ")
        return lines

    def _repr_html_(self) -> str:
        from lossguard.diagnosis.render import report_html

        return report_html(self)


def _jsonable(value):
    try:
        return value.item()
    except AttributeError:
        return str(value)


class LossSanityWarning(UserWarning):
    """Emitted once per finding code by `LossSanityCallback(action="warn")`."""


class LossSanityError(RuntimeError):
    """Raised by `LossSanityCallback(action="raise")`; `.report` has the story."""

    def __init__(self, report: Report):
        self.report = report
        super().__init__(str(report))
