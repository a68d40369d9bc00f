"""Child runs as Ray tasks on a real two-node cluster: a head and a second `ray start` node
on 127.0.0.1, and a real `mlflow server`, all in a network namespace of their own (so
nothing they open is reachable from outside), started and stopped here by their PIDs."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from processes import free_port, stop_session
from test_ray_network import namespaces_allowed

from decentral_bench.engines.flower.confinement import CLONE_NEWNET, enter_private_network

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SWEEP = """\
name: spread
model: {name: mlp, hidden: [8]}
topology: {kind: ring, agents: 3}
training: {rounds: 300, batch_size: 16, eval_every: 100}
methods: [{name: CDSGD, algorithm: cdsgd}, {name: FedAvg, algorithm: fedavg}]
sweep: {training.lr: [0.05, 0.1]}
tracking: {experiment: spread}
resources: {engine: vectorized}
"""


def _into_network_of(pid: int) -> Callable[[], None]:
    """A preexec_fn: the child enters the network namespace of process `pid`."""

    def enter() -> None:
        handle = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            if ctypes.CDLL(None, use_errno=True).setns(handle, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(handle)

    return enter


@dataclass
class Cluster:
    """A two-node Ray cluster and an MLflow server in one private network namespace."""

    address: str
    tracking_uri: str
    enter: Callable[[], None]  # a preexec_fn that puts a process beside them
    folder: Path


def _wait_for_line(log: Path, line: str, process: subprocess.Popen, limit: float = 180) -> None:
    deadline = time.monotonic() + limit
    while line not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not namespaces_allowed():
        pytest.skip("this machine refuses network namespaces")
    tmp_path = tmp_path_factory.mktemp("cluster")
    root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # Ray's socket paths stay short
    ray = Path(sys.executable).parent / "ray"
    environment = {**os.environ, "PYTHONPATH": str(REPO), "RAY_DEDUP_LOGS": "0",
                   "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    environment.pop("RAY_ADDRESS", None)
    port, store_port = free_port(), free_port()
    started: list[subprocess.Popen] = []

    def start(name: str, command: list[str], preexec: Callable[[], None]) -> subprocess.Popen:
        with (root / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, preexec_fn=preexec,
                                       env=environment, cwd=tmp_path)
        started.append(process)
        return process

    try:
        head = start("head", [str(ray), "start", "--head", "--port", str(port),
                              "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                              "--include-dashboard", "false", "--disable-usage-stats",
                              "--temp-dir", str(root / "ray"), "--block"],
                     enter_private_network)
        enter = _into_network_of(head.pid)
        _wait_for_line(root / "head.log", "Ray runtime started", head)
        node = start("node", [str(ray), "start", "--address", f"127.0.0.1:{port}",
                              "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                              "--disable-usage-stats", "--block"], enter)
        server = start("mlflow", [sys.executable, "-m", "mlflow", "server", "--host",
                                  "127.0.0.1", "--port", str(store_port), "--workers", "1",
                                  "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                                  "--artifacts-destination", str(tmp_path / "artifacts")], enter)
        _wait_for_line(root / "node.log", "Ray runtime started", node)
        _wait_for_health(f"http://127.0.0.1:{store_port}", server, enter)
        yield Cluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{store_port}", enter, root)
    finally:
        for process in reversed(started):
            stop_session(process, patience_s=60)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_health(uri: str, server: subprocess.Popen, enter: Callable[[], None]) -> None:
    """Wait until the MLflow server answers (asked from inside its namespace)."""
    ask = f"import urllib.request; urllib.request.urlopen('{uri}/health', timeout=5)"
    deadline = time.monotonic() + 180
    while subprocess.run([sys.executable, "-c", ask], preexec_fn=enter, check=False,
                         capture_output=True, timeout=60).returncode != 0:
        assert server.poll() is None and time.monotonic() < deadline, "mlflow server down"
        time.sleep(1)


def _in_cluster(cluster: Cluster, *arguments: str, timeout: float = 900,
                ) -> subprocess.CompletedProcess[str]:
    """`decentral-bench ARGUMENTS` beside the cluster (in its network namespace)."""
    return subprocess.run([sys.executable, "-m", "decentral_bench", *arguments],
                          cwd=cluster.folder, preexec_fn=cluster.enter, capture_output=True,
                          text=True, timeout=timeout, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def _read_store(cluster: Cluster, experiment: str) -> list[dict[str, object]]:
    """Each run of `experiment` in the cluster's store: name, status, tags."""
    script = (f"import json; from mlflow.tracking import MlflowClient\n"
              f"c = MlflowClient('{cluster.tracking_uri}')\n"
              f"e = c.get_experiment_by_name('{experiment}')\n"
              "runs = c.search_runs([e.experiment_id]) if e else []\n"
              "print(json.dumps([{'name': r.info.run_name, 'status': r.info.status, "
              "'tags': r.data.tags} for r in runs]))")
    done = subprocess.run([sys.executable, "-c", script], preexec_fn=cluster.enter,
                          capture_output=True, text=True, timeout=120, check=True)
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_children_spread_over_the_nodes_and_record_into_the_server(cluster: Cluster,
                                                                   tmp_path: Path) -> None:
    scenario = tmp_path / "spread.yaml"
    scenario.write_text(SWEEP)
    done = _in_cluster(cluster, "run", str(scenario), "--ray-address", cluster.address,
                       "--jobs", "auto", "--tracking-uri", cluster.tracking_uri)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 runs, 2 at once" in done.stdout  # auto: the cluster's two CPUs
    runs = _read_store(cluster, "spread")
    children = [run for run in runs if run["tags"].get("kind") != "scenario"]
    assert len(children) == 4 and {run["status"] for run in runs} == {"FINISHED"}
    assert len({run["tags"]["ray_node"] for run in children}) == 2  # both nodes ran some


def test_a_local_store_with_a_cluster_of_two_nodes_is_refused(cluster: Cluster,
                                                             tmp_path: Path) -> None:
    scenario = tmp_path / "spread.yaml"
    scenario.write_text(SWEEP)
    store = f"sqlite:///{tmp_path / 'local.db'}"
    started = time.monotonic()
    done = _in_cluster(cluster, "run", str(scenario), "--ray-address", cluster.address,
                       "--tracking-uri", store, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert time.monotonic() - started < 120
    assert f"error: {scenario}: tracking.uri: the MLflow store {store} is a file of this " \
           "machine, which the Ray cluster's 2 nodes cannot all write to: run an MLflow " \
           "server every node reaches (mlflow server --host 0.0.0.0" in done.stderr
    assert not (tmp_path / "local.db").exists()  # nothing started
