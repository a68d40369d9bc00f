"""Real processes against real stores: two runs creating one new store at once, a run
killed with SIGKILL and resumed, a real `mlflow server` (each on both engines: the Flower
engine's Ray and its confined network thread too), a long sweep's memory, and a full disk
reported in one line."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from processes import free_port, stop_session

pytestmark = pytest.mark.slow

TINY = """\
name: {name}
model: {{name: mlp, hidden: [8]}}
topology: {{kind: ring, agents: 3}}
training: {{rounds: {rounds}, batch_size: 16, eval_every: {rounds}}}
methods: [{{name: CDSGD, algorithm: cdsgd}}, {{name: FedAvg, algorithm: fedavg}}]
tracking: {{experiment: {experiment}}}
resources: {{engine: {engine}}}
"""
# Imports the CLI, then waits for a start signal, so that processes begin together.
LAUNCHER = """\
import sys, time
from pathlib import Path
import decentral_bench.cli.entry, decentral_bench.run.runner
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.002)
sys.argv = ["decentral-bench", *sys.argv[3:]]
decentral_bench.cli.entry.main()
"""
THIRD_PARTY_NOISE = ("Warning", "CHECK constraint", "Traceback")


def _scenario(folder: Path, name: str, rounds: int = 2, experiment: str = "robust",
              extra: str = "", engine: str = "vectorized") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(TINY.format(name=name, rounds=rounds, experiment=experiment,
                                engine=engine) + extra)
    return path


ENGINES = pytest.mark.parametrize("engine", ["vectorized", "flower"])


def _cli(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "decentral_bench", *arguments]


@ENGINES
def test_two_runs_creating_one_new_store_at_once_both_succeed(tmp_path: Path,
                                                              engine: str) -> None:
    """Both runs and a bare MLflow client (what `mlflow ui` does on start) open a new
    sqlite store at the same moment; both runs finish, quietly (on the Flower engine, two
    private Rays side by side)."""
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    go = tmp_path / "go"
    names = ("first", "second")
    processes = [subprocess.Popen(
        [sys.executable, str(launcher), str(tmp_path / f"{name}.ready"), str(go), "run",
         str(_scenario(tmp_path, name, engine=engine)), "--tracking-uri", uri], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in names]
    ui_like = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, pathlib\nfrom mlflow.tracking import "
         "MlflowClient\nwhile not pathlib.Path(sys.argv[2]).exists(): time.sleep(0.002)\n"
         "MlflowClient(sys.argv[1]).search_experiments()", uri, str(go)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not all((tmp_path / f"{name}.ready").exists() for name in names):
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.05)
    go.touch()
    outputs = [process.communicate(timeout=540) for process in processes]  # a loaded machine
    ui_like.wait(timeout=120)
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, out + err
        assert not [word for word in THIRD_PARTY_NOISE if word in out + err], out + err
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("robust").experiment_id])
    parents = [run for run in runs if run.data.tags.get("kind") == "scenario"]
    assert sorted(run.data.tags["scenario"] for run in parents) == ["first", "second"]
    assert {run.info.status for run in runs} == {"FINISHED"} and len(runs) == 6


def _session(sid: int) -> list[str]:
    """The live processes (name and pid) of session `sid`."""
    members = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            name = (entry / "comm").read_text().strip()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and int(fields[3]) == sid and fields[0] != "Z":
            members.append(f"{name} ({entry.name})")
    return members


def _wait_until_empty(sid: int, grace: float = 60.0) -> list[str]:
    """Wait for session `sid` to empty; what is still there after `grace` seconds is
    returned (then killed, by its process group)."""
    deadline = time.monotonic() + grace
    while _session(sid) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = _session(sid)
    for member in left:
        with contextlib.suppress(OSError):
            os.killpg(os.getpgid(int(member.rsplit("(", 1)[1][:-1])), signal.SIGKILL)
    return left


def _child(client: MlflowClient, experiment: str, method: str,
           status: str | None = None) -> list:
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                               filter_string=f"tags.method = '{method}'")
    return [run for run in found if status is None or run.info.status == status]


@ENGINES
def test_a_killed_run_is_marked_killed_on_resume_and_run_again(tmp_path: Path,
                                                               engine: str) -> None:
    """SIGKILL to the run's whole process group (on the Flower engine, Ray's processes
    too) in the middle of a child; the next run marks it KILLED and runs it again."""
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    rounds = 400 if engine == "vectorized" else 100  # long enough to be killed mid-child
    scenario = _scenario(tmp_path, "killed", rounds=rounds, experiment="killed", engine=engine)
    scenario.write_text(scenario.read_text().replace(
        "[{name: CDSGD, algorithm: cdsgd}, {name: FedAvg, algorithm: fedavg}]",
        "[{name: Quick, algorithm: cdsgd, rounds: 3}, {name: Slow, algorithm: cdsgd}]"))
    client = MlflowClient(uri)  # the store made before the run starts, not beside it
    process = subprocess.Popen(_cli("run", str(scenario), "--tracking-uri", uri),
                               cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    try:
        while True:
            assert time.monotonic() < deadline and process.poll() is None, "never got going"
            time.sleep(0.2)
            if client.get_experiment_by_name("killed") is None:
                continue
            slow = _child(client, "killed", "Slow")
            if slow and len(client.get_metric_history(slow[0].info.run_id, "epochs")) >= 5:
                break
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        stop_session(process)
    assert _wait_until_empty(process.pid) == []  # nothing of the run outlives the kill
    [killed] = _child(client, "killed", "Slow")
    assert killed.info.status == "RUNNING"  # what a kill leaves behind
    done = subprocess.run(_cli("run", str(scenario), "--tracking-uri", uri), cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 runs already finished" in done.stdout
    again = client.get_run(killed.info.run_id)
    assert (again.info.status, again.data.tags["error"]) == ("KILLED", "process lost")
    assert len(_child(client, "killed", "Slow", "FINISHED")) == 1
    assert len(_child(client, "killed", "Quick")) == 1  # finished: not run again


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` on a free loopback port, over a temporary sqlite backend
    and artifact root; its URI. Stopped by its process id."""
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts")], cwd=tmp_path,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=5):
                    break
            except OSError:
                time.sleep(0.5)
        yield uri
    finally:
        stop_session(server)
        log.close()


