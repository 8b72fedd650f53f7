"""Per-batch loss plots (needs the `plot` extra: matplotlib)."""

from __future__ import annotations


def plot_history(histories: dict, path, title="per-batch loss"):
    """Plot each history's per-batch loss; mark impossible (negative or
    non-finite) batches in red. `histories` maps a label to a DataFrame with
    a `loss` column (LossSanityCallback.history). Returns the path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "Plotting needs matplotlib: pip install 'lossguard[plot]'."
        ) from None
    import numpy as np

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for label, history in histories.items():
        loss = history["loss"].to_numpy(dtype=float)
        steps = np.arange(len(loss))
        ax.plot(steps, loss, label=f"{label}: loss of each batch", lw=1.2)
        if "running_loss" in history:
            ax.plot(
                steps,
                history["running_loss"].to_numpy(dtype=float),
                ls=":",
                lw=1,
                label=f"{label}: Keras running mean",
            )
        bad = ~np.isfinite(loss) | (loss < 0)
        if bad.any():
            ax.scatter(
                steps[bad],
                np.nan_to_num(loss[bad]),
                color="red",
                zorder=3,
                s=18,
                label=f"{label}: impossible batches ({bad.sum()})",
            )
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("training batch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
