"""Per-batch loss plots (needs the `plot` extra: matplotlib)."""

from __future__ import annotations

#: Statistics drawn beneath the loss, when the history has them.
STATISTICS = (
    ("label_min", "min label"),
    ("label_sum_max", "max label row sum"),
    ("pred_min", "min prediction"),
    ("pred_max", "max prediction"),
    ("weight_min", "min weight"),
)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "Plotting needs matplotlib: pip install 'lossguard[plot]'."
        ) from None
    return plt


def _informative(history, column) -> bool:
    """Whether a statistics column says something in this plot."""
    if column not in history or not history[column].notna().any():
        return False
    if column == "label_min":  # sparse labels: the smallest id, not a value
        return "label_sum_min" in history and history["label_sum_min"].notna().any()
    if column == "weight_min":  # a mask's zeros are expected: plot signs only
        return bool((history[column] < 0).any())
    return True


#: Columns a plot reads from a log (the rest is left on disk).
COLUMNS = ("phase", "loss", "running_loss", "findings", *(c for c, _ in STATISTICS))
#: Above this many batches, lines are drawn as a min/max envelope per bucket.
BUCKETS = 2000


def read_log(path):
    """A LossSanityCallback log (.csv or .parquet), only the plotted columns."""
    import pandas as pd

    if str(path).endswith(".parquet"):
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        return pd.read_parquet(path, columns=[c for c in COLUMNS if c in names])
    return pd.read_csv(
        path, usecols=lambda c: c in COLUMNS, dtype={"findings": str, "phase": str}
    )


def _codes(history):
    """(batch, codes) of the batches that show findings (`findings` column)."""
    if "findings" not in history:
        return []
    values = history["findings"].fillna("").astype(str).to_numpy()
    rows = ((values != "") & (values != "nan")).nonzero()[0]
    return [(int(row), [c for c in values[row].split(";") if c]) for row in rows]


def _envelope(values):
    """(x, y) to draw: every batch, or for long runs the min and max of each
    of BUCKETS buckets (spikes stay visible, the line stays cheap)."""
    import numpy as np

    n = len(values)
    if n <= 2 * BUCKETS:
        return np.arange(n), values
    size = -(-n // BUCKETS)
    padded = np.full(size * BUCKETS, np.nan)
    padded[:n] = values
    blocks = padded.reshape(BUCKETS, size)
    import warnings

    with warnings.catch_warnings():  # an all-NaN bucket draws nothing
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanmin(blocks, axis=1), np.nanmax(blocks, axis=1)
    x = np.repeat(np.arange(BUCKETS) * size + size // 2, 2)
    return x, np.column_stack([low, high]).ravel()


def plot_history(histories, path, title="per-batch loss", statistics=True):
    """Plot the per-batch loss of one or more `LossSanityCallback.history` frames.

    The top panel shows the loss of each batch (and Keras' running mean when
    recorded); impossible batches (negative or non-finite loss) are red dots,
    and the first batch of each finding code is marked and labelled. With
    `statistics=True`, a second panel shows the label, prediction and weight
    statistics the history holds (NaN columns are left out).

    Args:
        histories: A DataFrame, or a dict mapping a label to a DataFrame with a
            `loss` column (and optionally `running_loss`, `findings`, ...).
        path: Where to write the image (the format follows the suffix).
        title: The figure title.
        statistics: Whether to draw the statistics panel.

    Returns:
        `path`.
    """
    import numpy as np

    if not isinstance(histories, dict):
        histories = {"run": histories}
    for label, history in histories.items():
        if "loss" not in history:
            raise ValueError(
                f"History {label!r} has no 'loss' column; it has "
                f"{list(history.columns)}. Pass LossSanityCallback.history or "
                "the CSV its log_path wrote."
            )
    plt = _pyplot()
    panels = 2 if statistics else 1
    fig, axes = plt.subplots(
        panels,
        1,
        figsize=(9, 4.5 + 2.5 * (panels - 1)),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [2, 1][:panels]},
    )
    ax = axes[0][0]
    histories = {
        label: history[history["phase"] == "train"].reset_index(drop=True)
        if "phase" in history
        else history
        for label, history in histories.items()
    }
    for label, history in histories.items():
        loss = history["loss"].to_numpy(dtype=float)
        steps = np.arange(len(loss))
        dots = "o" if len(loss) < 5 else None  # a line needs two points
        ax.plot(
            *_envelope(loss), label=f"{label}: loss of each batch", lw=1.2, marker=dots
        )
        if "running_loss" in history and history["running_loss"].notna().any():
            running = history["running_loss"].to_numpy(dtype=float)
            ok = np.isfinite(running)
            ax.plot(
                *_envelope(np.where(ok, running, np.nan)),
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
                s=36,
                label=f"{label}: impossible batches ({bad.sum()})",
            )
        seen = set()
        for i, codes in _codes(history):
            new = [c for c in codes if c not in seen]
            if not new:
                continue
            seen.update(new)
            ax.axvline(i, color="darkred", lw=0.8, ls="--", alpha=0.6)
            ax.annotate(
                "\n".join(new),
                (i, 1),
                xycoords=("data", "axes fraction"),
                xytext=(3, -3),
                textcoords="offset points",
                va="top",
                fontsize=7,
                color="darkred",
            )
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    if statistics:
        low = axes[1][0]
        drawn = 0
        for label, history in histories.items():
            prefix = f"{label}: " if len(histories) > 1 else ""
            for column, name in STATISTICS:
                if _informative(history, column):
                    low.plot(
                        *_envelope(history[column].to_numpy(dtype=float)),
                        lw=1,
                        marker="o" if len(history) < 5 else None,
                        label=prefix + name,
                    )
                    drawn += 1
        low.axhline(0, color="grey", lw=0.8)
        low.set_ylabel("batch statistics")
        if drawn:
            low.legend(fontsize=7, ncol=3, loc="best")
        else:
            low.text(0.5, 0.5, "no statistics recorded", ha="center", va="center")
    axes[-1][0].set_xlabel("training batch")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
