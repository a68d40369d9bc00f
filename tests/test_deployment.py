"""Real Flower deployments on loopback: a SuperLink, SuperNodes and their ClientApp workers
as separate processes, plain and with TLS and SuperNode authentication."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from decentral_bench.cli.entry import cli
from decentral_bench.engines.flower.credentials import generate_credentials
from decentral_bench.engines.flower.deploy import CONNECTION, LocalFederation


def scenario_file(folder: Path, name: str, uri: str, rounds: int, agents: int,
                  **sections: object) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name,
        "model": {"name": "mlp", "hidden": [16]},
        "topology": {"kind": "complete", "agents": agents},
        "training": {"rounds": rounds, "batch_size": 16},
        "methods": [{"name": "CDSGD", "algorithm": "cdsgd"}],
        "tracking": {"experiment": name, "uri": uri},
        **sections,
    }))
    return path


def the_run(uri: str, experiment: str) -> tuple[MlflowClient, object]:
    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return client, run


def steps(client: MlflowClient, run_id: str, metric: str) -> list[int]:
    return sorted(point.step for point in client.get_metric_history(run_id, metric))


@pytest.mark.slow
def test_deploy_local_runs_a_method_and_records_every_round(
        tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the nodes' data cache
    path = scenario_file(tmp_path, "deployed", tracking_uri, rounds=3, agents=3, network={
        "latency": "1 ms", "agent_uplink": "100 Mbit/s", "compute": {"step_seconds": "10 ms"}})
    done = CliRunner().invoke(cli, ["deploy-local", str(path), "--method", "CDSGD",
                                    "--workdir", str(tmp_path / "federation")])
    assert done.exit_code == 0, done.output
    assert "finished:completed" in done.output
    client, run = the_run(tracking_uri, "deployed")
    assert run.info.status == "FINISHED"
    assert run.data.params["engine"] == "flower"
    for metric in ("test_accuracy_mean", "consensus_distance", "round_time_s", "bytes_moved"):
        assert steps(client, run.info.run_id, metric) == [1, 2, 3]
    assert 0.0 < run.data.metrics["test_accuracy_mean"] <= 1.0
    # Each round's measured wall time beside the clock's: 10 ms computing, then 1 ms and
    # two 4,840-byte messages through a 12.5 MB/s uplink.
    measured = [m.value for m in client.get_metric_history(run.info.run_id,
                                                           "measured_round_time_s")]
    modelled = client.get_metric_history(run.info.run_id, "modelled_round_time_s")
    assert [m.value for m in modelled] == [pytest.approx(0.01 + 0.001 + 2 * 4840 / 12.5e6)] * 3
    assert len(measured) == 3 and all(value > 0 for value in measured)
    assert run.data.metrics["measured_time_s"] == pytest.approx(sum(measured))
    cached = sorted(p.name for p in (tmp_path / "cache").rglob("*.pt"))
    assert cached == ["agent-0.pt", "agent-1.pt", "agent-2.pt", "shared.pt"]
    for log in ("superlink", "supernode-0", "worker-2"):
        assert (tmp_path / "federation" / f"{log}.log").exists()


@pytest.mark.slow
def test_a_tls_federation_refuses_strangers_and_leaves_out_unfit_nodes(tmp_path: Path,
                                                                       tracking_uri: str,
                                                                       ) -> None:
    """SuperNodes without a registered key are refused; a node without a partition-id and a
    second node for one agent are left out with their reason; the run completes; a run
    stopped with `flwr stop` is KILLED in MLflow."""
    short = scenario_file(tmp_path, "tls", tracking_uri, rounds=3, agents=2)
    long = scenario_file(tmp_path, "stopped", tracking_uri, rounds=500, agents=2)
    folder = tmp_path / "federation"
    with LocalFederation(folder, agents=2, tls=True, data_cache=tmp_path / "cache") as federation:
        strangers = generate_credentials(folder / "strangers", 3)
        refused = {"Failed to activate SuperNode":
                   federation.start_node(0, strangers.node_keys[0], worker=False, name="stranger"),
                   "All SuperNodes must be registered":
                   federation.start_node(0, None, worker=False, name="keyless")}
        for says, node in refused.items():
            assert node.process.wait(60) != 0
            assert says in node.log.read_text()
        federation.register(strangers.public_key(1), strangers.public_key(2))
        federation.start_node(None, strangers.node_keys[1], name="no-partition")
        federation.start_node(1, strangers.node_keys[2], name="second-for-1")

        outcome = federation.wait(federation.submit(short, "CDSGD", 60.0), 300.0)
        assert outcome.completed, outcome
        client, run = the_run(tracking_uri, "tls")
        assert run.info.status == "FINISHED"
        assert steps(client, run.info.run_id, "test_accuracy_mean") == [1, 2, 3]
        events = Path(client.download_artifacts(run.info.run_id, "events.txt",
                                                str(tmp_path))).read_text()
        assert "left out: this node has no partition-id" in events
        assert "left out: partition-id 1 is already node" in events

        run_id = federation.submit(long, "CDSGD", 60.0)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            experiment = client.get_experiment_by_name("stopped")
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            if runs and len(steps(client, runs[0].info.run_id, "round_time_s")) >= 2:
                break
            time.sleep(1)
        federation.flwr("stop", str(run_id), CONNECTION)
        assert federation.wait(run_id, 60.0).status == "finished:stopped"
        # The ServerApp marks its run on SIGTERM; give it time on a loaded machine before
        # the federation is torn down.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and \
                the_run(tracking_uri, "stopped")[1].info.status == "RUNNING":
            time.sleep(1)
    _, stopped = the_run(tracking_uri, "stopped")
    assert stopped.info.status == "KILLED"
    assert "flwr stop" in stopped.data.tags["error"]
