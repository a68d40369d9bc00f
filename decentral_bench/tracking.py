"""MLflow: one parent run per scenario run, one child run per method.

Runs are addressed by id through `MlflowClient`, never through MLflow's
thread-local "active run", because the ServerApp that reports rounds runs in
a thread of its own.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.time import get_current_time_millis

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LENGTH = 6000


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping → {"a.b.c": "value"}; lists of mappings become JSON."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = json.dumps(value)[:MAX_PARAM_LENGTH]
        else:
            flat[name] = str(value)[:MAX_PARAM_LENGTH]
    return flat


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on a tracking store."""
    return f"mlflow ui --backend-store-uri {uri}"


class Tracker:
    """Writes runs, parameters, per-round metrics and artifacts to one MLflow store."""

    def __init__(self, uri: str | None, experiment: str) -> None:
        self.uri = uri or DEFAULT_TRACKING_URI
        store_log = logging.getLogger("mlflow.store.db.utils")
        level = store_log.level
        store_log.setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
        try:
            with warnings.catch_warnings():  # SQLAlchemy deprecations inside MLflow's store
                warnings.simplefilter("ignore", DeprecationWarning)
                self.client = MlflowClient(tracking_uri=self.uri)
                found = self.client.get_experiment_by_name(experiment)
        finally:
            store_log.setLevel(level)
        if found is None:
            self.experiment_id = self.client.create_experiment(experiment)
        elif found.lifecycle_stage == "deleted":
            raise ValueError(f"MLflow experiment '{experiment}' is deleted in {self.uri}; "
                             "restore it in the MLflow UI or set tracking.experiment")
        else:
            self.experiment_id = found.experiment_id

    def start_run(self, name: str, tags: Mapping[str, str], parent_id: str | None = None) -> str:
        """A new run in the experiment; a child of `parent_id` when given."""
        all_tags = dict(tags)
        if parent_id is not None:
            all_tags[PARENT_TAG] = parent_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        return run.info.run_id

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start:start + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        now = get_current_time_millis()
        items = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        for start in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[start:start + 1000])

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_file(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_matrix(self, run_id: str, matrix: np.ndarray, name: str) -> None:
        """A matrix as `name`.npy and `name`.csv artifacts."""
        with tempfile.TemporaryDirectory() as folder:
            np.save(Path(folder) / f"{name}.npy", matrix)
            np.savetxt(Path(folder) / f"{name}.csv", matrix, delimiter=",", fmt="%.17g")
            self.client.log_artifacts(run_id, folder, "topology")

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(run_id, figure, artifact_file)

    def finish(self, run_id: str) -> None:
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))

    def fail(self, run_id: str, reason: str) -> None:
        """Mark a run FAILED and keep why, as the `error` tag."""
        self.client.set_tag(run_id, "error", reason[:5000])
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))

    def kill(self, run_id: str) -> None:
        self.client.set_tag(run_id, "error", "interrupted by the user")
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))


def find_parent_run(client: MlflowClient, target: str) -> Any | None:
    """A parent (scenario) run by id, or the latest one of an experiment by name."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(target)
    if experiment is not None:
        runs = client.search_runs([experiment.experiment_id],
                                  filter_string="tags.kind = 'scenario'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0] if runs else None
    try:
        return client.get_run(target)
    except MlflowException:
        return None
