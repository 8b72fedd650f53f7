"""lossguard: Keras training runs that explain their loss.

`import lossguard` registers every loss and metric with
`keras.saving.register_keras_serializable(package="lossguard")`, so a model
compiled with them saves and loads with plain `keras.saving.load_model`.
"""

from lossguard import losses
from lossguard._version import __version__

__all__ = ["__version__", "losses"]
