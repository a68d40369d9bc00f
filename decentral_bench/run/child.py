"""One child run: a method of a scenario on an engine, recorded as an MLflow child run.

A child that crashes is marked FAILED with its reason; a child whose loss turns NaN
or infinite stops as FAILED (`diverged at round k`); Ctrl-C, a signal that ends the
process (SIGTERM, which is how Flower stops a ServerApp) or an engine's `RunStopped`
(`flwr stop`) marks it KILLED, with the reason in its `error` tag, and goes on up.
The same code records a child in the process of the sweep or in one of its own
(`parallel`, `ray_dispatch`).
"""

from __future__ import annotations

import contextlib
import time
import traceback
from dataclasses import dataclass, field
from typing import Protocol

from matplotlib import pyplot
from matplotlib.figure import Figure

from decentral_bench.engines import stopping
from decentral_bench.engines.base import Engine, RunStopped
from decentral_bench.engines.observer import Diverged, RoundObserver
from decentral_bench.experiment.data import label_histogram
from decentral_bench.experiment.models import parameter_count
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.sweep import RunSpec
from decentral_bench.report.plots import graph_figure, label_histogram_figure, matrix_csv
from decentral_bench.run.artifacts import log_failure_schedule, log_final_model
from decentral_bench.run.errors import environment_problem
from decentral_bench.tracking.metric_buffer import MetricBuffer
from decentral_bench.tracking.notes import child_note
from decentral_bench.tracking.params import method_params
from decentral_bench.tracking.store import SHARED_TAG, Tracker
from decentral_bench.tracking.view import GROUP_TAG

# What stops a run from outside: it is then KILLED (not FAILED) and the stop goes on up.
STOPS = (KeyboardInterrupt, SystemExit, RunStopped)


def stop_reason(stop: BaseException) -> str:
    """Why a run was stopped, in words (the KILLED run's `error` tag)."""
    if isinstance(stop, KeyboardInterrupt):
        return str(stop) or "interrupted by the user"
    if isinstance(stop, SystemExit):
        return (f"the process was stopped (exit code {stop.code}): a signal such as SIGTERM, "
                "which is also how `flwr stop` ends a ServerApp")
    return str(stop)


def failure_reason(error: BaseException) -> str:
    """The innermost cause of an error, which is the one a user can act on."""
    while error.__cause__ is not None:
        error = error.__cause__
    if isinstance(error, Diverged):
        return str(error)
    return f"{type(error).__name__}: {error}"


@dataclass
class MethodResult:
    """What one child run did, as recorded."""

    name: str
    algorithm: str
    run_id: str
    status: str = "RUNNING"
    error: str | None = None
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    events: list[tuple[int, str]] = field(default_factory=list)
    wall_time_s: float = 0.0


class Progress(Protocol):
    """Receives progress of a running scenario (the CLI draws it)."""

    def sweep_started(self, runs: int, jobs: int) -> None: ...

    def method_started(self, name: str, rounds: int) -> None: ...

    def round_finished(self, name: str, server_round: int, metrics: dict[str, float]) -> None: ...

    def method_finished(self, result: MethodResult) -> None: ...


def log_figure(tracker: Tracker, run_id: str, figure: Figure, artifact_file: str) -> None:
    """Log a figure as a PNG artifact and free it (pyplot keeps every open figure)."""
    try:
        tracker.log_figure(run_id, figure, artifact_file)
    finally:
        pyplot.close(figure)


def log_data_and_model(tracker: Tracker, run_id: str, plan: MethodPlan) -> None:
    """Samples per agent (params, CSV), the label histogram (PNG) and the model's size."""
    histogram = label_histogram(plan.scenario.dataset, plan.seed, plan.agents)
    samples = histogram.sum(axis=1)
    tracker.log_params(run_id, {
        "data.samples_min": int(samples.min()),
        "data.samples_max": int(samples.max()),
        "data.train_samples": int(samples.sum()),
        "data.test_samples": len(plan.dataset.test_y),
        "model.parameters": parameter_count(plan.build_model()),
    })
    rows = ["agent,samples," + ",".join(f"class_{c}" for c in range(histogram.shape[1]))]
    rows += [f"{j},{samples[j]}," + ",".join(str(v) for v in row)
             for j, row in enumerate(histogram)]
    tracker.log_text(run_id, "\n".join(rows) + "\n", "data/samples_per_agent.csv")
    log_figure(tracker, run_id, label_histogram_figure(histogram), "data/label_histogram.png")


def open_child_run(tracker: Tracker, spec: RunSpec, algorithm: str,
                   parent_id: str | None = None) -> str:
    """Start the MLflow run of `spec` (a child of `parent_id` when given), tagged with its
    method, seed, sweep values (and those it ran once for), configuration hash and the
    scenario run it is grouped under; its id."""
    tags = {"method": spec.method, "algorithm": algorithm, "scenario": spec.scenario.name,
            "seed": str(spec.seed), "label": spec.label, "config_hash": spec.config_hash}
    tags.update({f"sweep.{path}": str(value) for path, value in spec.swept})
    if spec.shared:
        tags[SHARED_TAG] = ",".join(spec.shared)
    if parent_id is not None:  # the runs list groups a scenario run's children by it
        tags[GROUP_TAG] = tracker.run_name(parent_id)
    return tracker.start_run(spec.name, tags=tags, parent_id=parent_id)


