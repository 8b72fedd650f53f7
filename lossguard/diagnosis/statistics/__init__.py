"""In-graph statistics of one batch: what is measured, and how.

`output_statistics` is the single computation behind the callback,
`diagnose` and the stateful metrics of `lossguard.metrics`: it runs inside
the train step on the exact batch (no extra forward pass) and returns a dict
of float32 scalars. Rows (one per token: every axis but the class axis)
whose sample weight or Keras mask is 0 are *inactive*: they cannot change
the loss, so label and prediction statistics ignore them.

Where things live: `common` (the `Stat` declaration, `ReplicaRule`, the
reductions), `layout` (the batch as rows), `weights`, `labels` (one function
per way a loss kind reads its labels), `predictions`, `sequence`, `losses`
(the model's loss, its extra terms, clipped terms), `schema` (every
statistic, in packing order), `replicas` (one row from several replicas),
`outputs` (the dispatch).

To add a statistic: declare a `Stat` in the tuple of the module whose
function computes it (name, dtype, replica rule, a short doc), return it
from that function, and read it in a check as `ctx.stats[name]` (one
output) or `ctx.batch[name]` (a whole-model one, from `losses`).
`tests/diagnosis/test_statistics.py` holds every function to the keys and
dtypes it declares.
"""

from .common import (
    NAN,
    SUM_TOLERANCE,
    ReplicaRule,
    Stat,
    f32,
    sum_tolerance,
)
from .losses import AUX_TERM, GLOBAL_STATS, OUTPUT_LOSS_STATS
from .outputs import output_statistics
from .predictions import is_keras_softmax
from .replicas import combine_replicas
from .schema import GLOBAL_KEYS, MODEL_COLUMNS, OUTPUT_KEYS, OUTPUT_STATS, stat_of

__all__ = [
    "AUX_TERM",
    "GLOBAL_KEYS",
    "GLOBAL_STATS",
    "MODEL_COLUMNS",
    "NAN",
    "OUTPUT_KEYS",
    "OUTPUT_LOSS_STATS",
    "OUTPUT_STATS",
    "SUM_TOLERANCE",
    "ReplicaRule",
    "Stat",
    "combine_replicas",
    "f32",
    "is_keras_softmax",
    "output_statistics",
    "stat_of",
    "sum_tolerance",
]
