"""The fault catalogue as shipped with the package: `lossguard explain CODE`.

`lossguard/data/faults.md` is the catalogue page itself (the docs' faults.md
links to it): one `## CODE` section per fault, with its severity, mechanism,
evidence, fix and reproduction. This module reads it with the standard
library only and imports nothing of lossguard, so the command line can load
it without Keras.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "data" / "faults.md"
_CODE = re.compile(r"^[A-Z][A-Z0-9_]+$")


@functools.cache
def text() -> str:
    """The whole catalogue page (Markdown)."""
    return PAGE.read_text(encoding="utf-8")


@functools.cache
def _sections() -> dict[str, str]:
    found = {}
    for part in re.split(r"^## ", text(), flags=re.M)[1:]:
        title, _, body = part.partition("\n")
        if _CODE.match(title.strip()):
            found[title.strip()] = body.strip()
    return found


def codes() -> list[str]:
    """Every fault code of the catalogue, in its order."""
    return list(_sections())


def section(code: str) -> str | None:
    """A code's section (its title, severity, mechanism, evidence, fix and
    reproduction), or None for a code the catalogue does not have."""
    code = code.strip().upper()
    body = _sections().get(code)
    if body is None:
        return None
    body = body.replace("**", "")  # bold is for the docs, not the terminal
    return f"{code}\n{'=' * len(code)}\n\n{body}\n"


def listing() -> str:
    """One line per code: code, severity and summary (the contents table)."""
    rows = []
    for line in text().splitlines():
        match = re.match(
            r"^\| \[([A-Z_0-9]+)\]\(#[a-z_0-9]+\) \| (\w+) \| (.+) \|$", line
        )
        if match:
            code, severity, summary = match.groups()
            rows.append(f"{code:<30} {severity:<8} {summary}")
    rows.append("")
    rows.append("lossguard explain CODE prints a code's mechanism, evidence and fix.")
    return "\n".join(rows)
