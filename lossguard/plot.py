"""Per-batch loss plots (needs the `plot` extra: matplotlib)."""

from __future__ import annotations

#: Statistics drawn beneath the loss, when the history has them.
STATISTICS = (
    ("label_min", "min label"),
    ("label_sum_max", "max label row sum"),
    ("label_out_of_range_share", "share of labels out of range"),
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
        return "label_sum_max" in history and history["label_sum_max"].notna().any()
    if column == "weight_min":  # a mask's zeros are expected: plot signs only
        return bool((history[column] < 0).any())
    return True


#: Columns a plot reads from a log (the rest is left on disk).
COLUMNS = (
    "phase",
    "global_step",
    "loss",
    "running_loss",
    "findings",
    *(c for c, _ in STATISTICS),
)
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


def _positions(history):
    """Each row's place on the x axis: its training batch (`global_step`;
    a validation batch sits where training stood when it ran)."""
    import numpy as np

    if "global_step" in history and history["global_step"].notna().all():
        return history["global_step"].to_numpy(dtype=float)
    if "phase" not in history:
        return np.arange(len(history), dtype=float)
    train = (history["phase"] == "train").to_numpy()
    return np.maximum(np.cumsum(train) - train, 0).astype(float)


def _split(history):
    """(train rows, validation rows), each with its x positions."""
    x = _positions(history)
    if "phase" not in history:
        return (history, x), (history.iloc[:0], x[:0])
    valid = (history["phase"] == "validation").to_numpy()
    return (
        (history[~valid].reset_index(drop=True), x[~valid]),
        (history[valid].reset_index(drop=True), x[valid]),
    )


def _loss_panel(ax, label, train, validation):
    """The loss of each batch, Keras' running mean, validation batches, and
    impossible batches (negative or non-finite) in red."""
    import numpy as np

    (rows, x), (vrows, vx) = train, validation
    loss = rows["loss"].to_numpy(dtype=float)
    if len(loss):
        ax.plot(
            *_on(x, loss),
            label=f"{label}: loss of each training batch",
            lw=1.2,
            marker="o" if len(loss) < 5 else None,
        )
    if "running_loss" in rows and rows["running_loss"].notna().any():
        running = rows["running_loss"].to_numpy(dtype=float)
        running = np.where(np.isfinite(running), running, np.nan)
        ax.plot(*_on(x, running), ls=":", lw=1, label=f"{label}: Keras running mean")
    vloss = vrows["loss"].to_numpy(dtype=float)
    if len(vloss):
        ax.scatter(
            vx,
            np.nan_to_num(vloss),
            marker="x",
            s=22,
            color="tab:orange",
            zorder=3,
            label=f"{label}: loss of each validation batch",
        )
    x_all = np.concatenate([x, vx])
    loss_all = np.concatenate([loss, vloss])
    bad = ~np.isfinite(loss_all) | (loss_all < 0)
    if bad.any():
        ax.scatter(
            x_all[bad],
            np.nan_to_num(loss_all[bad]),
            facecolors="none",
            edgecolors="red",
            zorder=4,
            s=60,
            label=f"{label}: impossible batches ({int(bad.sum())}, "
            f"{int(bad[len(loss) :].sum())} in validation)",
        )


def _on(x, values):
    """An envelope of a line over x positions (see `_envelope`)."""
    import numpy as np

    index, y = _envelope(values)
    return np.interp(index, np.arange(len(x)), x) if len(x) else index, y


def _mark_findings(ax, history):
    """A dashed line at the first batch of each finding code, labelled."""
    x = _positions(history)
    seen = set()
    for i, codes in _codes(history):
        new = [c for c in codes if c not in seen]
        if not new:
            continue
        seen.update(new)
        phase = history["phase"].iloc[i] if "phase" in history else "train"
        where = " (validation)" if phase == "validation" else ""
        ax.axvline(x[i], color="darkred", lw=0.8, ls="--", alpha=0.6)
        ax.annotate(
            "\n".join(new) + where,
            (x[i], 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -3),
            textcoords="offset points",
            va="top",
            fontsize=7,
            color="darkred",
        )


def _statistics_panel(low, histories):
    """The label, prediction and weight statistics the histories hold:
    training batches as lines, validation batches as marks."""
    drawn = 0
    for label, ((rows, x), (vrows, vx)) in histories.items():
        prefix = f"{label}: " if len(histories) > 1 else ""
        for column, name in STATISTICS:
            whole = rows if len(rows) else vrows
            if not _informative(whole, column):
                continue
            (line,) = low.plot(
                *_on(x, rows[column].to_numpy(dtype=float)) if len(rows) else ([], []),
                lw=1,
                marker="o" if len(rows) < 5 else None,
                label=prefix + name,
            )
            if len(vrows) and column in vrows:
                low.scatter(vx, vrows[column], marker="x", s=14, color=line.get_color())
            drawn += 1
    low.axhline(0, color="grey", lw=0.8)
    low.set_ylabel("batch statistics")
    if drawn:
        low.legend(fontsize=7, ncol=3, loc="best")
    else:
        low.text(
            0.5,
            0.5,
            "no label, prediction or weight statistics in this log",
            ha="center",
            va="center",
            transform=low.transAxes,
        )


def plot_history(histories, path, title="per-batch loss", statistics=True):
    """Draw `figure(histories, ...)` into `path` (the format follows the
    suffix); returns `path`."""
    fig = figure(histories, title=title, statistics=statistics)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def figure(histories, title="per-batch loss", statistics=True):
    """The per-batch loss of one or more `LossSanityCallback.history` frames.

    The top panel shows the loss of each training batch (and Keras' running
    mean when recorded) and each validation batch (x marks, where training
    stood when it ran); impossible batches (negative or non-finite loss) are
    circled in red, in either phase, and the first batch of each finding code
    is marked and labelled. With `statistics=True`, a second panel shows the
    label, prediction and weight statistics the history holds (NaN columns
    are left out; sparse labels show the share of ids out of range).

    Args:
        histories: A DataFrame, or a dict mapping a label to a DataFrame with a
            `loss` column (and optionally `running_loss`, `findings`, ...).
        title: The figure title.
        statistics: Whether to draw the statistics panel.

    Returns:
        The matplotlib `Figure`.
    """
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
    split = {label: _split(history) for label, history in histories.items()}
    for label, history in histories.items():
        _loss_panel(ax, label, *split[label])
        _mark_findings(ax, history)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    if statistics:
        _statistics_panel(axes[1][0], split)
    axes[-1][0].set_xlabel("training batch")
    fig.tight_layout()
    return fig
