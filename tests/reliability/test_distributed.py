"""tf.distribute: the callback sees the global batch, like one device would.

Each run is a fresh process: logical devices and TF_CONFIG are fixed when
TensorFlow starts.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import communicate_all, free_ports

SCRIPT = os.path.join(os.path.dirname(__file__), "distributed_run.py")


def run(args, env=None, timeout=240):
    return subprocess.Popen(
        [sys.executable, SCRIPT, *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def same_findings(a, b):
    assert [f["code"] for f in a] == [f["code"] for f in b]
    for fa, fb in zip(a, b, strict=True):
        assert fa["step"] == fb["step"]
        for key, value in fa["evidence"].items():
            if key == "output":  # layer names differ between two models
                continue
            if isinstance(value, float):
                assert fb["evidence"][key] == pytest.approx(value, rel=1e-5), key
            else:
                assert fb["evidence"][key] == value, key


def test_mirrored_strategy_matches_the_single_device_run(tmp_path):
    out = tmp_path / "mirrored.json"
    proc = run(["mirrored", str(out)])
    log, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, log[-3000:]
    result = json.loads(out.read_text())
    assert result["replicas"] == 2
    single, mirrored = result["single"], result["mirrored"]
    assert mirrored["rows"] == single["rows"] == [40.0] * 4  # the global batch
    assert mirrored["loss"] == pytest.approx(single["loss"], rel=1e-5)
    assert mirrored["label_min"] == single["label_min"]
    same_findings(single["findings"], mirrored["findings"])
    assert {f["code"] for f in single["findings"]} == {
        "NEGATIVE_LABELS",
        "LABEL_SUM_NOT_ONE",
        "EMPTY_LABEL_ROWS",
    }


def two_workers(mode, tmp_path):
    """Run `mode` in two worker processes on localhost; their return codes
    and output."""
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
    procs = []
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        args = [mode, str(tmp_path / f"w{index}.json"), str(tmp_path / f"w{index}.csv")]
        procs.append(run(args, env={"TF_CONFIG": json.dumps(tf_config)}))
    return communicate_all(procs, timeout=300)


def test_multi_worker_strategy_two_processes_only_chief_logs(tmp_path):
    baseline = two_workers("plain-worker", tmp_path)
    if any(code != 0 for code, _ in baseline):
        log = next(log for code, log in baseline if code != 0)
        if "PerReplica" in log:
            pytest.skip(
                "Keras itself cannot fit under MultiWorkerMirroredStrategy here "
                "(keras-team/keras#20585: 'Attempt to convert a value (PerReplica"
                "...)'), without lossguard; nothing to watch until it can."
            )
        raise AssertionError(log[-3000:])
    for code, log in two_workers("worker", tmp_path):
        assert code == 0, log[-3000:]
    chief = json.loads((tmp_path / "w0.json").read_text())
    other = json.loads((tmp_path / "w1.json").read_text())
    assert chief["replicas"] == 2
    # Both workers see the same, global-batch statistics and findings.
    assert chief["run"]["loss"] == pytest.approx(other["run"]["loss"], rel=1e-6)
    same_findings(chief["run"]["findings"], other["run"]["findings"])
    assert "NEGATIVE_LABELS" in {f["code"] for f in chief["run"]["findings"]}
    assert (tmp_path / "w0.csv").exists() and not (tmp_path / "w1.csv").exists()


class _Resolver:
    def __init__(self, cluster, task_type, task_id):
        self._cluster, self.task_type, self.task_id = cluster, task_type, task_id

    def cluster_spec(self):
        import tensorflow as tf

        return tf.train.ClusterSpec(self._cluster)


def _model(resolver):
    from types import SimpleNamespace

    return SimpleNamespace(
        distribute_strategy=SimpleNamespace(cluster_resolver=resolver)
    )


def test_only_the_chief_writes():
    from lossguard.callbacks.state import is_chief as _is_chief

    workers = {"worker": ["localhost:1", "localhost:2"]}
    assert _is_chief(_model(None))  # one process
    assert _is_chief(_model(_Resolver(workers, "worker", 0)))
    assert not _is_chief(_model(_Resolver(workers, "worker", 1)))
    with_chief = {"chief": ["localhost:0"], **workers}
    assert _is_chief(_model(_Resolver(with_chief, "chief", 0)))
    assert not _is_chief(_model(_Resolver(with_chief, "worker", 0)))


def test_a_non_chief_worker_writes_no_log(tmp_path):
    from lossguard.callbacks.history import History
    from lossguard.callbacks.sinks import LogFile
    from lossguard.callbacks.state import is_chief

    workers = {"worker": ["localhost:1", "localhost:2"]}
    for task, expect in ((1, False), (0, True)):
        path = tmp_path / f"task{task}.csv"
        store = History(["loss"])
        store.append([[1.0]], 0, [0], "train", [1.0], [0])
        log = LogFile(
            str(path),
            100,
            frame=lambda start, store=store: store.frame(
                ("epoch", "loss"), start=start
            ),
            total=lambda store=store: store.total,
            trim=store.trim,
            is_chief=is_chief,
        )
        log.start(_model(_Resolver(workers, "worker", task)))
        log.flush()
        assert path.exists() is expect
