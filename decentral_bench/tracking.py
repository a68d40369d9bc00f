"""MLflow: one parent run per scenario run, one child run per method.

The only module that speaks MLflow. Runs are addressed by id through
`MlflowClient`, never through MLflow's thread-local "active run", because the
engine that reports rounds may run in a thread of its own.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.time import get_current_time_millis

from decentral_bench.report import CURVES, RunRecord

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

    def log_table(self, run_id: str, data: Mapping[str, list[str]], artifact_file: str) -> None:
        self.client.log_table(run_id, dict(data), artifact_file)

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

    def kill(self, run_id: str, reason: str = "interrupted by the user") -> None:
        """Mark a run KILLED (stopped from outside) and keep why, as the `error` tag."""
        self.client.set_tag(run_id, "error", reason[:5000])
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))


    def latest_parent(self, scenario_name: str) -> str | None:
        """The id of the latest parent run of a scenario of this name in the experiment."""
        previous = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.scenario = '{scenario_name}' and tags.kind = 'scenario'",
            order_by=["attributes.start_time DESC"], max_results=1)
        return previous[0].info.run_id if previous else None

    def finished_hashes(self, parent_id: str) -> set[str]:
        """The configuration hashes of the parent's children that FINISHED."""
        finished = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent_id}' "
                          "and attributes.status = 'FINISHED'", max_results=10_000)
        return {run.data.tags.get("config_hash", "") for run in finished}

    def reopen(self, parent_id: str) -> None:
        """Mark a parent run RUNNING again (it is being resumed)."""
        self.client.update_run(parent_id, status="RUNNING")


def open_store(uri: str | None) -> MlflowClient:
    """A client of the tracking store at `uri` (default: sqlite:///mlflow.db)."""
    return MlflowClient(tracking_uri=uri or DEFAULT_TRACKING_URI)


def load_records(client: MlflowClient, parent_id: str) -> list[RunRecord]:
    """The children of a parent run with their metric histories, oldest first."""
    parent = client.get_run(parent_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
                                  order_by=["attributes.start_time ASC"], max_results=10_000)
    records = []
    for child in children:
        tags = child.data.tags
        record = RunRecord(run_id=child.info.run_id, config_hash=tags.get("config_hash", ""),
                           label=tags.get("label", tags.get("method", "?")),
                           method=tags.get("method", "?"), seed=int(tags.get("seed", 0)),
                           status=child.info.status,
                           wall_time_s=child.data.metrics.get("wall_time_s", math.nan))
        for key in CURVES:
            if key in child.data.metrics:
                history = client.get_metric_history(child.info.run_id, key)
                record.curves[key] = sorted((point.step, point.value) for point in history)
        records.append(record)
    return records


def attach_text(client: MlflowClient, run_id: str, text: str, artifact_file: str) -> None:
    """Write `text` as an artifact of an existing run (a report made after it ended)."""
    client.log_text(run_id, text, artifact_file)


def find_parent_run(client: MlflowClient, target: str) -> Any | None:
    """A parent (scenario) run by id, or the latest one of an experiment by name."""
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
