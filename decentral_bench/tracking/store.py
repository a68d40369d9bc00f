"""MLflow: one parent run per scenario run, one child run per method.

The only module that speaks MLflow. Runs are addressed by id through
`MlflowClient`, never through MLflow's thread-local "active run", because the
engine that reports rounds may run in a thread of its own.
"""

from __future__ import annotations

import json
import logging
import math
import os
import posixpath
import re
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.time import get_current_time_millis

from decentral_bench.tracking.local_store import (
    StoreError,
    artifact_location,
    creation_lock,
    drop_leftover_migration_tables,
    prepare_sqlite,
)
from decentral_bench.tracking.provenance import Provenance
from decentral_bench.tracking.provenance import collect as collect_provenance
from decentral_bench.tracking.records import CURVES, RunRecord
from decentral_bench.tracking.store_problems import messages, migration_race, store_problem
from decentral_bench.tracking.view import comparison_view, is_server, view_tag

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
PARENT_TAG = "mlflow.parentRunId"
DESCRIPTION_TAG = "mlflow.note.content"
PROCESS_TAG = "process"  # host:pid:start of the process running a run (see provenance)
SHARED_TAG = "sweep_shared"  # swept keys a child's method ignores: it ran once for all values
MAX_PARAM_LENGTH = 6000
INVALID_KEY_CHARACTERS = re.compile(r"[^\w\-./ :]")


def is_local_store(uri: str) -> bool:
    """Whether the store at `uri` is a file or folder of this machine (sqlite, a folder),
    which processes on other machines cannot reach."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def metric_key(text: str) -> str:
    """`text` as a valid MLflow metric name ("CDSGD agents=8" → "CDSGD agents:8")."""
    return INVALID_KEY_CHARACTERS.sub("_", text.replace("=", ":"))


def provenance_tags(provenance: Provenance) -> dict[str, str]:
    """MLflow's source, user and git tags ("Source" and "Created by" in the UI), and
    the versions of Python and the libraries as `version.*` tags."""
    tags = {"mlflow.source.name": provenance.source, "mlflow.source.type": "LOCAL",
            "mlflow.user": provenance.user}
    if provenance.git_commit is not None:
        tags["mlflow.source.git.commit"] = provenance.git_commit
        tags["git_dirty"] = str(provenance.git_dirty).lower()
    tags.update({f"version.{name}": value for name, value in provenance.versions.items()})
    return tags


# MLflow's own HTTP defaults (7 retries, exponential backoff, 120 s per request) take
# minutes to report an unreachable server; a user's MLFLOW_HTTP_REQUEST_* settings win.
HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
def configure_mlflow(verbose: bool = False) -> None:
    """Make MLflow's HTTP client give up on an unreachable server within seconds, and keep
    MLflow's log off the console unless `verbose` (its errors reach us as exceptions)."""
    for key, value in HTTP_SETTINGS.items():
        os.environ.setdefault(key, value)
    if not verbose:  # "🏃 View run ... at: URL" after every run on a server
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.getLogger("mlflow").setLevel(logging.WARNING if verbose else logging.CRITICAL)


def _prepare(uri: str) -> None:
    """Fail within seconds, naming the store, where it cannot be reached or created (MLflow
    itself retries for minutes); create a sqlite store's folder, as MLflow would."""
    if is_server(uri):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5):
                return
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise StoreError(f"cannot reach the MLflow tracking server at {uri} ({reason}); "
                             "start it (mlflow server --host 127.0.0.1 --port 5000) or set "
                             "--tracking-uri") from None
    prepare_sqlite(uri)


