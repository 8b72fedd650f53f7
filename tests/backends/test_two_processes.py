"""Two real processes training together under JAX's distributed runtime
(`keras.distribution.DataParallel`): each sees the global batch's statistics
and reports the same findings as one process training on the global batch;
only process 0 writes the log and TensorBoard.

Skipped where JAX is not installed (`pip install lossguard[jax]`).
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import communicate_all, free_ports

SCRIPT = Path(__file__).resolve().parent / "two_process_run.py"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None,
    reason="JAX is not installed (pip install lossguard[jax])",
)


def _start(args, env):
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *map(str, args)],
        env={**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait(procs, timeout=420):
    for code, log in communicate_all(procs, timeout):
        assert code == 0, log[-3000:]


def test_two_jax_processes_report_what_one_process_sees(tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    # One CPU device per process: the two processes make the 2-device mesh.
    cpu = {"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    single = _start(["single", one / "out.json", one], cpu)
    _wait([single])
    (port,) = free_ports(1)
    workers = [
        _start(["worker", tmp_path / f"p{i}.json", tmp_path, i, port], cpu)
        for i in range(2)
    ]
    _wait(workers)
    reference = json.loads((one / "out.json").read_text())
    p0, p1 = (json.loads((tmp_path / f"p{i}.json").read_text()) for i in range(2))
    assert p0["devices"] == p1["devices"] == 2
    for run in ("healthy", "bad"):
        # The statistics describe the global batch: 16 sentences x 6 tokens.
        assert p0[run]["rows"] == p1[run]["rows"] == reference[run]["rows"]
        assert set(reference[run]["rows"]) == {96.0}
        assert p0[run]["loss"] == pytest.approx(reference[run]["loss"], rel=1e-4)
        assert p1[run]["loss"] == p0[run]["loss"]
        # The same findings, at the same step, with the same evidence.
        assert p0[run]["findings"] == p1[run]["findings"] == reference[run]["findings"]
    assert reference["healthy"]["findings"] == []
    (bad,) = reference["bad"]["findings"]
    assert (bad["code"], bad["epoch"], bad["step"]) == ("LABELS_OUT_OF_RANGE", 0, 2)
    assert float(bad["evidence"]["out_of_range_share"]) == pytest.approx(1 / 74)
    # Only process 0 writes the log and the TensorBoard events.
    for run in ("healthy", "bad"):
        assert (tmp_path / f"{run}0.csv").exists()
        assert not (tmp_path / f"{run}1.csv").exists()
        assert any((tmp_path / f"tb_{run}0").iterdir())
        assert not (tmp_path / f"tb_{run}1").exists()
