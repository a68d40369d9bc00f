"""A stop asked for by a signal is kept (`engines.stopping`): a library that swallows the
KeyboardInterrupt where it lands (a weakref callback during garbage collection prints
'Exception ignored' and goes on) cannot make the run go on, and a stopped process ends
even where an engine's threads do not."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from decentral_bench.engines import stopping
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.run.child import MethodResult
from decentral_bench.run.runner import run_scenario
from tests.conftest import tiny_scenario


class SwallowedStop:
    """A progress display during which a stop arrives and its exception is lost: only
    the signal handler's record of it is left (as after 'Exception ignored in ...')."""

    def __init__(self, after_round: int) -> None:
        self.after_round = after_round
        self.rounds: list[int] = []

    def sweep_started(self, runs: int, jobs: int) -> None: ...

    def method_started(self, name: str, rounds: int) -> None: ...

    def round_finished(self, name: str, server_round: int, metrics: dict[str, float]) -> None:
        self.rounds.append(server_round)
        if server_round == self.after_round:
            stopping.request("interrupted by the user")

    def method_finished(self, result: MethodResult) -> None: ...


def test_a_stop_whose_exception_was_lost_ends_the_run_at_the_next_round(
        tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    scenario = tiny_scenario(training={"rounds": 20, "batch_size": 16, "lr": 0.1, "seed": 0},
                             methods=[{"name": "CDSGD", "algorithm": "cdsgd"},
                                      {"name": "GT", "algorithm": "gradient_tracking"}],
                             tracking={"uri": uri, "experiment": "stopped"})
    progress = SwallowedStop(after_round=3)
    with pytest.raises(KeyboardInterrupt, match="interrupted by the user"):
        run_scenario(scenario, VectorizedEngine(), progress=progress)
    assert progress.rounds == [1, 2, 3]  # round 4 was never observed
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("stopped").experiment_id])
    by_kind = {run.data.tags.get("kind", "child"): run for run in runs}
    assert len(runs) == 2  # the parent and CDSGD: GT never started
    assert by_kind["scenario"].info.status == "KILLED"
    assert (by_kind["child"].info.status, by_kind["child"].data.tags.get("error")) == (
        "KILLED", "interrupted by the user")


def test_a_stop_raised_inside_an_error_marks_the_run_killed_not_failed(
        tmp_path: Path) -> None:
    """The exception a library made of the interrupt is not the run's failure."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    class LibraryError(VectorizedEngine):
        def run(self, plan, report, on_event):  # type: ignore[no-untyped-def]
            stopping.request("interrupted by the user")
            raise RuntimeError("a library turned the interrupt into its own error")

    scenario = tiny_scenario(tracking={"uri": uri, "experiment": "turned"})
    with pytest.raises(KeyboardInterrupt):
        run_scenario(scenario, LibraryError())
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("turned").experiment_id])
    child = next(run for run in runs if run.data.tags.get("kind") != "scenario")
    assert (child.info.status, child.data.tags.get("error")) == (
        "KILLED", "interrupted by the user")


def test_a_stopped_process_ends_although_a_thread_never_does() -> None:
    """Python waits at exit for every thread that is not a daemon; a stopped run's
    process must not (Flower's workers can wait on Ray for ever)."""
    program = textwrap.dedent("""\
        import threading
        from decentral_bench.cli.entry import leave_when_stopped
        from decentral_bench.engines import stopping
        threading.Thread(target=threading.Event().wait).start()  # never ends
        stopping.request("interrupted by the user")
        leave_when_stopped(130, wait_s=0.5)
        print("not reached")
        """)
    ended = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                           timeout=120)
    assert ended.returncode == 130, ended.stderr
    assert "not reached" not in ended.stdout
