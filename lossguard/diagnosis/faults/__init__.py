"""Every fault lossguard knows, one family per module, and how to run them.

Importing this package declares every code (`lossguard.diagnosis.registry`):

- `labels`: NEGATIVE_LABELS, LABEL_SUM_NOT_ONE, EMPTY_LABEL_ROWS,
  LABELS_OUT_OF_RANGE
- `loss_terms`: NEGATIVE_WEIGHTS, NEGATIVE_AUX_LOSS, LOSS_UNBOUNDED_BELOW,
  NONFINITE_LOSS, NEGATIVE_LOSS
- `predictions`: PREDICTIONS_NOT_PROBABILITIES, PROBABILITIES_AS_LOGITS,
  LOW_PRECISION_SATURATION
- `config`: SINGLE_UNIT_CATEGORICAL, INVALID_LABEL_SMOOTHING
- `seq2seq`: DECODER_TARGET_NOT_SHIFTED, PADDING_NOT_MASKED
- `embeddings`: EMBEDDING_OOV_ROWS, EMBEDDING_MISALIGNED, EMBEDDING_DRIFT

The callback and `diagnose` call the runners below, which run the registry
by stage; neither knows the list of checks.
"""

from __future__ import annotations

import dataclasses
from enum import Enum

from lossguard.diagnosis.faults import (  # noqa: F401 - each declares its faults
    config,
    embeddings,
    labels,
    loss_terms,
    predictions,
    seq2seq,
)
from lossguard.diagnosis.faults.format import measured
from lossguard.diagnosis.registry import FAULTS, run
from lossguard.diagnosis.statistics import OUTPUT_KEYS

#: The stable fault codes (string values; never renamed).
Code = Enum("Code", {code: code for code in FAULTS}, type=str)
Code.__doc__ = "The stable fault codes of docs/faults.md (never renamed)."


def split_output(row: dict, spec, single: bool) -> dict:
    """One output's statistics out of a batch's row (prefixed by its name)."""
    prefix = "" if single else f"{spec.name}/"
    return {key: row.get(prefix + key, float("nan")) for key in OUTPUT_KEYS}


def check_batch(
    row: dict, specs, epoch=None, step=None, phase=None, known=frozenset()
) -> list:
    """Every finding one batch's statistics show.

    Runs the `batch` and `output` stages, then `unexplained` with the codes
    they found plus `known` (the codes the configuration showed).
    """
    single = len(specs) == 1
    outs = [split_output(row, spec, single) for spec in specs]
    found = run("batch", row, outs, specs)
    for spec, stats in zip(specs, outs, strict=True):
        found += [
            _annotate(f, spec, stats) for f in run("output", stats, row, spec, single)
        ]
    explained = {f.code for f in found} | set(known)
    found += run("unexplained", row, outs, specs, explained)
    return [dataclasses.replace(f, epoch=epoch, step=step, phase=phase) for f in found]


def _annotate(finding, spec, stats):
    """An output's finding under a loss lossguard probed, or one that clips.

    The evidence says how the loss was identified. Clipping each term into
    [low, high] keeps the loss in range while the cause (negative labels,
    say) stays: the finding shows the batch's share of terms at a bound, so
    the clip reads as what hides the fault.
    """
    if spec.identified:
        evidence = {**finding.evidence, "loss_identified": spec.identified}
        finding = dataclasses.replace(finding, evidence=evidence)
    if spec.clip is None or finding.severity == "info":
        return finding
    low, high = spec.clip
    share = stats.get("loss_at_clip_share")
    bounds = f"[{'-inf' if low is None else f'{low:g}'}, "
    bounds += f"{'inf' if high is None else f'{high:g}'}]"
    at = (
        f"{100 * share:.3g}% of this batch's terms sat at a bound"
        if measured(share)
        else "the share of terms at a bound could not be measured"
    )
    note = (
        f" The loss clips each term into {bounds}: {at}; the clip hides this "
        "fault from the loss value, it does not fix it."
    )
    evidence = {**finding.evidence, "clip": [low, high], "at_clip_share": share}
    return dataclasses.replace(
        finding, message=finding.message + note, evidence=evidence
    )


def check_start(model, specs, vocabulary=None, vectors=None) -> list:
    """Findings the compile configuration and the model's structure prove."""
    found = [f for spec in specs for f in run("config", spec)]
    return found + run("model", model, vocabulary, vectors)


def check_crash(error, specs, epoch=None, step=None) -> list:
    """Findings that explain an error raised instead of a loss."""
    return run("crash", error, specs, epoch=epoch, step=step)


def check_epoch(layer_name, row, threshold, epoch) -> list:
    """Findings about trained weights after an epoch."""
    return run("epoch", layer_name, row, threshold, epoch)


__all__ = [
    "Code",
    "FAULTS",
    "check_batch",
    "check_crash",
    "check_epoch",
    "check_start",
    "split_output",
]
