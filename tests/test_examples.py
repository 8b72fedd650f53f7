"""The example scripts run as users run them and print what lossguard found."""

import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def run(name):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize(
    "name, expect",
    [
        ("01_glove_targets_negative_loss.py", ["NEGATIVE_LABELS", "negative loss"]),
        ("02_fixed_sparse_stable_masked.py", ["no findings"]),
        ("03_fine_tuned_embedding_drift.py", ["EMBEDDING_DRIFT", "mean_cosine"]),
        (
            "04_clipping_hides_the_bug.py",
            ["never negative", "NEGATIVE_LABELS", "clipped into [0, 10]", "hides"],
        ),
        ("05_negative_val_loss.py", ["NEGATIVE_LABELS (epoch 0, validation step"]),
    ],
)
def test_example_prints_its_finding(name, expect):
    out = run(name)
    for text in expect:
        assert text in out, out[-3000:]
    if name.startswith("01"):
        lowest = float(re.search(r"lowest (-?[\d.]+)", out).group(1))
        assert lowest < 0
    if name.startswith("02"):
        losses = re.search(r"per epoch: (.*)", out).group(1).split(", ")
        assert [float(v) for v in losses] == sorted(map(float, losses), reverse=True)
    if name.startswith("04"):
        assert float(re.search(r"min (-?[\d.]+) over", out).group(1)) >= 0
    if name.startswith("05"):
        val_losses = re.search(r"val_loss per epoch (.*)", out).group(1).split(", ")
        assert all(float(v) < 0 for v in val_losses)
        assert "train: 32 batches, lowest label 0" in out
