"""Every fault lossguard knows, one family per module, and how to run them.

Importing this package declares every code (`lossguard.diagnosis.registry`):

- `labels`: NEGATIVE_LABELS, LABEL_SUM_NOT_ONE, EMPTY_LABEL_ROWS,
  LABELS_OUT_OF_RANGE
- `loss_terms`: NEGATIVE_WEIGHTS, NEGATIVE_AUX_LOSS, LOSS_UNBOUNDED_BELOW,
  NONFINITE_LOSS, NEGATIVE_LOSS
- `predictions`: PREDICTIONS_NOT_PROBABILITIES, PROBABILITIES_AS_LOGITS,
  LOW_PRECISION_SATURATION
- `config`: SINGLE_UNIT_CATEGORICAL, INVALID_LABEL_SMOOTHING,
  SINGLE_UNIT_SOFTMAX, OPTIMIZER_EPSILON_UNDERFLOW
- `seq2seq`: DECODER_TARGET_NOT_SHIFTED, PADDING_NOT_MASKED
- `telltales`: LOSS_AT_UNIFORM, SATURATED_PREDICTIONS
- `internals`: EXPLODING_GRADIENTS, VANISHING_GRADIENTS, DEAD_UNITS
- `embeddings`: EMBEDDING_OOV_ROWS, EMBEDDING_MISALIGNED, EMBEDDING_DRIFT
- `consequences`: which of these codes explains which (root causes)

The callback and `diagnose` call the runners below, which run the registry
by stage; neither knows the list of checks.
"""

from __future__ import annotations

import dataclasses
from enum import Enum

import numpy as np

from lossguard import catalogue
from lossguard.diagnosis.contexts import (
    BatchContext,
    ConfigContext,
    CrashContext,
    EpochContext,
    ModelContext,
    OutputContext,
    TrendContext,
)

# Each family declares its faults when imported; the catalogue
# (docs/faults.md) orders them: that is the order of `Code` and of the
# findings a batch shows.
from lossguard.diagnosis.faults import (  # noqa: F401
    config,
    consequences,
    embeddings,
    internals,
    labels,
    loss_terms,
    predictions,
    seq2seq,
    telltales,
)
from lossguard.diagnosis.faults.format import measured
from lossguard.diagnosis.registry import FAULTS, arrange, checks, run
from lossguard.diagnosis.statistics import OUTPUT_KEYS

arrange(catalogue.codes())

#: The stable fault codes (string values; never renamed).
Code = Enum("Code", {code: code for code in FAULTS}, type=str)
Code.__doc__ = "The stable fault codes of docs/faults.md (never renamed)."


def split_output(row: dict, spec, single: bool) -> dict:
    """One output's statistics out of a batch's row (or a block's columns)."""
    prefix = "" if single else f"{spec.name}/"
    return {key: row.get(prefix + key, float("nan")) for key in OUTPUT_KEYS}


def check_block(columns: dict, specs, known=frozenset()) -> list:
    """Every finding a block of batches shows, as `(batch index, finding)`.

    `columns` maps each statistic to a numpy array with one value per batch.
    Each fault's condition runs over the whole block at once; its check
    explains only the batches where the condition holds. The `unexplained`
    stage sees which codes each batch showed, plus `known` (the codes the
    configuration showed, true for every batch).
    """
    n = len(next(iter(columns.values())))
    single = len(specs) == 1
    outs = [split_output(columns, spec, single) for spec in specs]
    whole = BatchContext(columns, outs, specs)
    hits = []  # (check, code, output index or None for the whole batch, mask)
    for check, when, code in checks("batch"):
        hits.append((check, code, None, _mask(when(whole), n)))
    for i, spec in enumerate(specs):
        context = OutputContext(outs[i], columns, spec, single)
        for check, when, code in checks("output"):
            hits.append((check, code, i, _mask(when(context), n)))
    found = {code: np.ones(n, bool) for code in known}
    for _, code, _, mask in hits:
        found[code] = found.get(code, np.zeros(n, bool)) | mask
    unexplained = BatchContext(columns, outs, specs, found)
    for check, when, code in checks("unexplained"):
        hits.append((check, code, None, _mask(when(unexplained), n)))
    rows = np.flatnonzero(np.any([mask for *_, mask in hits], axis=0)) if hits else []
    result = []
    for row_index in rows:
        row = {key: _scalar(values[row_index]) for key, values in columns.items()}
        row_outs = [split_output(row, spec, single) for spec in specs]
        for check, _, output, mask in hits:
            if not mask[row_index]:
                continue
            if output is None:
                finding = check(BatchContext(row, row_outs, specs))
            else:
                spec, stats = specs[output], row_outs[output]
                finding = check(OutputContext(stats, row, spec, single))
                finding = _annotate(finding, spec, stats)
            result.append((int(row_index), finding))
    return result


def _mask(condition, n) -> np.ndarray:
    """A condition (array or plain bool) as one boolean per batch."""
    return np.broadcast_to(np.asarray(condition, dtype=bool), (n,))


def _scalar(value):
    return float(value) if isinstance(value, np.floating | float) else value


def check_batch(
    row: dict, specs, epoch=None, step=None, phase=None, known=frozenset()
) -> list:
    """Every finding one batch's statistics show (`check_block` on one row)."""
    columns = {key: np.asarray([value]) for key, value in row.items()}
    return [
        dataclasses.replace(f, epoch=epoch, step=step, phase=phase)
        for _, f in check_block(columns, specs, known)
    ]


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
    found = [f for spec in specs for f in run("config", ConfigContext(spec))]
    return found + run("model", ModelContext(model, vocabulary, vectors))


#: Training batches the `trend` stage looks back over.
TREND_ROWS = 256


def check_trend(columns: dict, specs, steps, epochs) -> list:
    """Findings the recent training batches show together (`columns`: each
    statistic's values, oldest batch first; `steps`, `epochs`: where each
    batch ran). Each finding names the step and epoch it began at."""
    single = len(specs) == 1
    outs = [split_output(columns, spec, single) for spec in specs]
    context = TrendContext(columns, outs, specs, np.asarray(steps), np.asarray(epochs))
    return [dataclasses.replace(f, phase="train") for f in run("trend", context)]


def check_crash(error, specs, epoch=None, step=None, phase=None) -> list:
    """Findings that explain an error raised instead of a loss, at the
    batch that raised it."""
    return run("crash", CrashContext(error, specs, epoch, step, phase))


def check_epoch(layer_name, drift, threshold, epoch) -> list:
    """Findings about trained weights after an epoch."""
    return run("epoch", EpochContext(layer_name, drift, threshold, epoch))


__all__ = [
    "Code",
    "FAULTS",
    "check_batch",
    "check_block",
    "check_crash",
    "check_epoch",
    "check_start",
    "check_trend",
    "split_output",
]
