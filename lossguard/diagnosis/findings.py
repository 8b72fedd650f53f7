"""Findings and reports: what lossguard found, the numbers, why, and the fix."""

from __future__ import annotations

import dataclasses
import html
import json
from typing import Any

SEVERITIES = ("error", "warning", "info")


#: Every declared fault code; filled by `lossguard.diagnosis.registry.fault`.
KNOWN_CODES: set[str] = set()
#: Where each code is explained (mkdocs' anchor of its heading).
DOCS_PAGE = "docs/faults.md"


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
            f"  More: {docs_anchor(self.code)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _severity_rank(finding: Finding) -> int:
    return SEVERITIES.index(finding.severity)


class Report:
    """Many findings: a DataFrame, a story to read, and JSON for tools."""

    COLUMNS = ("code", "severity", "message", "fix", "epoch", "step", "evidence")

    def __init__(self, findings=()):
        self.findings: list[Finding] = list(findings)

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

    def ordered(self) -> list[Finding]:
        return sorted(self.findings, key=_severity_rank)

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
        return {"findings": [f.to_dict() for f in self.ordered()]}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), default=_jsonable, **kwargs)

    def __repr__(self) -> str:
        counts = {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}
        codes = ", ".join(sorted(self.codes)) or "-"
        return (
            f"<Report {counts['error']} error(s), {counts['warning']} warning(s), "
            f"{counts['info']} info: {codes}>"
        )

    def __str__(self) -> str:
        if not self.findings:
            return "lossguard: no findings. The loss is explained by the data."
        lines = [f"lossguard found {len(self.findings)} problem(s):", ""]
        for finding in self.ordered():
            lines += [str(finding), ""]
        first = self.ordered()[0]
        lines.append(f"First thing to fix ({first.code}): {first.fix}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(v))}</td>"
                for v in (f.severity, f.code, f.message, f.explanation, f.fix)
            )
            + "</tr>"
            for f in self.ordered()
        )
        head = "".join(
            f"<th>{h}</th>" for h in ("severity", "code", "message", "why", "fix")
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


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
