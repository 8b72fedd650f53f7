"""Every statistic of a row, in the order a row packs them.

Each module declares the statistics it computes beside the function that
computes them; this one only gathers the declarations.
"""

from __future__ import annotations

from .common import Stat
from .internals import LEARNING_RATE, PREFIXED
from .labels import LABEL_STATS
from .layout import LAYOUT_STATS
from .losses import AUX_TERM, CLIP_STATS, GLOBAL_STATS, OUTPUT_LOSS_STATS
from .predictions import PREDICTION_STATS
from .sequence import SEQUENCE_STATS
from .weights import WEIGHT_STATS

#: One output's statistics on one batch.
OUTPUT_STATS = (
    *LAYOUT_STATS,
    *LABEL_STATS,
    *PREDICTION_STATS,
    *WEIGHT_STATS,
    *SEQUENCE_STATS,
    *CLIP_STATS,
)

#: The per-output statistics, in the order they are packed.
OUTPUT_KEYS = tuple(stat.name for stat in OUTPUT_STATS)
GLOBAL_KEYS = tuple(stat.name for stat in GLOBAL_STATS)
#: Statistics the history also shows for the whole model: name -> min | max.
MODEL_COLUMNS = {s.name: s.outputs for s in OUTPUT_STATS if s.outputs}
_BY_NAME = {s.name: s for s in (*GLOBAL_STATS, *OUTPUT_STATS, *OUTPUT_LOSS_STATS)}


def stat_of(key: str) -> Stat:
    """The declaration behind a packed key (`label_min`, `out/label_min`,
    `aux:dense`, `grad:dense`, ...)."""
    for stat in (AUX_TERM, *PREFIXED):
        if key.startswith(stat.name):
            return stat
    if key == LEARNING_RATE.name:
        return LEARNING_RATE
    return _BY_NAME[key.rsplit("/", 1)[-1]]
