"""How numbers read in findings: one format for every fault family."""

from __future__ import annotations

import math


def measured(value) -> bool:
    """Whether a statistic was measured on the batch (not None, not NaN)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def num(value) -> str:
    """A number with four significant digits."""
    return f"{value:.4g}"


def pct(share) -> str:
    """A share as a percentage with three significant digits."""
    return f"{100 * share:.3g}%"


def of_output(spec, single: bool) -> str:
    """ " of output 'name'" where the model has several outputs, else ""."""
    return "" if single else f" of output '{spec.name}'"
