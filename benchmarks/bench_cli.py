"""How fast the `lossguard` command answers, beside a bare Python and Keras' import.

Each command runs as a user runs it (the installed console script, a fresh
process), alternated with `python -c pass` (the floor any command pays) and
`python -c "import keras"` (what a command that imports lossguard pays);
medians over `--reps` rounds. `--help`, `--version`, `explain`, a bad
argument and a missing file must answer without importing Keras.

    python benchmarks/bench_cli.py --reps 5
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from common import alternate

SCRIPT = str(Path(sys.executable).with_name("lossguard"))
CASES = {
    "--help": [SCRIPT, "--help"],
    "--version": [SCRIPT, "--version"],
    "explain": [SCRIPT, "explain"],
    "explain CODE": [SCRIPT, "explain", "NEGATIVE_LABELS"],
    "bad command": [SCRIPT, "frobnicate"],
    "missing file": [SCRIPT, "diagnose", "missing.keras", "missing.npz"],
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    "import keras (baseline)": [sys.executable, "-c", "import keras"],
}


def runner(argv):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def run():
        subprocess.run(argv, capture_output=True, env=env, check=False)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    medians = alternate(
        {name: runner(argv) for name, argv in CASES.items()}, args.reps, warmup=1
    )
    keras_import = medians["import keras (baseline)"]
    print(f"{'command':<26} {'median':>9} {'/ import keras':>15}")
    for name, seconds in medians.items():
        print(f"{name:<26} {seconds * 1000:>7.0f}ms {seconds / keras_import:>15.3f}")


if __name__ == "__main__":
    main()
