"""What a scenario's failures mean for each method, as the child runs' params say: a gossip
method has no server, FedAvg has no links, centralized SGD has no agents to lose; a method
the failures touch keeps their round-by-round schedule as an artifact."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.run.runner import run_scenario
from tests.conftest import tiny_scenario


def test_each_method_records_which_failures_apply_to_it(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    scenario = tiny_scenario(
        methods=[{"name": "CDSGD", "algorithm": "cdsgd"},
                 {"name": "FedAvg", "algorithm": "fedavg"},
                 {"name": "SGD", "algorithm": "centralized_sgd"}],
        failures={"server": {"round": 3, "mode": "local"},
                  "links": {"drop_probability": 0.2, "seed": 1},
                  "agents": [{"agent": 1, "round": 2}]},
        tracking={"uri": uri, "experiment": "failures"})
    run_scenario(scenario, VectorizedEngine())
    client = MlflowClient(tracking_uri=uri)
    seen = {}
    for run in client.search_runs([client.get_experiment_by_name("failures").experiment_id]):
        if run.data.tags.get("kind") == "scenario":
            continue
        params = run.data.params
        seen[run.info.run_name] = (
            {key: params[key] for key in ("server_failure", "link_failures", "agent_failures")
             if key in params},
            [item.path for item in client.list_artifacts(run.info.run_id, "failures")])
    assert seen == {
        "CDSGD seed=3": ({"server_failure": "not applicable"}, ["failures/schedule.json"]),
        "FedAvg seed=3": ({"server_failure": "after round 3, local",
                           "link_failures": "not applicable"}, ["failures/schedule.json"]),
        "SGD seed=3": ({"server_failure": "not applicable",
                        "agent_failures": "not applicable"}, []),
    }