def connect(uri: str, patience_s: float = 120.0) -> MlflowClient:
    """A client of the store at `uri`, its tables created and migrated.

    Another program migrating the store at the same moment (`mlflow ui` opened on a new
    store) makes this wait and retry, for up to `patience_s` seconds (a loaded machine
    slows the other migration down). A migration that died half-way leaves a temporary
    table behind that fails every later one: after a third of the patience it is dropped.
    Raises `StoreError` naming the store when it cannot be reached, created or written.
    """
    _prepare(uri)
    store_log = logging.getLogger("mlflow.store.db.utils")
    level = store_log.level
    store_log.setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
    attempt, started = 0, time.monotonic()
    try:
        with creation_lock(uri), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SQLAlchemy and alembic notes on the migration
            while True:
                try:
                    client = MlflowClient(tracking_uri=uri)  # creates a new store's tables
                    client.search_experiments(max_results=1)
                    return client
                except Exception as error:
                    attempt += 1
                    waited = time.monotonic() - started
                    if waited < patience_s and migration_race(error):
                        if "_alembic_tmp_" in messages(error) and waited > patience_s / 3:
                            drop_leftover_migration_tables(uri)
                        time.sleep(min(0.5 * attempt, 5.0))
                        continue
                    problem = store_problem(error, uri)
                    if problem is None:
                        raise
                    raise StoreError(problem) from error
    finally:
        store_log.setLevel(level)


