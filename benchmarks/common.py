"""Side-by-side timing: run variants alternately in one process, report medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def alternate(variants: dict[str, Callable[[], object]], reps: int, warmup: int = 2):
    """Call each variant `warmup` times, then `reps` rounds in turn; medians (s)."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}
