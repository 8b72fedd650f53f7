"""Errors a backend raises instead of returning a loss, read for their numbers.

The fault checks of the `crash` stage (`lossguard.diagnosis.faults`) explain
such an error as a finding; `weight_mask_crash` explains one Keras limitation
that is not a fault of the data, as a note on the error.
"""

from __future__ import annotations

import dataclasses
import logging
import re

#: TensorFlow's SparseSoftmaxCrossEntropyWithLogits (whatever loss calls it).
_TF_LABEL = re.compile(
    r"Received a label value of (-?\d+) which is outside the valid range of "
    r"\[(-?\d+), (\d+)\)"
)
#: PyTorch's nll_loss / cross_entropy.
_TORCH_TARGET = re.compile(r"Target (-?\d+) is out of bounds")
_TF_NODE = re.compile(r"\{\{node ([^}]+)\}\}")


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


@dataclasses.dataclass(frozen=True)
class LabelOutOfRange:
    """A class id the loss's own op refused, as the backend's error says it."""

    value: int
    #: The number of classes K (the valid range is [0, K)), where the
    #: error says it.
    classes: int | None
    #: The op that refused it (TensorFlow names it), or the backend's call.
    op: str
    detail: str


def label_out_of_range(error) -> LabelOutOfRange | None:
    """A sparse label outside [0, K) in an error, whatever loss called the op.

    TensorFlow's sparse softmax cross-entropy (the op behind Keras' sparse
    losses, and behind any custom loss that calls them) says "Received a
    label value of 10 which is outside the valid range of [0, 10)" and
    names its node; PyTorch's `nll_loss` says "Target 10 is out of bounds".
    Both ops take labels only, so the value is a label wherever the op sits.
    An Embedding's input id out of range fails with other words ("not in
    [0, K)", "index out of range in self") and is not matched. JAX does not
    stop: Keras one-hot encodes such an id as a row of zeros.
    """
    text = str(error)
    match = _TF_LABEL.search(text)
    if match is not None:
        node = _TF_NODE.search(text)
        op = node.group(1) if node else "SparseSoftmaxCrossEntropyWithLogits"
        return LabelOutOfRange(
            int(match.group(1)), int(match.group(3)), op, error_detail(error)
        )
    match = _TORCH_TARGET.search(text)
    if match is not None:
        return LabelOutOfRange(
            int(match.group(1)), None, "torch nll_loss", error_detail(error)
        )
    return None


def annotate_weight_mask_crash(error) -> None:
    """Where `weight_mask_crash` explains `error`: log it, and add it to the
    error as a note (Python 3.11+), so the traceback says it too."""
    weights = weight_mask_crash(error)
    if weights is None:
        return
    logging.getLogger("lossguard").error("%s", weights)
    if hasattr(error, "add_note"):
        error.add_note(f"lossguard: {weights}")
