"""The `lossguard` console script: the CLI, without TensorFlow's start-up noise.

This module sits beside the `lossguard` package (like `lossguard_pytest`):
importing anything inside the package runs its `__init__`, which imports
TensorFlow, and TensorFlow's C++ start-up lines (oneDNN, CUDA, absl) are
written to stderr during that import. The command must quiet them first.
"""

from __future__ import annotations

import os
import sys


def quiet_tensorflow_start():
    """Import TensorFlow without its start-up log lines, unless asked for them.

    TensorFlow's C++ logging writes oneDNN/CUDA/absl lines to the process's
    stderr while it is imported, before `TF_CPP_MIN_LOG_LEVEL` is read by
    every part of it (some are written whatever it says); so, unless the user
    set that variable below 3 to see them, the command sets it to 3 and holds
    stderr (file descriptor 2) while TensorFlow and Keras import. What was
    held is written out if the import fails.
    """
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if level != "3" or "tensorflow" in sys.modules:
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def main(argv: list[str] | None = None) -> int:
    """`lossguard ...`: quiet TensorFlow's start, then run `lossguard.cli`."""
    quiet_tensorflow_start()  # lossguard.cli imports the package, and so TensorFlow
    from lossguard.cli import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
