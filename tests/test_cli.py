"""The `lossguard` command, run as a user runs it."""

import subprocess
import sys

import pandas as pd

import lossguard


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "lossguard.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_version_and_help():
    assert lossguard.__version__ in run("--version").stdout
    assert "demo" in run("--help").stdout


def test_demo_explains_broken_run_and_trains_fixed_one(tmp_path):
    out = tmp_path / "demo"
    result = run("demo", "--out", str(out), "--epochs", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    assert "NEGATIVE_LABELS" in text and "First thing to fix" in text
    broken = pd.read_csv(out / "broken_history.csv")
    fixed = pd.read_csv(out / "fixed_history.csv")
    assert broken.loss.iloc[-1] < 0  # stopped on the first impossible batch
    assert (broken.loss.iloc[:-1] >= 0).all()
    assert f"batch loss {broken.loss.iloc[-1]:.4f}" in text
    assert (fixed.loss >= 0).all()
    assert fixed.groupby("epoch").loss.mean().is_monotonic_decreasing
    assert "findings: 0 error/warning" in text
    assert (out / "loss.png").stat().st_size > 10_000
