"""lossguard: Keras training runs that explain their loss.

`import lossguard` registers every loss and metric with
`keras.saving.register_keras_serializable(package="lossguard")`, so a model
compiled with them saves and loads with plain `keras.saving.load_model`.
"""

import logging

from lossguard import glove, losses, metrics
from lossguard._version import __version__
from lossguard.callbacks import EmbeddingDriftMonitor, LossSanityCallback
from lossguard.diagnosis import (
    Code,
    Finding,
    LossSanityError,
    LossSanityWarning,
    Report,
)
from lossguard.diagnosis.diagnose import diagnose

logging.getLogger("lossguard").addHandler(logging.NullHandler())

__all__ = [
    "Code",
    "EmbeddingDriftMonitor",
    "Finding",
    "LossSanityCallback",
    "LossSanityError",
    "LossSanityWarning",
    "Report",
    "__version__",
    "diagnose",
    "glove",
    "losses",
    "metrics",
]
