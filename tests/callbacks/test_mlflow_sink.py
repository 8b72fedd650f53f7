"""Findings in MLflow (`LossSanityCallback(mlflow=True)`), against MLflow's
local file store in a temporary folder."""

import importlib.util
import warnings

import keras
import numpy as np
import pytest

import lossguard
from tests.helpers import classifier

mlflow = pytest.importorskip("mlflow")


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for it
    mlflow.set_tracking_uri(f"file://{tmp_path / 'mlruns'}")
    yield mlflow.MlflowClient()
    while mlflow.active_run():
        mlflow.end_run()


def negative_labels_fit(cb):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[np.arange(64) % 3]
    y[40:] *= -1  # the third batch has -1 rows
    model = classifier()
    model.compile("adam", "categorical_crossentropy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, batch_size=16, shuffle=False, verbose=0, callbacks=[cb])


def artifacts(client, run_id):
    return sorted(a.path for a in client.list_artifacts(run_id, "lossguard"))


def test_findings_go_to_the_run_the_user_has_open(store):
    with mlflow.start_run() as run:
        mlflow.log_param("lr", 0.001)  # the user's own logging
        negative_labels_fit(lossguard.LossSanityCallback(action="record", mlflow=True))
        assert mlflow.active_run().info.run_id == run.info.run_id  # still theirs
    data = store.get_run(run.info.run_id).data
    tag = data.tags["lossguard.NEGATIVE_LABELS"]
    assert tag.startswith("error at epoch 0, step 2: Labels go down to -1")
    assert data.tags["lossguard.LABEL_SUM_NOT_ONE"].startswith(
        "error at epoch 0, step 2; follows from NEGATIVE_LABELS"
    )
    (errors,) = store.get_metric_history(run.info.run_id, "lossguard.errors")[-1:]
    assert errors.value == 2 and errors.step == 2
    roots = store.get_metric_history(run.info.run_id, "lossguard.root_causes")
    assert roots[-1].value == 1
    assert data.params == {"lr": "0.001"}
    names = artifacts(store, run.info.run_id)
    assert names == [
        "lossguard/loss.png",
        "lossguard/report.json",
        "lossguard/report.txt",
    ]
    text = store.download_artifacts(run.info.run_id, "lossguard/report.txt")
    assert open(text).read().startswith("lossguard found 1 root cause(s)")


def test_without_an_open_run_lossguard_starts_and_ends_one(store):
    cb = lossguard.LossSanityCallback(action="record", mlflow=True)
    negative_labels_fit(cb)
    assert mlflow.active_run() is None
    (run,) = store.search_runs([store.get_experiment_by_name("Default").experiment_id])
    assert run.info.status == "FINISHED"
    assert "lossguard.NEGATIVE_LABELS" in run.data.tags
    assert "lossguard/report.txt" in artifacts(store, run.info.run_id)


def test_raise_logs_the_report_before_it_raises(store):
    with mlflow.start_run() as run:
        with pytest.raises(lossguard.LossSanityError):
            negative_labels_fit(
                lossguard.LossSanityCallback(action="raise", mlflow=True)
            )
    assert "lossguard/report.json" in artifacts(store, run.info.run_id)


def test_mlflow_true_without_mlflow_fails_when_given(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "mlflow" else real(name, *a),
    )
    with pytest.raises(ImportError, match=r'pip install "lossguard\[mlflow\]"'):
        lossguard.LossSanityCallback(mlflow=True)
