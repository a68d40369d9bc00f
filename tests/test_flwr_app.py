"""The ServerApp that `flwr run .` loads reads the scenario and method from the run config."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import assert_run_equals_simulation, recorded_model
from flwr.app import Context, RecordDict
from mlflow.tracking import MlflowClient


@pytest.mark.slow
def test_module_level_apps_run_a_scenario_from_the_run_config(
        tmp_path: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.telemetry import EventType

    from decentral_bench.cli import flwr_app as server_app
    from decentral_bench.engines.flower import client_app
    from decentral_bench.engines.flower.simulation import backend_config
    from decentral_bench.experiment.plan import MethodPlan
    from decentral_bench.scenario import load, parse

    scenario = tmp_path / "app.yaml"
    scenario.write_text(f"""\
name: flwr-app
model: {{name: mlp, hidden: [16]}}
topology: {{kind: ring, agents: 3}}
training: {{rounds: 2, batch_size: 16}}
methods: [{{name: CDMSGD, algorithm: cdmsgd}}]
tracking: {{experiment: flwr-app, uri: "{tracking_uri}"}}
""")
    resources = backend_config(MethodPlan.of(parse(
        {"name": "x", "topology": {"agents": 3}, "methods": [{"name": "M", "algorithm": "cdsgd"}]}),
        "M"))
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                      run_config={"scenario": str(scenario), "method": "CDMSGD"})
    # `flwr run` hands the ServerApp this run config; the Python API has no public
    # argument for it, so this drives the engine's own entry point.
    _run_simulation(num_supernodes=3, exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
                    client_app=client_app.app, server_app=server_app.app,
                    server_app_context=context, backend_config=resources)

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("flwr-app")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["method"] == "CDMSGD"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test_accuracy_mean")] \
        == [1, 2]
    # What `flwr run . --stream` shows: progress, the accuracy, where the run was recorded.
    printed = capsys.readouterr().out
    final = client.get_metric_history(run.info.run_id, "test_accuracy_mean")[-1].value
    assert f"CDMSGD seed=0: finished, test acc {final:.3f} at round 2" in printed
    assert f"CDMSGD seed=0: recorded as MLflow run {run.info.run_id} in experiment " \
        f"'flwr-app' of {tracking_uri}" in printed
    assert f"runs/{run.info.run_id}?workflowType=machine_learning" in printed
    # The recorded final model is the run's: the average of the agents' models.
    [average] = [item.path for item in client.list_artifacts(run.info.run_id, "model")]
    assert average == "model/average.npz"
    assert [a.shape for a in recorded_model(tracking_uri, run.info.run_id, tmp_path)] == \
        [(16, 64), (16,), (10, 16), (10,)]
    # Deterministic: it ends where a simulation of the same plan ends (each node's context
    # carries CDMSGD's velocity from round to round).
    assert_run_equals_simulation(tracking_uri, run.info.run_id,
                                 MethodPlan.of(load(scenario), "CDMSGD"), tmp_path)


@pytest.mark.filterwarnings("ignore")
def test_a_failed_method_is_recorded_and_also_fails_the_flower_run(tmp_path: Path,
                                                                    tracking_uri: str) -> None:
    """Under `flwr run` the ServerApp raises after recording, so Flower's run status
    (`flwr list`) says failed, as MLflow does."""
    from decentral_bench.cli import flwr_app as server_app

    scenario = tmp_path / "missing.yaml"
    scenario.write_text(f"""\
name: flwr-app-missing
dataset: {{name: fashion_mnist, root: "{tmp_path / 'nowhere'}"}}
topology: {{kind: ring, agents: 3}}
methods: [{{name: CDSGD, algorithm: cdsgd}}]
tracking: {{experiment: flwr-app-missing, uri: "{tracking_uri}"}}
""")
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                      run_config={"scenario": str(scenario), "method": "CDSGD"})
    with pytest.raises(RuntimeError, match=r"^CDSGD: .*nowhere"):
        server_app.main(None, context)  # fails loading the data, before any message
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("flwr-app-missing")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert "nowhere" in run.data.tags["error"]


def test_the_printed_record_says_where_to_find_the_run(tracking_uri: str) -> None:
    from decentral_bench.cli.flwr_app import recorded
    from decentral_bench.run.runner import MethodResult
    from decentral_bench.tracking.store import Tracker

    tracker = Tracker(tracking_uri, "printed")
    result = MethodResult(name="SGD seed=0", algorithm="centralized_sgd", run_id="f00",
                          status="FINISHED")
    assert recorded(result, tracker) == [
        f"SGD seed=0: recorded as MLflow run f00 in experiment 'printed' of {tracking_uri}",
        f"open it: mlflow ui --backend-store-uri {tracking_uri}, then http://127.0.0.1:5000/"
        f"#/experiments/{tracker.experiment_id}/runs/f00?workflowType=machine_learning"]


def test_flwr_run_reuses_the_installed_environment_where_the_superlink_is_told_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`make flwr-run` starts flwr's local SuperLink with the setting that turns Flower's
    per-run dependency installation off; the ServerApp says so where it finds itself in
    an environment Flower built for the run."""
    from flwr.common.constant import FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION
    from flwr.superlink.cli.flower_superlink import _runtime_dependency_install_default

    from decentral_bench.cli.flwr_app import flower_built_environment

    monkeypatch.delenv(FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION, raising=False)
    assert _runtime_dependency_install_default()  # Flower 1.41 installs by default
    monkeypatch.setenv(FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION, "1")
    assert not _runtime_dependency_install_default()
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    target = makefile[makefile.index("\nflwr-run:"):].split("\n\n")[0]
    setting = makefile[makefile.index("\nFLWR_LOCAL :="):].split("\n")[1]
    assert f"{FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION}=1" in setting
    # Both commands that may start the local SuperLink run with the setting.
    assert "$(FLWR_LOCAL) $(BIN)/flwr federation simulation-config" in target
    assert "$(FLWR_LOCAL) $(BIN)/flwr run . --stream" in target
    note = flower_built_environment({"VIRTUAL_ENV": "/home/me/.flwr/runtime-envs/7"})
    assert note is not None and "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1" in note
    assert flower_built_environment({"VIRTUAL_ENV": "/home/me/bench/.venv"}) is None
    assert flower_built_environment({}) is None
