"""Child runs side by side: up to `jobs` at once, each in a process of its own, on this
machine (`local_pool`) or as Ray tasks on a cluster (`ray_dispatch`).

The sweep's process starts each child's MLflow run, hands the child over, and draws
its progress as it comes. Whatever becomes of a child, its run is marked:

- it ends as the child recorded it (FINISHED, FAILED, KILLED);
- its process ends without a word (a crash, the out-of-memory killer): FAILED, saying
  how the process ended; the other children go on;
- a child fails and `fail_fast` is set, the store or the disk fails (the next runs
  would too), or the sweep is stopped (Ctrl-C, SIGTERM): every running child is
  stopped, given `STOP_GRACE_S` seconds to mark its run, then killed, and its run is
  marked KILLED with the sweep's reason; the children not started yet are not started.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from decentral_bench.engines.base import Engine
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.sweep import RunSpec
from decentral_bench.run.child import (
    STOPS,
    MethodResult,
    Progress,
    failure_reason,
    open_child_run,
    stop_reason,
)
from decentral_bench.run.remote import ChildTask, Crashed, Ended, Message, Round
from decentral_bench.run.share import Share
from decentral_bench.tracking.local_store import StoreError
from decentral_bench.tracking.store import Tracker
from decentral_bench.tracking.store_problems import store_problem

STOP_GRACE_S = 60.0  # a stopped child's time to mark its run (a Flower run joins its engine)
POLL_S = 0.2


class Pool(Protocol):
    """Where children run: this machine's processes or a Ray cluster's tasks."""

    claims: bool  # whether a child tags its run with its own process

    def share_for(self, spec: RunSpec) -> Share | None:
        """What a run of `spec` gets, or None while it does not fit yet."""
        ...

    def start(self, task: ChildTask) -> None: ...

    def receive(self, timeout: float) -> tuple[list[Message], dict[int, str]]:
        """Messages within `timeout` seconds, and the children that ended (index → how)."""
        ...

    def stop(self, index: int) -> None:
        """Ask a child to stop (it marks its run KILLED)."""
        ...

    def kill(self, index: int) -> None:
        """End a child now."""
        ...

    def close(self) -> None:
        """Kill what is left and let go of the machines (the runs are marked already)."""
        ...


@dataclass
class Running:
    """A child handed over: its task, its pool, and what it reported."""

    task: ChildTask
    pool: Pool
    result: MethodResult | None = None
    crash: str | None = None


@dataclass(frozen=True)
class Sweep:
    """Where the children record: the store, the parent run, the scenario's source; the
    engine to use (None: each run's own), Flower's logs shown (`verbose`)."""

    tracker: Tracker
    parent_id: str
    source: str
    engine: Engine | None = None
    verbose: bool = False


class ParallelSweep:
    """Runs children `jobs` at once in the pool `pool_for` picks for each (see the
    module docstring); with `fail_fast`, the first failed child stops the others."""

    def __init__(self, sweep: Sweep, jobs: int, pool_for: Callable[[RunSpec], Pool],
                 progress: Progress | None = None, fail_fast: bool = False) -> None:
        self.sweep, self.jobs, self.pool_for = sweep, jobs, pool_for
        self.progress, self.fail_fast = progress, fail_fast
        self.pending: deque[tuple[int, RunSpec]] = deque()
        self.running: dict[int, Running] = {}
        self.results: dict[int, MethodResult] = {}
        self.halt: str | None = None  # why no more children start
        self.stopping: str | None = None  # why the running ones were stopped
        self.broken: str | None = None  # a failure of the store or the disk

    def run(self, specs: list[RunSpec]) -> list[MethodResult]:
        """Every spec's child run, in the order of `specs` (those started)."""
        self.pending = deque(enumerate(specs))
        if self.progress is not None:
            self.progress.sweep_started(len(specs), self.jobs)
        try:
            while (self.pending and self.halt is None) or self.running:
                self._start_what_fits()
                self._receive()
                if self.halt is not None and self.stopping is None and self.running:
                    self._stop_all(self.halt)
        except STOPS as stop:
            self._stop_all(stop_reason(stop))
            raise
        except Exception as error:  # the store failed the sweep's own process
            self._stop_all(f"stopped: the sweep failed ({failure_reason(error)})")
            raise
        if self.broken is not None:
            raise StoreError(self.broken)
        return [self.results[index] for index in sorted(self.results)]

    def _start_what_fits(self) -> None:
        while self.pending and self.halt is None and len(self.running) < self.jobs:
            index, spec = self.pending[0]
            pool = self.pool_for(spec)
            share = pool.share_for(spec)
            if share is None and not self.running:
                raise RuntimeError(f"{spec.name} needs more devices than there are")
            if share is None:
                return  # its devices are taken: it waits for one to come back
            self.pending.popleft()
            self._start(index, spec, pool, share)

    def _start(self, index: int, spec: RunSpec, pool: Pool, share: Share) -> None:
        sweep = self.sweep
        plan = MethodPlan.of(spec.scenario, spec.method)
        run_id = open_child_run(sweep.tracker, spec, plan.algorithm, sweep.parent_id)
        task = ChildTask(index, spec, run_id, sweep.tracker.uri, sweep.tracker.experiment_name,
                         sweep.source, share, sweep.engine, sweep.verbose, claim=pool.claims)
        self.running[index] = Running(task, pool)
        if self.progress is not None:
            self.progress.method_started(spec.name, plan.rounds)
        pool.start(task)

    def _receive(self) -> None:
        pools = {running.pool for running in self.running.values()}
        for pool in pools:
            messages, ended = pool.receive(POLL_S / len(pools))
            for message in messages:
                self._handle(message)
            for index, how in ended.items():
                self._ended(index, how)

    def _handle(self, message: Message) -> None:
        running = self.running.get(message.index)
        if running is None:
            return
        if isinstance(message, Round):
            if self.progress is not None:
                self.progress.round_finished(running.task.spec.name, message.server_round,
                                             message.metrics)
        elif isinstance(message, Ended):
            running.result = message.result
        elif isinstance(message, Crashed):
            running.crash = message.reason
            if message.environment:
                self.broken = message.reason
                self.halt = self.halt or f"stopped: {message.reason}"

    def _ended(self, index: int, how: str) -> None:
        """A child's process ended: its run as it recorded it, or marked here."""
        running = self.running.pop(index)
        task, tracker = running.task, self.sweep.tracker
        result = running.result or MethodResult(task.spec.name, "", task.run_id)
        if self.stopping is not None and result.status in ("RUNNING", "KILLED"):
            result.status, result.error = "KILLED", self.stopping
            self._mark(tracker.kill, task.run_id, self.stopping)
        elif result.status == "RUNNING":
            result.status = "FAILED"
            result.error = running.crash or f"its process ended before the run did ({how})"
            self._mark(tracker.fail, task.run_id, result.error)
        self.results[index] = result
        if self.progress is not None:
            self.progress.method_finished(result)
        if result.status == "FAILED" and self.fail_fast and self.halt is None:
            self.halt = f"stopped: {result.name} failed and --fail-fast is set"

    def _mark(self, mark: Callable[[str, str], None], run_id: str, reason: str) -> None:
        """Mark a run KILLED or FAILED; where the store fails, the sweep stops."""
        try:
            mark(run_id, reason)
        except Exception as error:
            self.broken = self.broken or store_problem(error, self.sweep.tracker.uri) or \
                failure_reason(error)
            self.halt = self.halt or f"stopped: {self.broken}"

    def _stop_all(self, reason: str) -> None:
        """Stop every running child, wait up to `STOP_GRACE_S` for each to mark its run,
        kill those that did not; their runs are KILLED with `reason`."""
        self.stopping, self.halt = reason, self.halt or reason
        for index, running in self.running.items():
            running.pool.stop(index)
        deadline = time.monotonic() + STOP_GRACE_S
        try:
            while self.running and time.monotonic() < deadline:
                self._receive()
        except KeyboardInterrupt:  # asked again: stop waiting
            pass
        for index, running in list(self.running.items()):
            running.pool.kill(index)
            self._ended(index, "killed")