@ENGINES
def test_a_run_records_into_a_real_mlflow_server(tmp_path: Path, mlflow_server: str,
                                                 engine: str) -> None:
    """On the Flower engine the agents run in a private network namespace while MLflow is
    written from the thread outside it, which reaches the server on loopback."""
    scenario = _scenario(tmp_path, "served", rounds=4, experiment="served", engine=engine)
    done = subprocess.run(_cli("run", str(scenario), "--tracking-uri", mlflow_server),
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Open the runs: {mlflow_server}/#/experiments/" in done.stdout
    assert not [word for word in (*THIRD_PARTY_NOISE, "View run") if word in done.stdout +
                done.stderr], done.stdout + done.stderr
    client = MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("served").experiment_id])
    [parent] = [run for run in runs if run.data.tags.get("kind") == "scenario"]
    children = {run.data.tags["method"]: run for run in runs if run is not parent}
    assert set(children) == {"CDSGD", "FedAvg"}
    for method, child in children.items():
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        history = client.get_metric_history(child.info.run_id, "test_accuracy_mean")
        assert [point.step for point in history] == [4]
        assert parent.data.metrics[f"{method}.final_test_accuracy"] == pytest.approx(
            history[-1].value, rel=1e-5)
    assert {item.path for item in client.list_artifacts(parent.info.run_id)} >= {
        "plots", "scenario", "summary.json", "summary.csv", "summary.md"}
    graph = client.download_artifacts(children["CDSGD"].info.run_id, "topology/graph.png",
                                      str(tmp_path))
    assert Path(graph).read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "mlruns").exists()  # the server keeps the artifacts


def _rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) / 1024 for line in status.splitlines()
                 if line.startswith("VmRSS:")), None)  # None once it is a zombie


def test_a_sweep_of_fifty_children_finishes_without_growing(tmp_path: Path) -> None:
    """25 step sizes × 2 methods = 50 child runs in one process; its resident memory
    after the first child and at the end differ by less than 200 MB."""
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    rates = ", ".join(f"{0.01 * (k + 1):.2f}" for k in range(25))
    scenario = _scenario(tmp_path, "long", experiment="long",
                         extra=f"sweep: {{training.lr: [{rates}]}}\n")
    client = MlflowClient(uri)  # the store made before the run starts, not beside it
    process = subprocess.Popen(_cli("run", str(scenario), "--tracking-uri", uri),
                               cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    samples: list[tuple[int, float]] = []  # (finished children, MB)
    while process.poll() is None:
        time.sleep(0.5)
        memory = _rss_mb(process.pid)
        experiment = client.get_experiment_by_name("long")
        if memory is None or experiment is None:
            continue
        finished = client.search_runs([experiment.experiment_id],
                                      "attributes.status = 'FINISHED' and tags.method != ''",
                                      max_results=100)
        samples.append((len(finished), memory))
    output = process.stdout.read() if process.stdout else ""
    assert process.returncode == 0, output
    runs = client.search_runs([client.get_experiment_by_name("long").experiment_id],
                              "tags.method != ''", max_results=100)
    assert len(runs) == 50 and {run.info.status for run in runs} == {"FINISHED"}
    start = next(memory for finished, memory in samples if finished >= 1)
    end = max(memory for finished, memory in samples if finished >= 49)
    print(f"\nCLI resident memory: {start:.0f} MB after the first child, {end:.0f} MB "
          f"at the end of 50 children (growth {end - start:.0f} MB)")
    assert end - start < 200


def test_a_full_disk_stops_the_run_with_one_line(tmp_path: Path) -> None:
    """The store's file may not grow past 150 kB more (RLIMIT_FSIZE, as a full disk
    would refuse the write): the run stops at the first child, names the store."""
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    MlflowClient(uri).search_experiments()
    limit = (tmp_path / "store.db").stat().st_size + 150_000

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(_cli("run", str(_scenario(tmp_path, "full", rounds=400)),
                               "--tracking-uri", uri), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False, preexec_fn=limit_file_size)
    assert done.returncode == 3, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write the MLflow store "
                                                   f"{uri}"), done.stderr
    assert "Traceback" not in done.stdout
