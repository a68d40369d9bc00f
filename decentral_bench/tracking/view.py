"""What a person opens in MLflow's UI: a scenario's runs laid out for the comparison, and
one run's page, both in MLflow's "Model training" view.

MLflow 3.17's UI shows its GenAI pages (traces, prompts, a GenAI sidebar) unless the
page's URL says `workflowType=machine_learning`, else what the browser chose last, GenAI
by default; the experiment's `mlflow.experimentKind` tag no longer decides it (the UI
derives the kind from the workflow type). Every link the project prints or writes
therefore carries that parameter.

The runs list's columns, sort and layout come from a saved view: an experiment tag
`mlflow.sharedViewState.KEY` holding the view (a saved-view envelope: name, times, and
the view as JSON), which the URL parameter `viewStateShareKey=KEY` opens and the
experiment's list of views offers. The comparison's view groups the runs by scenario run
(the `scenario_run` tag: the parent run's name, on the parent and its children), each
group open, and shows the children's key metrics as the first columns, the group's row
giving their largest value. (Nested under a collapsed parent, MLflow's default, the
children and their metrics are hidden until a click, and a view cannot say otherwise.)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlencode

UI_ADDRESS = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
MODEL_TRAINING = {"workflowType": "machine_learning"}
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_NAME = "decentral-bench comparison"
# A child's figures that the comparison reads (its last value is the final one), then where
# the runs came from (the scenario file and any --set).
COMPARISON_COLUMNS = ("test_accuracy_mean", "train_accuracy_mean", "epochs",
                      "consensus_distance", "bytes_moved_total", "wall_time_s")
SOURCE_COLUMN = "attributes.`Source`"
GROUP_TAG = "scenario_run"  # the parent run's name, on the parent and each of its children


def column(kind: str, name: str) -> str:
    """A runs-table column as the UI names it: `metrics.`epochs``."""
    return f"{kind}.`{name}`"


def comparison_view() -> dict[str, Any]:
    """The runs list for comparing a scenario's methods: every active run, newest first,
    grouped by scenario run (groups open), the children's key metrics as the first
    columns, each group's row showing their largest value."""
    metrics = [column("metrics", name) for name in COMPARISON_COLUMNS]
    return {
        "searchFilter": "", "orderByKey": "attributes.start_time", "orderByAsc": False,
        "startTime": "ALL", "lifecycleFilter": "Active", "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": [*metrics, SOURCE_COLUMN],
        "columnOrder": [column("attributes", "Run Name"), *metrics, "runDateAndNestInfo",
                        "duration", SOURCE_COLUMN],
        "columnWidths": dict.fromkeys(metrics, 120), "runsHiddenMode": "SHOW_ALL",
        "viewMaximized": False, "runListHidden": False, "isAccordionReordered": False,
        "groupBy": {"aggregateFunction": "max",
                    "groupByKeys": [{"mode": "tag", "groupByData": GROUP_TAG}]},
        "groupsExpanded": {}, "useGroupedValuesInCharts": True, "hideEmptyCharts": True,
    }


def view_tag(view: dict[str, Any], now_ms: int) -> tuple[str, str, str]:
    """The experiment tag that saves `view` under `VIEW_NAME` at `now_ms`: (share key,
    tag key, tag value). The key is a hash of the view: a changed view gets a new key."""
    state = json.dumps(view, sort_keys=True, separators=(",", ":"))
    key = "decentral-bench-" + hashlib.sha256(state.encode()).hexdigest()[:12]
    envelope = json.dumps({"name": VIEW_NAME, "createdAt": now_ms, "updatedAt": now_ms,
                           "state": state})
    return key, VIEW_TAG_PREFIX + key, envelope


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on a tracking store."""
    return f"mlflow ui --backend-store-uri {uri}"


def is_server(uri: str) -> bool:
    """Whether `uri` is a tracking server (which serves the UI itself)."""
    return uri.startswith(("http://", "https://"))


def _base(uri: str) -> str:
    return uri.rstrip("/") if is_server(uri) else UI_ADDRESS


def ui_link(uri: str, experiment_id: str, view_key: str | None = None) -> str:
    """The address of an experiment's runs in the "Model training" view (laid out by the
    saved view `view_key`, if given): on the tracking server itself, or where `mlflow
    ui` serves a local store by default."""
    query = {**MODEL_TRAINING, **({"viewStateShareKey": view_key} if view_key else {})}
    return f"{_base(uri)}/#/experiments/{experiment_id}/runs?{urlencode(query)}"


def run_path(experiment_id: str, run_id: str) -> str:
    """A run's page in the "Model training" view, as a path within the UI (`#/...`)."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?{urlencode(MODEL_TRAINING)}"


def run_link(uri: str, experiment_id: str, run_id: str) -> str:
    """The address of a run's page in the "Model training" view."""
    return f"{_base(uri)}/{run_path(experiment_id, run_id)}"


def ui_instructions(uri: str, experiment_id: str, view_key: str | None = None,
                    run_id: str | None = None) -> list[str]:
    """What to do to see the runs (and the run `run_id`): open the links on a tracking
    server, or start `mlflow ui` on a local store and then open them."""
    links = [f"the runs: {ui_link(uri, experiment_id, view_key)}"]
    if run_id is not None:
        links.append(f"the scenario run: {run_link(uri, experiment_id, run_id)}")
    if is_server(uri):
        return [f"Open {link}" for link in links]
    return [f"Open the UI with: [bold]{ui_command(uri)}[/]",
            *(f"then {link}" if index == 0 else f"and {link}" for index, link in enumerate(links))]
