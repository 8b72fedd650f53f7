"""Findings and reports as HTML, for notebooks (`_repr_html_`).

A report renders as its text does: root causes first, each a card with its
severity, the batch, the message with the numbers, why, the fix and the
evidence, and under it the findings that follow from it; then what could
not be checked; then, for a callback's report and where matplotlib is
installed, the per-batch loss plot inline (a PNG in the page).
"""

from __future__ import annotations

import base64
import html
import io
import json

_COLORS = {"error": "#b00020", "warning": "#b26a00", "info": "#1565c0"}
_STYLE = (
    "<style>.lossguard{font-family:sans-serif;font-size:13px;max-width:60em}"
    ".lossguard .card{border-left:4px solid;padding:4px 10px;margin:8px 0}"
    ".lossguard .follows{margin-left:24px;border-left-style:dashed}"
    ".lossguard .badge{color:#fff;padding:1px 6px;border-radius:3px;"
    "font-size:11px;margin-right:6px}"
    ".lossguard table{border-collapse:collapse;font-size:12px}"
    ".lossguard td{padding:1px 8px;border-bottom:1px solid #eee}</style>"
)


def _e(value) -> str:
    return html.escape(str(value))


def _evidence(evidence: dict) -> str:
    if not evidence:
        return ""
    rows = "".join(
        f"<tr><td>{_e(key)}</td><td>{_e(_short(value))}</td></tr>"
        for key, value in evidence.items()
    )
    return f"<details><summary>numbers</summary><table>{rows}</table></details>"


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list | tuple):
        text = json.dumps(value, default=str)
        return text if len(text) < 200 else text[:197] + "..."
    return str(value)


def finding_html(finding, follows: bool = False) -> str:
    """One finding as a card: severity, code, batch, message, why, fix."""
    color = _COLORS[finding.severity]
    where = f" <small>({_e(finding.where)})</small>" if finding.where else ""
    cause = (
        f"<div><i>follows from {_e(finding.caused_by)}</i></div>"
        if finding.caused_by
        else ""
    )
    why = "" if follows else f"<div><b>Why:</b> {_e(finding.explanation)}</div>"
    fix = "" if follows else f"<div><b>Fix:</b> {_e(finding.fix)}</div>"
    return (
        f'<div class="card{" follows" if follows else ""}" '
        f'style="border-color:{color}">'
        f'<span class="badge" style="background:{color}">'
        f"{_e(finding.severity)}</span><b>{_e(finding.code)}</b>{where}"
        f"{cause}<div>{_e(finding.message)}</div>{why}{fix}"
        f"{_evidence(finding.evidence)}</div>"
    )


def report_html(report) -> str:
    """A report: root causes first, what follows under each, notes, plot."""
    parts = [_STYLE, '<div class="lossguard">']
    roots = report.root_causes()
    if not report.findings:
        parts.append("<p>lossguard: no findings.</p>")
    else:
        follow = len(report.findings) - len(roots)
        parts.append(
            f"<p><b>lossguard found {len(roots)} root cause(s)</b>"
            f"{f' and {follow} finding(s) that follow from them' if follow else ''}"
            ".</p>"
        )
    for root in roots:
        parts.append(finding_html(root))
        parts += [finding_html(f, follows=True) for f in _below(report, root)]
    parts += [f"<p><i>Not checked:</i> {_e(note)}</p>" for note in report.notes]
    if roots:
        parts.append(
            f"<p><b>First thing to fix ({_e(roots[0].code)}):</b> "
            f"{_e(roots[0].fix)}</p>"
        )
    image = _plot(report.history)
    if image:
        parts.append(f'<img alt="per-batch loss" src="data:image/png;base64,{image}">')
    parts.append("</div>")
    return "".join(parts)


def _below(report, root):
    """What follows from `root`, depth first."""
    found = []
    for consequence in report.consequences(root.code):
        found.append(consequence)
        found += _below(report, consequence)
    return found


def _plot(history) -> str | None:
    """The per-batch plot of a history as base64 PNG, or None (no history,
    no rows, or no matplotlib)."""
    if history is None or len(history) == 0:
        return None
    try:
        from lossguard.plot import figure

        fig = figure(history, title="per-batch loss")
    except ImportError:
        return None
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
