"""Ctrl-C during a run: the running child and the parent are marked KILLED, the CLI exits."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow


def test_ctrl_c_marks_the_running_child_killed(tmp_path: Path, tracking_uri: str) -> None:
    scenario = tmp_path / "long.yaml"
    scenario.write_text("""\
name: interrupted
model: {name: mlp, hidden: [16]}
topology: {kind: ring, agents: 3}
training: {rounds: 5000, batch_size: 16, eval_every: 1000}
methods: [{name: CDSGD, algorithm: cdsgd}, {name: SGD, algorithm: centralized_sgd}]
tracking: {experiment: interrupted}
""")
    client = MlflowClient(tracking_uri=tracking_uri)  # the store made before the run starts
    process = subprocess.Popen(
        [sys.executable, "-m", "decentral_bench", "run", str(scenario), "--tracking-uri",
         tracking_uri], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    child = None
    while time.monotonic() < deadline and child is None:
        time.sleep(1)
        experiment = client.get_experiment_by_name("interrupted")
        if experiment is None:
            continue
        for run in client.search_runs([experiment.experiment_id]):
            if "method" in run.data.tags and \
                    len(client.get_metric_history(run.info.run_id, "round_time_s")) >= 3:
                child = run
    assert child is not None, "the run never got going"
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert "marked KILLED" in output
    runs = client.search_runs([client.get_experiment_by_name("interrupted").experiment_id])
    statuses = {run.info.run_name: (run.info.status, run.data.tags.get("error")) for run in runs}
    assert statuses[child.info.run_name] == ("KILLED", "interrupted by the user")
    parents = [run for run in runs if run.data.tags.get("kind") == "scenario"]
    assert [p.info.status for p in parents] == ["KILLED"]
    assert len(runs) == 2  # the second method never started
