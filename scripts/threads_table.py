"""Run the real-thread benchmark and print docs/threads.md's table.

Every thread of tests/realworld/threads/ is rebuilt, fitted with
`LossSanityCallback(action="record")` and diagnosed before training, as
tests/realworld/test_threads.py does; the table shows, per thread, its
symptom, its stated cause, the code the cause maps to, and the first root
cause lossguard reported in fit and in diagnose (with the other root causes
after a "+", and "-" where it reported no error or warning).

    python scripts/threads_table.py > /tmp/table.md
"""

from __future__ import annotations

import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

import lossguard  # noqa: E402
from tests.realworld.threads import THREADS  # noqa: E402

SEED = 1234  # as tests/realworld/test_threads.py


def verdict(report) -> str:
    loud = report.root_causes("warning")
    if not loud:
        info = sorted(f.code for f in report.findings)
        return "-" + (f" (info: {', '.join(info)})" if info else "")
    return " + ".join(f"`{f.code}`" for f in loud)


def run(name):
    keras.utils.set_random_seed(SEED)
    case = THREADS[name]()
    cb = lossguard.LossSanityCallback(action="record", **case.callback_kwargs)
    kwargs = {"verbose": 0, "epochs": 1, **case.fit_kwargs}
    callbacks = [cb, *kwargs.pop("callbacks", [])]
    try:
        case.model.fit(case.x, case.y, callbacks=callbacks, **kwargs)
        crashed = ""
    except Exception as error:  # noqa: BLE001 - the thread's own crash
        crashed = f" (fit stops: {type(error).__name__})"
    fit = verdict(cb.report) + crashed
    if case.diagnose_args is None:
        before = "not run"
    else:
        keras.utils.set_random_seed(SEED)
        fresh = THREADS[name]()
        report = lossguard.diagnose(
            fresh.model, *fresh.diagnose_args, **fresh.diagnose_kwargs
        )
        before = verdict(report)
    return case, fit, before


def main():
    rows = [
        "| thread | symptom | cause (as the thread states it) | catalogue | "
        "fit: root causes | diagnose: root causes |",
        "|---|---|---|---|---|---|",
    ]
    start = time.perf_counter()
    for name in THREADS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case, fit, before = run(name)
        expected = (
            f"`{case.expected}`"
            if case.expected
            else (
                "out of scope"
                if case.scope == "out"
                else f"healthy (`{case.expected_info}` info)"
                if case.expected_info
                else "-"
            )
        )
        if not case.seen_before_training:
            expected += " (after training starts)"
        rows.append(
            f"| [{name}]({case.url}) | {case.symptom} | {case.cause} | {expected} "
            f"| {fit} | {before} |"
        )
    print("\n".join(rows))
    print(
        f"\n{len(THREADS)} threads in {time.perf_counter() - start:.0f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
