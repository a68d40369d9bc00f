"""Runs on a modelled network: every round timed by the clock (the hand-computed round of a
4-agent ring, through the vectorized engine and the observer), and what the store shows of
it: sim_time_s per round, time to target on the parent, figures against simulated seconds,
the network in the child's description, `report --x-axis time`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import observed_run, tiny_scenario
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from decentral_bench.cli import entry as cli
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.run.runner import run_scenario

# Agents send at 1 MB/s with 10 ms latency; a step takes 50 ms.
NETWORK = {"latency": "10 ms", "agent_uplink": "1 MB/s", "server_uplink": "2 MB/s",
           "compute": {"step_seconds": "50 ms"}}
MODEL_BYTES = 4 * (64 * 16 + 16 + 16 * 10 + 10)  # the tiny MLP's float32 parameters


def test_the_vectorized_engine_is_timed_round_by_round() -> None:
    """Ring of 4, two local steps: 0.1 s computing, then each agent sends its model to two
    neighbours through its 1 MB/s uplink: 10 ms + 2 × 4840 B / 1 MB/s."""
    plan = MethodPlan.of(tiny_scenario(network=NETWORK, training={
        "rounds": 3, "batch_size": 16, "lr": 0.1, "seed": 3, "local_steps": 2}), "CDSGD")
    _, rounds, _ = observed_run(plan, VectorizedEngine())
    communication = 0.01 + 2 * MODEL_BYTES / 1e6
    for k in (1, 2, 3):
        assert rounds[k]["compute_time_s"] == pytest.approx(0.1)
        assert rounds[k]["communication_time_s"] == pytest.approx(communication)
        assert rounds[k]["modelled_round_time_s"] == pytest.approx(0.1 + communication)
        assert rounds[k]["sim_time_s"] == pytest.approx(k * (0.1 + communication))
        assert "measured_round_time_s" not in rounds[k]  # a simulation, not a deployment
    untimed = MethodPlan.of(tiny_scenario(training={"rounds": 1}), "CDSGD")
    assert "sim_time_s" not in observed_run(untimed, VectorizedEngine())[1][1]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[MlflowClient, str, str]:
    folder = tmp_path_factory.mktemp("timed")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    scenario = tiny_scenario(
        name="timed", network=NETWORK, report={"target_accuracy": 0.15},
        training={"rounds": 8, "batch_size": 16, "lr": 0.1, "seed": 3, "eval_every": 2},
        methods=[{"name": "CDSGD", "algorithm": "cdsgd"},
                 {"name": "FedAvg", "algorithm": "fedavg"}],
        tracking={"uri": uri, "experiment": "timed"})
    source = folder / "timed.yaml"
    source.write_text(json.dumps(scenario.model_dump(mode="json")))
    result = run_scenario(scenario, VectorizedEngine(), source=source)
    assert [run.status for run in result.runs] == ["FINISHED"] * 2
    return MlflowClient(uri), result.parent_run_id, uri


def test_the_store_shows_simulated_time(recorded: tuple[MlflowClient, str, str]) -> None:
    client, parent_id, _ = recorded
    experiment = client.get_run(parent_id).info.experiment_id
    children = {run.data.tags["method"]: run for run in client.search_runs(
        [experiment], f"tags.mlflow.parentRunId = '{parent_id}'")}
    cdsgd = children["CDSGD"]
    history = client.get_metric_history(cdsgd.info.run_id, "sim_time_s")
    assert [m.step for m in history] == list(range(1, 9))
    assert history[-1].value == pytest.approx(8 * (0.05 + 0.01 + 2 * MODEL_BYTES / 1e6))
    assert "Timed on a modelled network: latency 10 ms; agents 8 Mbit/s up, unlimited down; " \
           "server 16 Mbit/s up, unlimited down; a minibatch step takes 50 ms; network seed " \
           "3 (sim_time_s)." in cdsgd.data.tags["mlflow.note.content"]
    parent = client.get_run(parent_id).data
    for method in ("CDSGD", "FedAvg"):
        seconds = parent.metrics[f"{method}.time_to_target_s"]
        rounds = parent.metrics[f"{method}.rounds_to_target"]
        timed = {m.step: m.value for m in client.get_metric_history(
            children[method].info.run_id, "sim_time_s")}
        assert seconds == pytest.approx(timed[int(rounds)], rel=1e-5)
    plots = {item.path for item in client.list_artifacts(parent_id, "plots/time")}
    assert "plots/time/test_accuracy_mean.png" in plots
    assert "| sim s to target |" in parent.tags["mlflow.note.content"]


def test_report_draws_against_simulated_seconds(recorded: tuple[MlflowClient, str, str],
                                                tmp_path: Path) -> None:
    _, parent_id, uri = recorded
    done = CliRunner().invoke(cli.cli, ["report", parent_id, "--tracking-uri", uri, "--plot",
                                        str(tmp_path), "--x-axis", "time", "--csv"])
    assert done.exit_code == 0, done.output
    assert "sim s to target" in done.stdout.splitlines()[0]
    assert (tmp_path / "test_accuracy_mean.png").stat().st_size > 10_000
    assert "note" not in done.stderr  # every run has a clock: no fallback
