"""Child runs in parallel: each child's share of the machine (CPUs, memory, GPUs), `--jobs`
and its bad input, and real sweeps of child processes that end as the same runs as one
after another, whatever stops them (a failing child, --fail-fast, Ctrl-C, kill -9)."""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import processes
import pytest
import torch
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from rich.console import Console
from typer.testing import CliRunner

from decentral_bench.cli import entry as cli
from decentral_bench.cli.console import LineProgress, RichProgress, progress_for
from decentral_bench.cli.run import file_parallel_runs
from decentral_bench.engines import stopping
from decentral_bench.engines.vectorized import memory
from decentral_bench.engines.vectorized.memory import agents_per_call, run_device_bytes
from decentral_bench.experiment import training
from decentral_bench.run import share
from decentral_bench.run.checks import check_scenario
from decentral_bench.run.child import MethodResult
from decentral_bench.run.errors import EXIT_ENVIRONMENT
from decentral_bench.run.fork_server import fork_server, wants_children
from decentral_bench.run.local_pool import Origin, _sender, exit_description
from decentral_bench.run.ray_dispatch import store_problem_on
from decentral_bench.run.remote import Round
from decentral_bench.run.runner import run_scenario
from decentral_bench.run.share import DeviceShares, Share, auto_jobs, gpus_per_run
from decentral_bench.scenario import ScenarioError, load
from decentral_bench.tracking.view import GROUP_TAG

TINY = """\
name: {name}
model: {{name: mlp, hidden: [8]}}
topology: {{kind: ring, agents: 3}}
training: {{rounds: {rounds}, batch_size: 16, eval_every: {every}}}
methods: {methods}
{sweep}tracking: {{experiment: {name}}}
resources: {{engine: vectorized}}
"""


TWO = "[{name: CDSGD, algorithm: cdsgd}, {name: FedAvg, algorithm: fedavg}]"


