"""The CLI runs a tiny scenario and leaves a parent run with complete child runs in MLflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

SCENARIO = """\
name: e2e
dataset: {name: digits, partition: iid}
model: {name: mlp, hidden: [16]}
topology: {kind: complete, agents: 3}
training: {rounds: 2, batch_size: 16, lr: 0.1, seed: 0}
methods:
  - {name: CDSGD, algorithm: cdsgd}
  - {name: FedAvg, algorithm: fedavg, local_epochs: 1}
  - {name: SGD, algorithm: centralized_sgd}
tracking: {experiment: e2e-test}
"""

ROUND_METRICS = {
    "test_accuracy_mean", "test_accuracy_std", "train_accuracy_mean", "train_loss_mean",
    "average_model_test_accuracy", "consensus_distance", "bytes_moved", "round_time_s",
}

# A point of the MLP 64 → 16 → 10: (64 × 16 + 16 + 16 × 10 + 10) float32 values.
POINT = 4 * (64 * 16 + 16 + 16 * 10 + 10)
# Points a round moves (bytes_moved, router_bytes_moved). CDSGD on the complete 3-graph:
# each agent sends its point over its 2 edges; the router hands each agent the 3 points of
# its neighbourhood (its own included) and takes 3 replies. FedAvg: the global model down
# to 3 agents and 3 models up. SGD: one node has no link to send over; the router still
# hands it its own point and takes its reply.
BYTES = {"CDSGD": (6, 12), "FedAvg": (6, 6), "SGD": (0, 2)}


def test_cli_run_records_parent_and_children(tmp_path: Path, tracking_uri: str) -> None:
    path = tmp_path / "e2e.yaml"
    path.write_text(SCENARIO)
    done = subprocess.run(
        [sys.executable, "-m", "decentral_bench", "run", str(path), "--tracking-uri", tracking_uri],
        capture_output=True, text=True, check=False, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mlflow ui --backend-store-uri" in done.stdout

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("e2e-test")
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(run.data.tags["method"] for run in children) == ["CDSGD", "FedAvg", "SGD"]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.info.status == "FINISHED"
        assert set(child.data.metrics) >= ROUND_METRICS, child.data.tags["method"]
        history = client.get_metric_history(child.info.run_id, "test_accuracy_mean")
        assert [point.step for point in history] == [1, 2]
        assert 0.0 < child.data.metrics["test_accuracy_mean"] <= 1.0
        moved, routed = BYTES[child.data.tags["method"]]
        assert (child.data.metrics["bytes_moved"], child.data.metrics["router_bytes_moved"]) \
            == (moved * POINT, routed * POINT)
    by_method = {run.data.tags["method"]: run for run in children}
    cdsgd = by_method["CDSGD"]
    assert float(cdsgd.data.params["topology.lambda2"]) == pytest.approx(0.0, abs=1e-9)
    assert cdsgd.data.params["topology.kind"] == "complete"
    assert by_method["SGD"].data.metrics["consensus_distance"] == 0.0
    artifacts = {item.path for item in client.list_artifacts(cdsgd.info.run_id, "topology")}
    assert {"topology/mixing_matrix.npy", "topology/mixing_matrix.csv"} <= artifacts
    parent_artifacts = {item.path for item in client.list_artifacts(parents[0].info.run_id)}
    assert {"scenario", "plots", "summary.md"} <= parent_artifacts


LEARNING = """\
name: learns
dataset: {name: digits, partition: iid, test_fraction: 0.2}
model: {name: mlp, hidden: [64]}
topology: {kind: complete, agents: 5}
training: {rounds: 100, batch_size: 32, lr: 0.1, seed: 0, eval_every: 25}
methods: [{name: CDSGD, algorithm: cdsgd}]
tracking: {experiment: learns}
"""


def test_the_product_learns(tmp_path: Path, tracking_uri: str) -> None:
    """The quickstart's setting (digits, 5 agents, 100 CDSGD rounds) learns: every agent
    and the average model end above 0.85 test accuracy (0.93 measured)."""
    path = tmp_path / "learns.yaml"
    path.write_text(LEARNING)
    done = subprocess.run(
        [sys.executable, "-m", "decentral_bench", "run", str(path), "--tracking-uri", tracking_uri],
        capture_output=True, text=True, check=False, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    client = MlflowClient(tracking_uri=tracking_uri)
    [child] = client.search_runs([client.get_experiment_by_name("learns").experiment_id],
                                 filter_string="tags.method = 'CDSGD'")
    accuracy = client.get_metric_history(child.info.run_id, "test_accuracy_mean")
    assert [point.step for point in accuracy] == [25, 50, 75, 100]
    assert accuracy[0].value < accuracy[-1].value
    assert child.data.metrics["test_accuracy_min"] >= 0.85
    assert child.data.metrics["average_model_test_accuracy"] >= 0.85
