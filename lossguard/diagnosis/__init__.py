"""batch -> statistics -> checks -> findings -> report."""

from lossguard.diagnosis.findings import (
    Code,
    Finding,
    LossSanityError,
    LossSanityWarning,
    Report,
)

__all__ = ["Code", "Finding", "LossSanityError", "LossSanityWarning", "Report"]
