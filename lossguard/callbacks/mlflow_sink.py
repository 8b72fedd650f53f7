"""Findings logged to MLflow, in the run the user already has open.

`LossSanityCallback(mlflow=True)` (the `mlflow` extra: `pip install
"lossguard[mlflow]"`) writes, to the MLflow run that is active when `fit`
starts (or to one it starts, and ends, itself when none is):

- each finding as a run tag `lossguard.<CODE>` ("error at epoch 0, step 3;
  follows from ...") as soon as it is recorded, and the metrics
  `lossguard.errors`, `lossguard.warnings` and `lossguard.root_causes`
  (counts so far) at the training step it was found on;
- when training ends (or `action="raise"` ends it): the report as
  `lossguard/report.txt` and `lossguard/report.json`, and the per-batch plot
  as `lossguard/loss.png` where matplotlib is installed.

The run is addressed by its id through `MlflowClient`, so a finding found in
Keras' hook thread (JAX, PyTorch) still lands in the user's run.
"""

from __future__ import annotations

import logging
import os
import tempfile

from lossguard.callbacks.sinks import Sink

logger = logging.getLogger("lossguard")


class MlflowSink(Sink):
    """Writes findings, the report and the plot to one MLflow run."""

    def __init__(self):
        self.run_id = None
        self.owned = False  # a run lossguard started (and ends)
        self._client = None

    def start(self, model=None) -> None:
        """Address the active run, or start one (on the thread fit runs on)."""
        import mlflow

        active = mlflow.active_run()
        if active is None:
            active = mlflow.start_run()
            self.owned = True
            logger.info(
                "lossguard: no MLflow run was open; it logs to run %s, which it "
                "ends when training ends.",
                active.info.run_id,
            )
        self.run_id = active.info.run_id
        self._client = mlflow.MlflowClient()

    def finding(self, finding, report, step) -> None:
        """Tag the run with a new finding; log the counts at `step`."""
        if self.run_id is None:
            return
        where = f" at {finding.where}" if finding.where else ""
        cause = f"; follows from {finding.caused_by}" if finding.caused_by else ""
        self._client.set_tag(
            self.run_id,
            f"lossguard.{finding.code}",
            f"{finding.severity}{where}{cause}: {finding.message}"[:5000],
        )
        counts = {
            "lossguard.errors": len(report.errors),
            "lossguard.warnings": len(report.warnings),
            "lossguard.root_causes": len(report.root_causes("warning")),
        }
        for key, value in counts.items():
            self._client.log_metric(self.run_id, key, value, step=int(step))

    def end(self, report) -> None:
        """The report and the plot as artifacts; end a run lossguard began."""
        if self.run_id is None:
            return
        try:
            self._client.log_text(self.run_id, str(report), "lossguard/report.txt")
            self._client.log_text(
                self.run_id, report.to_json(), "lossguard/report.json"
            )
            self._log_plot(report.history)
        finally:
            if self.owned:
                self._client.set_terminated(self.run_id)
                import mlflow

                if (run := mlflow.active_run()) and run.info.run_id == self.run_id:
                    mlflow.end_run()
            self.run_id, self.owned = None, False

    def _log_plot(self, history) -> None:
        if history is None or len(history) == 0:
            return
        try:
            from lossguard.plot import plot_history
        except ImportError:  # pragma: no cover - the module itself is stdlib
            return
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "loss.png")
            try:
                plot_history(history, path)
            except ImportError:  # no matplotlib: the report alone
                return
            self._client.log_artifact(self.run_id, path, "lossguard")
