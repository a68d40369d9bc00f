"""A child run in a process of its own: what it is given (`ChildTask`), what it tells the
sweep (`Round`, `Ended`, `Crashed`), and its body (`run_child`), the same in a
local process (`local_pool`) and in a Ray task (`ray_dispatch`).

The sweep's process starts the child's MLflow run before it hands the child over, so
that whatever becomes of the child, the sweep can mark its run; the child claims the
run for its own process (`Tracker.claim`) where the next sweep can look that process up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from decentral_bench.engines.base import Engine
from decentral_bench.engines.select import build_engine
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.sweep import RunSpec
from decentral_bench.run.child import STOPS, ChildRun, MethodResult, failure_reason
from decentral_bench.run.errors import environment_problem
from decentral_bench.run.share import Share
from decentral_bench.tracking.store import Tracker

ROUND_EVERY_S = 0.5  # a child tells the sweep its rounds at most this often (and each evaluation)


@dataclass(frozen=True)
class ChildTask:
    """One child run handed to a process: its spec and started MLflow run, the store and
    experiment to write to, where the scenario came from (`source`), its share of the
    machine, the engine (None: the one its scenario names) and whether the run is tagged
    with the child's process (`claim`; on Ray the sweep's driver stands for it, since
    Ray ends a driver's tasks when the driver ends)."""

    index: int
    spec: RunSpec
    run_id: str
    tracking_uri: str
    experiment: str
    source: str
    share: Share
    engine: Engine | None = None
    verbose: bool = False
    claim: bool = True


@dataclass(frozen=True)
class Round:
    index: int
    server_round: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class Ended:
    """The child recorded its run as `result` says (FINISHED, FAILED or KILLED)."""

    index: int
    result: MethodResult


@dataclass(frozen=True)
class Crashed:
    """The child could not record its run (`reason`); `environment`: the store or the disk
    failed, which the sweep's next runs would meet too."""

    index: int
    reason: str
    environment: bool


Message = Round | Ended | Crashed
Send = Callable[[Message], None]


class ChannelProgress:
    """A child's progress, sent to the sweep (which saw it start): its rounds (at most
    every `ROUND_EVERY_S`, and every evaluation and the last round) and its end."""

    def __init__(self, send: Send, index: int) -> None:
        self.send, self.index = send, index
        self.rounds, self.last_sent = 0, 0.0

    def sweep_started(self, runs: int, jobs: int) -> None:
        """A child is no sweep: nothing to say."""

    def method_started(self, name: str, rounds: int) -> None:
        self.rounds = rounds

    def round_finished(self, name: str, server_round: int, metrics: dict[str, float]) -> None:
        now = time.monotonic()
        if now - self.last_sent >= ROUND_EVERY_S or "test_accuracy_mean" in metrics \
                or server_round == self.rounds:
            self.last_sent = now
            self.send(Round(self.index, server_round, dict(metrics)))

    def method_finished(self, result: MethodResult) -> None:
        self.send(Ended(self.index, result))


def run_child(task: ChildTask, send: Send, tags: dict[str, str] | None = None) -> None:
    """Record the task's child run (with `tags` saying where it ran) and tell the sweep
    how it goes. A stop (Ctrl-C, a signal) goes on up once the run is marked KILLED."""
    try:
        tracker = Tracker(task.tracking_uri, task.experiment, source=task.source)
        if task.claim:
            tracker.claim(task.run_id)
        tracker.set_tags(task.run_id, tags or {})
        plan = MethodPlan.of(task.spec.scenario, task.spec.method)
        engine = task.engine or build_engine(task.spec.scenario, task.verbose)
        child = ChildRun(tracker, plan, task.spec, task.run_id, ChannelProgress(send, task.index))
    except Exception as error:
        problem = environment_problem(error, task.tracking_uri)
        send(Crashed(task.index, problem or failure_reason(error), problem is not None))
        return
    try:
        child.record(engine)
    except STOPS:
        raise
    except Exception as error:  # recorded FAILED already: a failure of the store or disk
        send(Crashed(task.index, environment_problem(error, task.tracking_uri)
                     or failure_reason(error), True))