class ChildRun:
    """Records one started child run (`open_child_run`) while an engine runs it: its
    settings and figures first, every round as it comes, then how it ended."""

    def __init__(self, tracker: Tracker, plan: MethodPlan, spec: RunSpec, run_id: str,
                 progress: Progress | None = None) -> None:
        self.tracker, self.plan, self.spec, self.progress = tracker, plan, spec, progress
        self.result = MethodResult(name=spec.name, algorithm=plan.algorithm, run_id=run_id)
        self.buffer = MetricBuffer(tracker.client, run_id)

    def record(self, engine: Engine) -> MethodResult:
        """Run the method on `engine` and record it. A stop (Ctrl-C, SIGTERM, `flwr
        stop`) and a failure of the store or the disk go on up once the run is marked;
        any other failure is recorded and returned."""
        if self.progress is not None:
            self.progress.method_started(self.spec.name, self.plan.rounds)
        started = time.perf_counter()
        raised = self._train(engine)
        self.result.wall_time_s = time.perf_counter() - started
        self._close(stopped=raised is not None and isinstance(raised, STOPS))
        if raised is not None:
            raise raised
        return self.result

    def _sink(self, server_round: int, metrics: dict[str, float]) -> None:
        self.buffer.add(metrics, step=server_round)
        self.result.history.append((server_round, metrics))
        if self.progress is not None:
            self.progress.round_finished(self.spec.name, server_round, metrics)

    def _on_event(self, server_round: int, text: str) -> None:
        self.result.events.append((server_round, text))

    def _log_settings(self, engine_name: str) -> None:
        tracker, run_id, plan = self.tracker, self.result.run_id, self.plan
        tracker.log_params(run_id, method_params(plan, engine_name))
        log_data_and_model(tracker, run_id, plan)
        tracker.describe_run(run_id, child_note(plan, self.spec))
        if plan.adversaries is not None:
            tracker.set_tags(run_id, {"attackers": ",".join(
                str(agent) for agent in sorted(plan.attackers)),
                "attack": plan.adversaries.attack.kind})
        if plan.has_graph:
            tracker.set_tags(run_id, {"lambda2": f"{plan.topology.lambda2:.6g}"})
            matrix = plan.topology.mixing_matrix
            tracker.log_matrix(run_id, matrix, "mixing_matrix", matrix_csv(matrix))
            log_figure(tracker, run_id, graph_figure(plan.topology), "topology/graph.png")
        log_failure_schedule(tracker, run_id, plan)

    def _train(self, engine: Engine) -> BaseException | None:
        """Run the engine; the result's status says how it ended. Returns what must go
        on up: a stop, or a failure of the environment that the next run would meet."""
        try:
            self._log_settings(engine.name)
            observer = RoundObserver(self.plan, self._sink, self._on_event,
                                     deployed=engine.deployed)
            final = engine.run(self.plan, observer.observe, self._on_event)
            self.buffer.flush()
            log_final_model(self.tracker, self.result.run_id, self.plan, final)
        except STOPS as stop:
            self.result.status, self.result.error = "KILLED", stop_reason(stop)
            return stop
        except Exception as error:
            reason = stopping.requested()
            if reason is not None:  # the stop landed where it was caught
                self.result.status, self.result.error = "KILLED", reason
                return KeyboardInterrupt(reason)
            self.result.status, self.result.error = "FAILED", failure_reason(error)
            self.result.events.append((len(self.result.history),
                                       "".join(traceback.format_exception(error))))
            return error if environment_problem(error, self.tracker.uri) is not None else None
        self.result.status = "FINISHED"
        return None

    def _close(self, stopped: bool) -> None:
        """Keep the rounds of a run that did not finish (store allowing), its wall time
        and events, and mark it FINISHED, KILLED or FAILED."""
        tracker, result = self.tracker, self.result
        if result.status != "FINISHED":
            with contextlib.suppress(Exception):
                self.buffer.flush()
        tracker.log_metrics(result.run_id, {"wall_time_s": result.wall_time_s},
                            step=self.plan.rounds)
        if result.events:
            tracker.log_text(result.run_id, "".join(f"round {r}: {text}\n"
                                                    for r, text in result.events), "events.txt")
        if result.status == "FINISHED":
            tracker.finish(result.run_id)
        elif stopped:
            tracker.kill(result.run_id, result.error or "")
        else:
            tracker.fail(result.run_id, result.error or "")
        if self.progress is not None:
            self.progress.method_finished(result)


def record_method(plan: MethodPlan, engine: Engine, tracker: Tracker | None = None,
                  parent_id: str | None = None, progress: Progress | None = None,
                  spec: RunSpec | None = None) -> MethodResult:
    """Run one method on `engine` and record it as an MLflow (child) run."""
    if tracker is None:
        tracking = plan.scenario.tracking
        tracker = Tracker(tracking.uri, tracking.experiment or plan.scenario.name)
    spec = spec or RunSpec(plan.scenario, plan.method.name, (), plan.seed)
    run_id = open_child_run(tracker, spec, plan.algorithm, parent_id)
    return ChildRun(tracker, plan, spec, run_id, progress).record(engine)
