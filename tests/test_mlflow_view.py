"""What a researcher sees in MLflow, read back through MLflow's client: descriptions,
provenance, readable params, the comparison as the parent's metrics and table, the
mixing matrix's CSV. (`make ui-check` checks the same in a real browser.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import tiny_scenario
from mlflow.tracking import MlflowClient

from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.run.runner import run_scenario
from decentral_bench.scenario import load
from decentral_bench.tracking.view import (
    comparison_view,
    run_link,
    ui_instructions,
    ui_link,
    view_tag,
)

HEADER = "# Tiny: CDSGD against FedAvg and SGD.\n# The second line of the header.\n"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[MlflowClient, str]:
    """A three-method scenario (complete graph, so λ2 = 0) run on the vectorized engine
    from a file with a comment header, into a fresh store; the client and parent id."""
    folder = tmp_path_factory.mktemp("view")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    scenario = tiny_scenario(
        name="view", description="A small comparison.",
        topology={"kind": "complete", "agents": 4},
        training={"rounds": 6, "batch_size": 16, "lr": 0.1, "seed": 3, "eval_every": 2},
        methods=[{"name": "CDSGD", "algorithm": "cdsgd"},
                 {"name": "FedAvg", "algorithm": "fedavg"},
                 {"name": "SGD", "algorithm": "centralized_sgd"}],
        report={"target_accuracy": 0.05}, tracking={"uri": uri, "experiment": "view"})
    source = folder / "view.yaml"
    source.write_text(HEADER + json.dumps(scenario.model_dump(mode="json")))
    result = run_scenario(scenario, VectorizedEngine(), source=source)
    assert [run.status for run in result.runs] == ["FINISHED"] * 3
    return MlflowClient(uri), result.parent_run_id


def _children(client: MlflowClient, parent_id: str) -> dict[str, object]:
    experiment = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent_id}'")
    return {run.data.tags["method"]: run for run in runs}


def test_experiment_parent_and_children_have_descriptions(
        recorded: tuple[MlflowClient, str]) -> None:
    client, parent_id = recorded
    experiment = client.get_experiment_by_name("view")
    note = experiment.tags["mlflow.note.content"]
    assert note.startswith("**view**: CDSGD, FedAvg and SGD on digits (iid split, mlp model), "
                           "4 agents on a complete graph, 6 rounds, seed 3.")
    assert "A small comparison." in note
    assert "> Tiny: CDSGD against FedAvg and SGD.\n> The second line of the header." in note
    parent = client.get_run(parent_id).data.tags["mlflow.note.content"]
    assert "| method | seeds | status | epochs | final test acc |" in parent
    assert "| CDSGD | 1 | FINISHED | 0.27 |" in parent and "target accuracy 0.05" in parent
    # Each method's budget beside its figures: 6 FedAvg rounds are 6 epochs.
    assert "| FedAvg | 1 | FINISHED | 6.00 |" in parent
    children = _children(client, parent_id)
    notes = {method: run.data.tags["mlflow.note.content"] for method, run in children.items()}
    assert notes["CDSGD"].startswith("**CDSGD** (cdsgd) on a complete graph of 4 agents "
                                     "(metropolis mixing), λ2 = 0; seed 3.")
    assert notes["FedAvg"].startswith("**FedAvg** (fedavg; fraction 1; local_epochs 1) on 4 "
                                      "clients of a server that aggregates (no graph); seed 3.")
    assert "one agent holding all the training data" in notes["SGD"]


def test_runs_carry_their_provenance(recorded: tuple[MlflowClient, str]) -> None:
    client, parent_id = recorded
    for run in [client.get_run(parent_id), *_children(client, parent_id).values()]:
        tags = run.data.tags
        assert tags["mlflow.source.name"].endswith("view.yaml")
        assert tags["mlflow.user"]
        assert tags["version.flwr"] == "1.41.0"
        assert tags["version.torch"].startswith("2.14.1")
        assert tags["version.decentral_bench"]
        # The tests run from a git checkout, so the code's commit is known.
        assert len(tags["mlflow.source.git.commit"]) == 40


def test_child_params_are_set_meaningful_and_not_duplicated(
        recorded: tuple[MlflowClient, str]) -> None:
    client, parent_id = recorded
    children = _children(client, parent_id)
    for method, run in children.items():
        params = run.data.params
        assert "None" not in params.values(), method
        assert not {"algorithm", "effective.lr", "variant", "resources.engine",
                    "tracking.uri", "name"} & set(params), method
        assert params["engine"] == "vectorized" and params["method.name"] == method
        assert params["training.lr"] == "0.1" and params["training.rounds"] == "6"
    assert not any(key.startswith("topology.") for key in children["FedAvg"].data.params)
    assert not any(key.startswith("topology.") for key in children["SGD"].data.params)
    assert children["FedAvg"].data.params["method.local_epochs"] == "1"
    assert "training.local_steps" not in children["FedAvg"].data.params
    cdsgd = children["CDSGD"]
    assert cdsgd.data.params["topology.lambda2"] == "0"  # snapped, not -3.7e-17
    assert cdsgd.data.tags["lambda2"] == "0"
    assert "lambda2" not in children["SGD"].data.tags


def test_mixing_matrix_csv_has_agent_headers_and_short_numbers(
        recorded: tuple[MlflowClient, str], tmp_path: Path) -> None:
    client, parent_id = recorded
    cdsgd = _children(client, parent_id)["CDSGD"]
    path = client.download_artifacts(cdsgd.info.run_id, "topology/mixing_matrix.csv",
                                     str(tmp_path))
    lines = Path(path).read_text().splitlines()
    assert lines[0] == ",agent_0,agent_1,agent_2,agent_3"
    assert lines[1] == "agent_0,0.25,0.25,0.25,0.25"


def test_parent_holds_the_comparison_as_metrics_and_a_table(
        recorded: tuple[MlflowClient, str], tmp_path: Path) -> None:
    client, parent_id = recorded
    parent = client.get_run(parent_id)
    metrics = parent.data.metrics
    children = _children(client, parent_id)
    for method, run in children.items():
        final = client.get_metric_history(run.info.run_id, "test_accuracy_mean")[-1].value
        assert metrics[f"{method}.final_test_accuracy"] == pytest.approx(final, rel=1e-5)
        assert metrics[f"{method}.wall_time_s"] > 0
        # The target (0.05) is reached at the first evaluation, round 2.
        assert metrics[f"{method}.rounds_to_target"] == 2
        epochs = client.get_metric_history(run.info.run_id, "epochs")
        assert metrics[f"{method}.epochs_to_target"] == pytest.approx(
            next(p.value for p in epochs if p.step == 2), rel=1e-5)
    # FedAvg's round is an epoch; a gossip round one minibatch of 16 of ~360 samples.
    assert metrics["FedAvg.epochs_to_target"] == 2
    assert metrics["CDSGD.epochs_to_target"] < 0.2
    assert metrics["FedAvg.epochs"] == 6
    assert metrics["CDSGD.epochs"] == pytest.approx(6 * 16 / (1437 / 4), rel=0.01)
    table = json.loads(Path(client.download_artifacts(parent_id, "summary.json",
                                                      str(tmp_path))).read_text())
    assert table["columns"][:5] == ["method", "seeds", "status", "epochs",
                                    "final_test_accuracy"]
    rows = {row[0]: dict(zip(table["columns"], row, strict=True)) for row in table["data"]}
    assert set(rows) == {"CDSGD", "FedAvg", "SGD"}
    assert rows["FedAvg"]["epochs_to_target"] == 2
    assert rows["FedAvg"]["epochs"] == 6
    assert rows["SGD"]["consensus_distance_final"] == 0
    assert math.isclose(rows["CDSGD"]["final_test_accuracy"],
                        metrics["CDSGD.final_test_accuracy"], rel_tol=1e-5)
    logged = json.loads(parent.data.tags["mlflow.loggedArtifacts"])
    assert {"path": "summary.json", "type": "table"} in logged


def test_resuming_replaces_the_summary_table(recorded: tuple[MlflowClient, str],
                                             tmp_path: Path) -> None:
    """MLflow's log_table appends to a table of the same name; a resumed parent's
    summary must still hold one row per method."""
    client, parent_id = recorded
    source = Path(client.get_run(parent_id).data.tags["mlflow.source.name"])
    again = run_scenario(load(source), VectorizedEngine(), source=source)
    assert again.parent_run_id == parent_id and again.skipped == 3
    table = json.loads(Path(client.download_artifacts(parent_id, "summary.json",
                                                      str(tmp_path))).read_text())
    assert sorted(row[0] for row in table["data"]) == ["CDSGD", "FedAvg", "SGD"]


def test_the_links_open_the_model_training_view_laid_out_for_the_comparison() -> None:
    """MLflow 3.17 shows its GenAI pages unless the address says workflowType; the runs
    link also names the saved view that lays the list out."""
    link = ui_link("sqlite:///mlflow.db", "7", "decentral-bench-abc")
    assert link == ("http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
                    "&viewStateShareKey=decentral-bench-abc")
    assert ui_link("http://127.0.0.1:8080/", "7").startswith(
        "http://127.0.0.1:8080/#/experiments/7/runs?workflowType=machine_learning")
    assert run_link("sqlite:///mlflow.db", "7", "f00") == (
        "http://127.0.0.1:5000/#/experiments/7/runs/f00?workflowType=machine_learning")
    lines = ui_instructions("sqlite:///x.db", "7", "k", "f00")
    assert lines[0] == "Open the UI with: [bold]mlflow ui --backend-store-uri sqlite:///x.db[/]"
    assert lines[1:] == [f"then the runs: {ui_link('sqlite:///x.db', '7', 'k')}",
                         f"and the scenario run: {run_link('sqlite:///x.db', '7', 'f00')}"]


def test_the_runs_list_groups_each_scenario_run_with_the_key_metrics_as_columns(
        recorded: tuple[MlflowClient, str]) -> None:
    """The experiment saves a view (MLflow's shared view state) that groups the runs by
    scenario run, open, with the children's key metrics as the first columns; every run
    carries its group; the parent's description links each child's training view."""
    client, parent_id = recorded
    parent = client.get_run(parent_id)
    experiment = client.get_experiment(parent.info.experiment_id)
    saved = {key: value for key, value in experiment.tags.items()
             if key.startswith("mlflow.sharedViewState.")}
    assert list(saved) == [f"mlflow.sharedViewState.{view_tag(comparison_view(), 0)[0]}"]
    envelope = json.loads(next(iter(saved.values())))
    assert envelope["name"] == "decentral-bench comparison"
    view = json.loads(envelope["state"])
    assert view["groupBy"] == {"aggregateFunction": "max", "groupByKeys": [
        {"mode": "tag", "groupByData": "scenario_run"}]}
    assert view["orderByKey"] == "attributes.start_time" and view["groupsExpanded"] == {}
    metrics = ["metrics.`test_accuracy_mean`", "metrics.`train_accuracy_mean`",
               "metrics.`epochs`", "metrics.`consensus_distance`",
               "metrics.`bytes_moved_total`", "metrics.`wall_time_s`"]
    assert view["selectedColumns"][:6] == metrics
    assert view["columnOrder"][:7] == ["attributes.`Run Name`", *metrics]
    children = _children(client, parent_id)
    for run in [parent, *children.values()]:
        assert run.data.tags["scenario_run"] == parent.info.run_name
    for run in children.values():  # what the columns show
        assert {"test_accuracy_mean", "epochs", "wall_time_s"} <= set(run.data.metrics)
    note = parent.data.tags["mlflow.note.content"]
    experiment_id = parent.info.experiment_id
    for method, run in children.items():
        assert (f"[{method} seed=3](#/experiments/{experiment_id}/runs/{run.info.run_id}"
                "?workflowType=machine_learning)") in note