class Tracker:
    """Writes runs, parameters, per-round metrics and artifacts to one MLflow store."""

    def __init__(self, uri: str | None, experiment: str, source: str | None = None) -> None:
        """Open (or create) `experiment` in the store at `uri`; every run it starts is
        tagged with where it came from (`source`: the scenario file, by default the
        experiment's name) and with the process that runs it."""
        self.uri = uri or DEFAULT_TRACKING_URI
        self.experiment_name = experiment
        provenance = collect_provenance(source or experiment)
        self.run_tags = {**provenance_tags(provenance), PROCESS_TAG: provenance.process}
        self.client = connect(self.uri)
        self.experiment_name = experiment
        self.experiment_id = self._experiment(experiment)

    def _experiment(self, name: str) -> str:
        """The id of experiment `name`, created if new (artifacts beside a sqlite store);
        a process that creates it at the same moment is no error."""
        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                return self.client.create_experiment(
                    name, artifact_location=artifact_location(self.uri, name))
            except MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                found = self.client.get_experiment_by_name(name)
        if found is None or found.lifecycle_stage == "deleted":
            raise ValueError(f"MLflow experiment '{name}' is deleted in {self.uri}; "
                             "restore it in the MLflow UI or set tracking.experiment")
        return str(found.experiment_id)

    def start_run(self, name: str, tags: Mapping[str, str], parent_id: str | None = None) -> str:
        """A new run in the experiment; a child of `parent_id` when given."""
        all_tags = {**self.run_tags, **tags}
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

    def describe_run(self, run_id: str, text: str) -> None:
        """The run's description (Markdown), shown on its overview page."""
        self.client.set_tag(run_id, DESCRIPTION_TAG, text)

    def describe_experiment(self, text: str) -> None:
        """The experiment's description (Markdown)."""
        self.client.set_experiment_tag(self.experiment_id, DESCRIPTION_TAG, text)

    def save_comparison_view(self) -> str:
        """Save the runs list laid out for comparing methods (`view.comparison_view`) as
        one of the experiment's views; the key that opens it."""
        key, tag, value = view_tag(comparison_view(), get_current_time_millis())
        self.client.set_experiment_tag(self.experiment_id, tag, value)
        return key

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_table(self, run_id: str, data: Mapping[str, list[Any]], artifact_file: str) -> None:
        """An MLflow table (JSON, columns → values). A table already logged under that
        name is replaced: `MlflowClient.log_table` would append the rows to it."""
        folder = posixpath.dirname(artifact_file) or None
        if artifact_file not in {item.path for item in self.client.list_artifacts(run_id, folder)}:
            self.client.log_table(run_id, dict(data), artifact_file)
            return
        columns = list(data)
        rows = [list(values) for values in zip(*data.values(), strict=True)]
        with tempfile.TemporaryDirectory() as temporary:
            path = Path(temporary) / posixpath.basename(artifact_file)
            path.write_text(json.dumps({"columns": columns, "data": rows}))
            self.client.log_artifact(run_id, str(path), folder)

    def log_matrix(self, run_id: str, matrix: np.ndarray, name: str, csv: str) -> None:
        """A matrix as `topology/name`.npy (exact) and `.csv` (the text given)."""
        with tempfile.TemporaryDirectory() as folder:
            np.save(Path(folder) / f"{name}.npy", matrix)
            (Path(folder) / f"{name}.csv").write_text(csv)
            self.client.log_artifacts(run_id, folder, "topology")

    def log_arrays(self, run_id: str, arrays: Mapping[str, np.ndarray],
                   artifact_file: str) -> None:
        """Named arrays as one NumPy `.npz` artifact (`numpy.load` reads them by name)."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / posixpath.basename(artifact_file)
            named: dict[str, Any] = dict(arrays)
            np.savez(path, **named)
            self.client.log_artifact(run_id, str(path), posixpath.dirname(artifact_file) or None)

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

    def run_name(self, run_id: str) -> str:
        return str(self.client.get_run(run_id).info.run_name)

    def running_children(self, parent_id: str) -> dict[str, str]:
        """Run id → the process that runs it (its `process` tag, "" if none), for the
        parent's children still marked RUNNING."""
        running = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent_id}' "
                          "and attributes.status = 'RUNNING'", max_results=10_000)
        return {run.info.run_id: run.data.tags.get(PROCESS_TAG, "") for run in running}

    def latest_parent(self, scenario_name: str, scenario_hash: str) -> str | None:
        """The id of the latest parent run of a scenario of this name and hash (its
        `scenario_hash` tag) in the experiment."""
        previous = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.scenario = '{scenario_name}' and tags.kind = 'scenario' "
                          f"and tags.scenario_hash = '{scenario_hash}'",
            order_by=["attributes.start_time DESC"], max_results=1)
        return previous[0].info.run_id if previous else None

    def finished_hashes(self, parent_id: str) -> set[str]:
        """The configuration hashes of the parent's children that FINISHED."""
        finished = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent_id}' "
                          "and attributes.status = 'FINISHED'", max_results=10_000)
        return {run.data.tags.get("config_hash", "") for run in finished}

    def claim(self, run_id: str) -> None:
        """Tag a run started by another process (a parallel sweep's) with this one, which
        runs it: where this process ends without marking it, the next sweep does."""
        self.client.set_tag(run_id, PROCESS_TAG, self.run_tags[PROCESS_TAG])

    def reopen(self, parent_id: str) -> None:
        """Mark a parent run RUNNING again, in this process (it is being resumed)."""
        self.client.set_tag(parent_id, PROCESS_TAG, self.run_tags[PROCESS_TAG])
        self.client.update_run(parent_id, status="RUNNING")


def open_store(uri: str | None) -> MlflowClient:
    """A client of the tracking store at `uri` (default: sqlite:///mlflow.db)."""
    return connect(uri or DEFAULT_TRACKING_URI)


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
                           status=child.info.status, algorithm=tags.get("algorithm", ""),
                           wall_time_s=child.data.metrics.get("wall_time_s", math.nan),
                           swept={key.removeprefix("sweep."): value for key, value
                                  in tags.items() if key.startswith("sweep.")},
                           shared=tuple(filter(None, tags.get(SHARED_TAG, "").split(","))),
                           error=tags.get("error", ""))
        for key in CURVES:
            if key in child.data.metrics:
                history = client.get_metric_history(child.info.run_id, key)
                record.curves[key] = sorted((point.step, point.value) for point in history)
        records.append(record)
    return records


def attach_text(client: MlflowClient, run_id: str, text: str, artifact_file: str) -> None:
    """Write `text` as an artifact of an existing run (a report made after it ended)."""
    client.log_text(run_id, text, artifact_file)


def attach_figure(client: MlflowClient, run_id: str, figure: Any, artifact_file: str) -> None:
    """Save a figure as an artifact of an existing run (a report made after it ended)."""
    client.log_figure(run_id, figure, artifact_file)


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