def _scenario(folder: Path, name: str = "par", rounds: int = 30, rates: str | None = "[0.05, 0.1]",
              methods: str = TWO) -> Path:
    """A tiny vectorized scenario: `methods`, swept over the step sizes `rates`."""
    path = folder / f"{name}.yaml"
    sweep = f"sweep: {{training.lr: {rates}}}\n" if rates else ""
    path.write_text(TINY.format(name=name, rounds=rounds, every=max(rounds // 3, 1),
                                methods=methods, sweep=sweep))
    return path


# ---------------------------------------------------------------- shares of the machine


def test_a_childs_cpu_share_caps_the_cpus_it_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.delenv(training.CPU_SHARE_VARIABLE, raising=False)
    assert training.available_cpus() == 4
    monkeypatch.setenv(training.CPU_SHARE_VARIABLE, "3")
    assert training.available_cpus() == 3
    monkeypatch.setenv(training.CPU_SHARE_VARIABLE, "16")  # a share beyond what it may use
    assert training.available_cpus() == 4
    assert Share(cpus=2, memory=0.5).environment() == {
        training.CPU_SHARE_VARIABLE: "2", memory.MEMORY_SHARE_VARIABLE: "0.5"}
    assert Share(2, 0.5, (1, 3)).environment()["CUDA_VISIBLE_DEVICES"] == "1,3"


def test_a_childs_memory_share_shrinks_its_batched_calls(monkeypatch: pytest.MonkeyPatch,
                                                         ) -> None:
    """A child sizes its batched calls in its share of the free memory; a deterministic
    run's chunks stay a constant of the machine, however many run beside it."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32),
                                torch.nn.Linear(32, 10))
    sample = torch.zeros(1, 8, 8)
    cpu = torch.device("cpu")
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: 2**30)
    monkeypatch.delenv(memory.MEMORY_SHARE_VARIABLE, raising=False)
    assert memory.chunk_memory_bytes(cpu, deterministic=False) == 2**30
    deterministic = memory.chunk_memory_bytes(cpu, deterministic=True)
    monkeypatch.setenv(memory.MEMORY_SHARE_VARIABLE, "0.25")
    assert memory.chunk_memory_bytes(cpu, deterministic=False) == 2**28
    assert memory.chunk_memory_bytes(cpu, deterministic=True) == deterministic
    # 3 copies of 32 samples' activations (flatten 64, 32, 10, the whole model's 10) and
    # 4 of the 2410 parameters, in float32
    per_agent = 4 * (3 * 32 * (64 + 32 + 10 + 10) + 4 * (64 * 32 + 32 + 32 * 10 + 10))
    fits = int(0.4 * 2**28 / per_agent)  # blocks of this size, 100 of them, split evenly
    assert agents_per_call(model, sample, 32, 100 * fits, cpu,
                           memory.chunk_memory_bytes(cpu, False)) == fits


def test_devices_are_lent_whole_or_in_shares_and_given_back() -> None:
    shares = DeviceShares.of(2)
    assert shares.take(1.0) == (0,)
    assert shares.take(2.0) is None  # one device is left
    assert shares.take(0.5) == (1,)
    assert shares.take(0.5) == (1,)
    assert shares.take(0.5) is None
    shares.give_back((0,), 1.0)
    assert shares.take(2.0) is None
    shares.give_back((1,), 0.5)
    shares.give_back((1,), 0.5)
    assert shares.take(2.0) == (0, 1)
    assert shares.left == [0.0, 0.0]


@pytest.mark.parametrize(("devices", "jobs", "each"), [(1, 1, 1.0), (1, 2, 0.5), (2, 2, 1.0),
                                                       (2, 3, 0.5), (4, 12, 1 / 3)])
def test_runs_get_whole_devices_while_there_are_enough(tmp_path: Path, devices: int, jobs: int,
                                                       each: float) -> None:
    scenario = load(_scenario(tmp_path))
    assert gpus_per_run(scenario, devices, jobs) == pytest.approx(each)


def test_auto_takes_the_fewest_runs_that_cores_memory_and_count_allow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    specs = check_scenario(_scenario(tmp_path, rates="[0.01, 0.02, 0.03, 0.04, 0.05]"))[1]
    assert len(specs) == 10
    monkeypatch.setattr(share, "cuda_devices", lambda: 0)
    monkeypatch.setattr(share, "available_cpus", lambda: 16)
    need = share.needs_of(specs[0], 0)
    parameters = 64 * 8 + 8 + 8 * 10 + 10  # the MLP [8] on digits' 1797 images of 8 × 8
    assert need.host_bytes == share.PROCESS_BYTES + run_device_bytes(
        parameters, 3, 1797 * (4 * 64 + 8))
    monkeypatch.setattr(share, "free_memory_bytes", lambda device: 100 * need.host_bytes)
    assert auto_jobs(specs) == 10  # the runs there are
    monkeypatch.setattr(share, "free_memory_bytes", lambda device: 7 * need.host_bytes + 1)
    assert auto_jobs(specs) == 7  # memory
    monkeypatch.setattr(share, "available_cpus", lambda: 2)
    assert auto_jobs(specs) == 2  # cores


def test_a_local_store_is_refused_with_a_cluster_it_may_not_reach() -> None:
    here = {"NodeManagerHostname": socket.gethostname()}
    there = {"NodeManagerHostname": "node-2"}
    assert store_problem_on([here], "sqlite:///mlflow.db") is None  # this machine alone
    assert store_problem_on([here, there], "http://10.0.0.5:5000") is None
    assert store_problem_on([here, here], "sqlite:///mlflow.db") is not None  # two nodes
    assert store_problem_on([there], "mlruns") == (
        "the MLflow store mlruns is a file of this machine, which the Ray cluster's node on "
        "another machine cannot write to: run an MLflow server every node reaches (mlflow "
        "server --host 0.0.0.0 --port 5000 --backend-store-uri mlruns) and pass --tracking-uri "
        "http://THIS_HOST:5000 (or set tracking.uri)")


@pytest.mark.parametrize(("code", "words"), [
    (-9, "killed by SIGKILL (as the out-of-memory killer does)"),
    (-15, "killed by SIGTERM"), (1, "exit code 1"), (0, "it exited")])
def test_how_a_childs_process_ended_is_said_in_words(code: int, words: str) -> None:
    assert exit_description(code) == words


# ---------------------------------------------------------------- progress


def _finished(name: str) -> MethodResult:
    return MethodResult(name=name, algorithm="cdsgd", run_id="x", status="FINISHED")


def test_a_forked_child_has_the_libraries_and_the_sweeps_folder_and_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child forked by the fork server starts with torch and what a run imports lazily
    loaded (no import of its own),
    takes the folder and environment the sweep has when the child starts (not those of
    when the server started), and is the server's child (whose end it follows)."""
    context, server = fork_server()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DECENTRAL_BENCH_PROBE", "set after the server started")
    reader, writer = context.Pipe(duplex=False)
    child = context.Process(target=processes.report_origin, args=(Origin(server), writer))
    child.start()
    writer.close()
    try:
        assert reader.poll(120), "the forked child said nothing within 120 s"
        assert reader.recv() == (True, str(tmp_path), "set after the server started", server)
    finally:
        child.join(30)
        if child.exitcode is None:
            child.kill()
    assert child.exitcode == 0


@pytest.mark.parametrize(("jobs", "file_value", "wanted"), [
    ("2", None, True), ("1", 4, False), (None, 3, True), (None, None, False),
    (None, "auto", True), ("auto", None, True), ("0", None, False), ("two", None, False)])
def test_the_fork_server_starts_early_only_for_a_sweep_that_forks(
        jobs: str | None, file_value: object, wanted: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` starts the fork server as it begins where --jobs (else the file's
    resources.parallel_runs) asks for more than one run at once, or auto on more than
    one core; a bad count is left to the checks that follow."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert wants_children(jobs, file_value) is wanted
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert wants_children("auto", None) is False


def test_the_files_parallel_runs_is_read_without_the_scenario_checks(tmp_path: Path) -> None:
    """The early start reads resources.parallel_runs as written; a file it cannot read, or
    one without the key, asks for nothing (the checks then name what is wrong)."""
    good, bare, broken = tmp_path / "good.yaml", tmp_path / "bare.yaml", tmp_path / "bad.yaml"
    good.write_text("name: x\nresources: {parallel_runs: 3}\n")
    bare.write_text("name: x\n")
    broken.write_text("name: [\n")
    assert file_parallel_runs(good) == 3
    assert file_parallel_runs(bare) is None
    assert file_parallel_runs(broken) is None
    assert file_parallel_runs(tmp_path / "missing.yaml") is None
    assert file_parallel_runs(good, ["training.lr=0.1", "resources.parallel_runs=auto"]) == "auto"


@pytest.mark.slow
def test_the_fork_server_shows_no_warnings_of_its_imports(tmp_path: Path) -> None:
    """The server's output is the terminal's: what its imports warn about (MLflow's SQL
    store warns of a deprecated SQLAlchemy option) is not shown there."""
    code = ("import os\n"
            "from decentral_bench.run.fork_server import fork_server\n"
            "context, _ = fork_server()\n"
            "child = context.Process(target=os.getpid)\n"
            "child.start()\n"
            "child.join(120)\n"
            "print('child ended', child.exitcode)\n")
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=240, cwd=tmp_path, env=environment)
    assert "child ended 0" in done.stdout, done.stdout + done.stderr
    assert "Warning" not in done.stderr, done.stderr


def test_a_child_whose_sweep_stopped_reading_stops_as_killed() -> None:
    """A round sent into a pipe the sweep no longer reads (the sweep's process ended before
    its signal reached the child) stops the run as that signal would, not as a failure."""
    reader, writer = multiprocessing.Pipe(duplex=False)
    reader.close()
    try:
        with pytest.raises(KeyboardInterrupt, match="the process running the sweep ended"):
            _sender(writer)(Round(0, 1, {"test_accuracy_mean": 0.5}))
        assert stopping.requested() == "the process running the sweep ended"
    finally:
        stopping.clear()
        writer.close()


def test_a_terminal_shows_every_running_child_and_the_sweep_in_one_view() -> None:
    screen = Console(file=io.StringIO(), force_terminal=True, width=140, color_system=None)
    with progress_for(screen) as progress:
        assert isinstance(progress, RichProgress)
        progress.sweep_started(3, 2)
        progress.method_started("CDSGD lr=0.1 seed=0", 40)
        progress.method_started("FedAvg lr=0.1 seed=0", 40)
        progress.round_finished("CDSGD lr=0.1 seed=0", 10, {"test_accuracy_mean": 0.5})
        progress.round_finished("FedAvg lr=0.1 seed=0", 20, {"train_loss_mean": 1.0})
        view = Console(file=io.StringIO(), width=140, color_system=None)
        view.print(progress.bars.make_tasks_table(progress.bars.tasks))
        lines = [" ".join(word for word in line.split() if word.isascii())  # no bars
                 for line in view.file.getvalue().splitlines()]  # type: ignore[attr-defined]
        assert lines[0].startswith("2 at once 0/3 runs 0:00:00 ETA")
        assert lines[1].startswith("CDSGD lr=0.1 seed=0 10/40 rounds 0:00:00 ETA")
        assert lines[1].endswith("test acc 0.500 at round 10")
        assert lines[2].startswith("FedAvg lr=0.1 seed=0 20/40 rounds 0:00:00 ETA")
        assert lines[2].endswith("running")
        assert len(lines) == 3
        progress.method_finished(_finished("CDSGD lr=0.1 seed=0"))
        assert [task.description for task in progress.bars.tasks] == [
            "2 at once", "FedAvg lr=0.1 seed=0"]  # the finished child leaves the view
        assert progress.bars.tasks[0].completed == 1
    assert "CDSGD lr=0.1 seed=0: finished, test acc 0.500 at round 10 in 0:00:00" in \
        screen.file.getvalue()  # type: ignore[attr-defined]


def test_a_log_file_gets_lines_with_the_runs_done() -> None:
    log = Console(file=io.StringIO(), width=140)
    with progress_for(log) as progress:
        assert isinstance(progress, LineProgress)
        progress.sweep_started(2, 2)
        progress.method_started("A", 10)
        progress.round_finished("A", 10, {"test_accuracy_mean": 0.75})
        progress.method_finished(_finished("A"))
    lines = log.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines[0] == "2 runs, 2 at once"
    assert lines[1].startswith("A: started, 10 rounds (")
    assert lines[2].startswith("A: finished, test acc 0.750 at round 10, 1/2 runs done (")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("jobs", ["0", "-1", "2.5", "many"])
def test_a_jobs_count_that_is_no_count_is_refused_in_one_line(tmp_path: Path, jobs: str) -> None:
    done = CliRunner().invoke(cli.cli, ["run", str(_scenario(tmp_path)), f"--jobs={jobs}",
                                        "--tracking-uri", f"sqlite:///{tmp_path / 's.db'}"])
    assert done.exit_code == 2
    assert done.stderr.strip() == (f"error: --jobs {jobs}: expected a whole number of runs at "
                                   "once (1 or more), or auto")
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize(("keys", "key", "words"), [
    ("resources: {parallel_runs: 0}", "resources.parallel_runs",
     "expected a whole number of runs at once (1 or more) or auto, got 0"),
    ("resources: {parallel_runs: some}", "resources.parallel_runs",
     "expected a whole number of runs at once (1 or more) or auto, got 'some'"),
    ("resources: {gpus_per_run: 1.5}", "resources.gpus_per_run",
     "expected a share of one GPU in (0, 1] or a whole number of GPUs, got 1.5"),
    ("resources: {gpus_per_run: 0}", "resources.gpus_per_run",
     "expected a share of one GPU in (0, 1] or a whole number of GPUs, got 0"),
    ("sweep: {resources.parallel_runs: [1, 2]}", "sweep",
     "'resources.parallel_runs' cannot be swept"),
])
def test_bad_parallel_keys_name_the_key(tmp_path: Path, keys: str, key: str,
                                        words: str) -> None:
    text = _scenario(tmp_path, rates=None).read_text()
    (tmp_path / "bad.yaml").write_text(text.replace("resources: {engine: vectorized}", keys))
    with pytest.raises(ScenarioError) as caught:
        check_scenario(tmp_path / "bad.yaml")
    [problem] = [found for found_key, found in caught.value.problems if found_key == key]
    assert words in problem, caught.value.problems


def test_more_gpus_per_run_than_the_machine_has_is_refused(tmp_path: Path) -> None:
    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    text = _scenario(tmp_path).read_text().replace(
        "{engine: vectorized}", f"{{engine: vectorized, gpus_per_run: {devices + 1}}}")
    (tmp_path / "gpus.yaml").write_text(text)
    done = CliRunner().invoke(cli.cli, ["validate", str(tmp_path / "gpus.yaml")])
    assert done.exit_code == 2
    have = "no CUDA device" if devices == 0 else f"{devices} CUDA device"
    asked = "1 GPU" if devices == 0 else f"{devices + 1} GPUs"
    assert f"error: {tmp_path / 'gpus.yaml'}: sweep (training.lr=0.05): resources.gpus_per_run: " \
           f"asks for {asked} per run but this machine has {have}" in done.stderr


def test_a_ray_address_that_does_not_answer_is_one_line_within_seconds(
        tmp_path: Path, main_exit: Callable[..., tuple[object, str]]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    started = time.monotonic()
    code, message = main_exit("run", str(_scenario(tmp_path)), "--ray-address", address,
                              "--jobs", "2", "--tracking-uri", f"sqlite:///{tmp_path / 's.db'}")
    assert time.monotonic() - started < 15
    assert code == EXIT_ENVIRONMENT
    [line] = message.strip().splitlines()
    assert line.startswith(f"error: no Ray cluster answers at {address} ")
    assert not (tmp_path / "s.db").exists()  # refused before any run was started


# ---------------------------------------------------------------- real sweeps


def _cli(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "decentral_bench", *arguments]


def _runs(client: MlflowClient, experiment: str) -> dict[str, Run]:
    """The experiment's child runs by name (and the parent as `parent`)."""
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                               max_results=1000)
    return {"parent" if run.data.tags.get("kind") == "scenario" else run.info.run_name: run
            for run in found}


def _wait_for(check: Callable[[], bool], what: str, process: subprocess.Popen | None = None,
              limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"waited {limit:.0f} s for {what}"
        assert process is None or process.poll() is None, f"the sweep ended before {what}"
        time.sleep(0.5)


def _rounds_logged(client: MlflowClient, run: Run) -> int:
    return len(client.get_metric_history(run.info.run_id, "round_time_s"))


def _running(client: MlflowClient, experiment: str, names: tuple[str, ...],
             rounds: int = 3) -> bool:
    """Whether each named child has logged `rounds` rounds."""
    if client.get_experiment_by_name(experiment) is None:
        return False
    runs = _runs(client, experiment)
    return all(name in runs and _rounds_logged(client, runs[name]) >= rounds for name in names)


def _computed(metrics: dict[str, float]) -> dict[str, float]:
    """A round's metrics but its measured wall time."""
    return {key: value for key, value in metrics.items() if key != "round_time_s"}


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_parallel_sweep_ends_as_the_same_runs_as_one_after_another(tmp_path: Path) -> None:
    """Three children two at a time, each in a process of its own, against the same three
    in this process one after another: every round's metrics agree to 1e-5."""
    scenario = load(_scenario(tmp_path, rates=None, methods="[{name: CDSGD, algorithm: cdsgd}, "
                              "{name: FedAvg, algorithm: fedavg}, {name: SGD, algorithm: "
                              "centralized_sgd}]"))
    results = {}
    for jobs in (1, 2):
        uri = f"sqlite:///{tmp_path / f'jobs{jobs}.db'}"
        results[jobs] = run_scenario(scenario, tracking_uri=uri, jobs=jobs)
        assert results[jobs].jobs == jobs
    one, two = ({run.name: run for run in results[jobs].runs} for jobs in (1, 2))
    assert sorted(one) == sorted(two) == ["CDSGD seed=0", "FedAvg seed=0", "SGD seed=0"]
    for name, alone in one.items():
        assert alone.status == two[name].status == "FINISHED"
        assert [step for step, _ in two[name].history] == list(range(1, 31))
        for (_, expected), (_, found) in zip(alone.history, two[name].history, strict=True):
            expected, found = (_computed(metrics) for metrics in (expected, found))
            assert found == pytest.approx(expected, rel=1e-5, abs=1e-7), name
    client = MlflowClient(f"sqlite:///{tmp_path / 'jobs2.db'}")
    runs = _runs(client, "par")
    assert runs["parent"].info.status == "FINISHED"
    parent_pid = runs["parent"].data.tags["process"].split(":")[1]
    children = {run.data.tags["process"].split(":")[1] for name, run in runs.items()
                if name != "parent"}
    assert len(children) == 3 and parent_pid not in children  # each in a process of its own
    assert {run.info.status for run in runs.values()} == {"FINISHED"}
    assert {run.data.tags[GROUP_TAG] for run in runs.values()} == {runs["parent"].info.run_name}


@pytest.mark.slow
def test_a_failing_child_does_not_stop_the_others_unless_fail_fast(tmp_path: Path) -> None:
    """A child that diverges is FAILED and the others finish; with --fail-fast it stops
    the running one (KILLED, saying why) and the rest never start."""
    path = _scenario(tmp_path, "failing", rounds=20, rates=None, methods=(
        "[{name: Bad, algorithm: cdsgd, lr: 1.0e+12}, {name: Slow, algorithm: cdsgd, "
        "rounds: 200000}, {name: Later, algorithm: cdsgd}]")).read_text()
    (tmp_path / "failing.yaml").write_text(path)
    uri = f"sqlite:///{tmp_path / 'fast.db'}"
    started = time.monotonic()
    done = subprocess.run(_cli("run", str(tmp_path / "failing.yaml"), "--jobs", "2",
                               "--fail-fast", "--tracking-uri", uri), cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert time.monotonic() - started < 400  # Slow's 200000 rounds were not waited for
    runs = _runs(MlflowClient(uri), "failing")
    assert sorted(runs) == ["Bad seed=0", "Slow seed=0", "parent"]  # Later never started
    bad, slow = runs["Bad seed=0"], runs["Slow seed=0"]
    assert bad.info.status == "FAILED" and bad.data.tags["error"].startswith("diverged at round")
    assert (slow.info.status, slow.data.tags["error"]) == (
        "KILLED", "stopped: Bad seed=0 failed and --fail-fast is set")
    assert runs["parent"].info.status == "FAILED"

    (tmp_path / "going.yaml").write_text(path.replace("rounds: 200000", "rounds: 20"))
    uri = f"sqlite:///{tmp_path / 'going.db'}"
    done = subprocess.run(_cli("run", str(tmp_path / "going.yaml"), "--jobs", "2",
                               "--tracking-uri", uri), cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    statuses = {name: run.info.status for name, run in _runs(MlflowClient(uri),
                                                               "failing").items()}
    assert statuses == {"Bad seed=0": "FAILED", "Slow seed=0": "FINISHED",
                        "Later seed=0": "FINISHED", "parent": "FAILED"}
    assert "3 runs, 2 at once" in done.stdout


LONG = ("[{name: A, algorithm: cdsgd, rounds: 200000}, {name: B, algorithm: fedavg, "
        "rounds: 200000}, {name: C, algorithm: cdsgd, rounds: 20}]")


def _long_sweep(folder: Path, name: str, methods: str = LONG) -> Path:
    return _scenario(folder, name, rounds=20, rates=None, methods=methods)


@pytest.mark.slow
def test_ctrl_c_marks_every_running_child_killed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    client = MlflowClient(uri)  # the store made before the sweep starts, not beside it
    process = subprocess.Popen(_cli("run", str(_long_sweep(tmp_path, "ctrlc")), "--jobs", "2",
                                    "--tracking-uri", uri), cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        _wait_for(lambda: _running(client, "ctrlc", ("A seed=0", "B seed=0")),
                  "both children to run", process)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, output
    assert "the running children and the parent run are marked KILLED" in output
    runs = _runs(client, "ctrlc")
    assert {name: (run.info.status, run.data.tags.get("error")) for name, run in runs.items()
            if name != "parent"} == {"A seed=0": ("KILLED", "interrupted by the user"),
                                     "B seed=0": ("KILLED", "interrupted by the user")}
    assert runs["parent"].info.status == "KILLED"  # and C never started


def _pid_of(run: Run) -> int:
    return int(run.data.tags["process"].split(":")[1])


@pytest.mark.slow
def test_a_child_killed_from_outside_fails_alone(tmp_path: Path) -> None:
    """A child's process killed with -9 (as the out-of-memory killer does) is FAILED,
    saying so; the sweep goes on with the others."""
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    path = _long_sweep(tmp_path, "oom", LONG.replace("fedavg, rounds: 200000", "fedavg, "
                                                     "rounds: 40"))
    client = MlflowClient(uri)  # the store made before the sweep starts, not beside it
    process = subprocess.Popen(_cli("run", str(path), "--jobs", "2", "--tracking-uri", uri),
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        _wait_for(lambda: _running(client, "oom", ("A seed=0",)), "A to run", process)
        os.kill(_pid_of(_runs(client, "oom")["A seed=0"]), signal.SIGKILL)
        output, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 1, output
    runs = _runs(client, "oom")
    assert (runs["A seed=0"].info.status, runs["A seed=0"].data.tags["error"]) == (
        "FAILED", "its process ended before the run did (killed by SIGKILL (as the "
                  "out-of-memory killer does))")
    assert runs["B seed=0"].info.status == runs["C seed=0"].info.status == "FINISHED"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_sweep_killed_with_sigkill_is_resumed_by_the_next(tmp_path: Path) -> None:
    """kill -9 of the sweep's process: its children end with it, their runs KILLED (by
    themselves, or as lost by the next sweep), and the next sweep runs only those."""
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    path = _long_sweep(tmp_path, "nine", LONG.replace("200000", "1000"))
    client = MlflowClient(uri)  # the store made before the sweep starts, not beside it
    process = subprocess.Popen(_cli("run", str(path), "--jobs", "2", "--tracking-uri", uri),
                               cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for(lambda: _running(client, "nine", ("A seed=0", "B seed=0")),
                  "both children to run", process)
        children = [_pid_of(run) for name, run in _runs(client, "nine").items()
                    if name != "parent"]
        process.kill()  # the sweep's process alone: its children are in groups of their own
        process.wait(30)
        _wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children),
                  "the children to end with their sweep", limit=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    killed = {name: run for name, run in _runs(client, "nine").items() if name != "parent"}
    assert set(killed) == {"A seed=0", "B seed=0"}
    done = subprocess.run(_cli("run", str(path), "--jobs", "2", "--tracking-uri", uri),
                          cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for name, run in killed.items():
        again = client.get_run(run.info.run_id)
        assert again.info.status == "KILLED", name
        assert again.data.tags["error"] in ("the process running the sweep ended",
                                            "process lost"), again.data.tags["error"]
    everything = client.search_runs([client.get_experiment_by_name("nine").experiment_id],
                                    "tags.method != ''", max_results=100)
    finished = sorted(run.info.run_name for run in everything if run.info.status == "FINISHED")
    assert finished == ["A seed=0", "B seed=0", "C seed=0"]  # each once
    assert len(everything) == 5  # A and B twice, C once
