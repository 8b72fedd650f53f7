"""batch -> statistics -> checks -> findings -> report.

- `statistics`: the in-graph statistics of one batch (schema and engine);
- `collect`: one batch's row of statistics for every output of a model;
- `registry` and `faults/`: every fault code, its metadata and its checks;
- `findings`: `Finding`, `Report` and the warning and error they raise;
- `diagnose`: the checks on a few batches, before training.
"""

from lossguard.diagnosis.faults import Code
from lossguard.diagnosis.findings import (
    Finding,
    LossSanityError,
    LossSanityWarning,
    Report,
)

__all__ = ["Code", "Finding", "LossSanityError", "LossSanityWarning", "Report"]
