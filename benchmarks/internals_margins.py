"""How far the healthy controls of tests/callbacks/test_internal_controls.py
sit from the thresholds of EXPLODING_GRADIENTS, VANISHING_GRADIENTS and
DEAD_UNITS (the evidence behind them), one row per control:

- growth: the largest global gradient norm over the median of the steps
  more than 20 before it (EXPLODING_GRADIENTS needs 100, and a blow-up);
- vanish-ratio: the smallest median gradient norm of a layer over the last
  layer's, over the last 200 steps (VANISHING_GRADIENTS: at most 1e-3);
- loss-fall: how much the loss's median fell from the first 50 to the last
  50 of those steps (VANISHING_GRADIENTS needs under 5%);
- max-dead: the largest share of a ReLU layer's units at 0 on a batch
  (DEAD_UNITS: 90%).

    KERAS_BACKEND=tensorflow python benchmarks/internals_margins.py
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.callbacks import test_internal_controls as controls  # noqa: E402
from tests.helpers import watched_fit  # noqa: E402


def margins(history):
    grads = history[[c for c in history.columns if c.startswith("grad:")]]
    g = grads.to_numpy()
    total = np.sqrt((g**2).sum(1))
    growth = max(total[i] / np.median(total[: i - 20]) for i in range(21, len(total)))
    medians = np.median(g[-200:], axis=0)
    ratio = (medians[:-1] / medians[-1]).min()
    dead = history[[c for c in history.columns if c.startswith("dead:")]]
    most_dead = np.nanmax(dead.to_numpy()) if dead.size else float("nan")
    loss = history["loss"].to_numpy()[-200:]
    fall = 1 - np.median(loss[-50:]) / np.median(loss[:50])
    return growth, ratio, fall, most_dead


def main():
    for control in controls.CONTROLS:
        model, x, y, epochs = controls.run(control)
        cb = watched_fit(
            model,
            x,
            y,
            batch_size=controls.BATCH,
            epochs=epochs,
            options={"internals": True},
        )
        train = cb.history[cb.history["phase"] == "train"]
        growth, ratio, fall, dead = margins(train)
        print(
            f"{control:40s} growth {growth:8.2f}  vanish-ratio {ratio:9.2e}  "
            f"loss-fall {fall:6.1%}  max-dead {dead:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
