"""What a check reads: one context per stage, with spelled-out names.

Every check of the registry takes one of these and nothing else
(`check(ctx)`; a block stage's condition `when(ctx)` too), so a new field
never changes a signature. At the block stages (`batch`, `output`,
`unexplained`) the statistics are columns, one value per batch, while a
condition runs, and scalars of one batch while its check explains it.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class ConfigContext:
    """Stage `config`: one output's compile configuration."""

    spec: Any  # OutputSpec


@dataclasses.dataclass(frozen=True)
class ModelContext:
    """Stage `model`: the model's structure (its embedding layers, its
    optimizer), and what the user says the embeddings came from."""

    model: Any
    vocabulary: Any = None
    vectors: Any = None


@dataclasses.dataclass(frozen=True)
class BatchContext:
    """Stages `batch` and `unexplained`: the whole model's statistics of a
    batch (`batch["loss"]`, `batch["aux_loss"]`, ...), each output's
    (`outputs[i]`, keyed as `OutputContext.stats`) and their specs; for
    `unexplained`, `found` maps each code the other stages found to where
    (a boolean per batch)."""

    batch: dict
    outputs: list
    specs: list
    found: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class OutputContext:
    """Stage `output`: one output's statistics on a batch (`stats`), the
    whole model's (`batch`), the output's spec, and whether it is the
    model's only output (messages name the output only where there are
    several)."""

    stats: dict
    batch: dict
    spec: Any  # OutputSpec
    single: bool = True


@dataclasses.dataclass(frozen=True)
class TrendContext:
    """Stage `trend`: the recent training batches, oldest first, after each
    block is read in `fit`: each output's statistics as columns (`outputs[i]`,
    keyed as `OutputContext.stats`), the whole model's (`batch`), their
    specs, and each batch's step number and epoch."""

    batch: dict
    outputs: list
    specs: list
    steps: Any  # numpy arrays, one value per batch
    epochs: Any


@dataclasses.dataclass(frozen=True)
class CrashContext:
    """Stage `crash`: the error a step raised instead of a loss, and the
    batch it raised on."""

    error: BaseException
    specs: list
    epoch: int | None = None
    step: int | None = None
    phase: str | None = None


@dataclasses.dataclass(frozen=True)
class EpochContext:
    """Stage `epoch`: how far a fine-tuned embedding moved (`drift`, from
    `lossguard.diagnosis.faults.embeddings.drift`) after an epoch."""

    layer_name: str
    drift: dict
    threshold: float
    epoch: int
