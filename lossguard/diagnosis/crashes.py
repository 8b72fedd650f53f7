"""Errors a backend raises instead of returning a loss, read for their numbers.

The fault checks of the `crash` stage (`lossguard.diagnosis.faults`) explain
such an error as a finding; `weight_mask_crash` explains one Keras limitation
that is not a fault of the data, as a note on the error.
"""

from __future__ import annotations

import re


def error_detail(error) -> str:
    """The line of a TensorFlow or PyTorch error that carries the numbers."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "label value" in line or "not in [0" in line or "out of bounds" in line:
            return line[:300]
    return lines[0][:300] if lines else type(error).__name__


def weight_mask_crash(error, in_loss=False) -> str | None:
    """Keras cannot multiply a per-sample weight by a per-token Keras mask.

    With a sequence output (batch, T, K) that carries a mask (from
    `Embedding(mask_zero=True)`), Keras' loss multiplies `sample_weight` by
    the (batch, T) mask; a (batch,) weight does not broadcast against it, and
    TensorFlow stops with "Incompatible shapes: [B] vs. [B,T]" (eager) or
    "Dimensions must be equal ... input shapes: [B], [B,T]" (while tracing).
    """
    detail = str(error)
    match = re.search(
        r"(?:Incompatible shapes: |input shapes: )\[(\d+)\](?: vs\.|,) "
        r"\[(\d+),(\d+)\]",
        detail,
    )
    in_loss = in_loss or "compile_loss" in detail
    if match is None or not in_loss:
        return None
    batch, steps = match.group(2), match.group(3)
    return (
        f"Keras could not combine a per-sample `sample_weight` of shape ({batch},) "
        f"with the ({batch}, {steps}) mask of a sequence output (Keras multiplies "
        "the weight by the mask of Embedding(mask_zero=True) and does not expand "
        "it first). Pass one weight per token instead: "
        f"sample_weight = np.repeat(w[:, None], {steps}, axis=1)."
    )
