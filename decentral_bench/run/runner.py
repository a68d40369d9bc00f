"""Runs a scenario's child runs (sweep combination × seed × method), recorded in MLflow.

A child that crashes is marked FAILED with its reason and the next one runs;
a child whose loss turns NaN or infinite stops as FAILED (`diverged at round
k`); Ctrl-C, a signal that ends the process (SIGTERM, which is how Flower stops
a ServerApp) or an engine's `RunStopped` (`flwr stop`) marks the running child
and the parent KILLED, with the reason in their `error` tag. Re-running a
scenario reuses the last parent run of the same experiment (the same settings
but for seeds and swept values) and skips every child already FINISHED with the
same configuration hash: finished runs are never redone, overwritten or
duplicated (`fresh=True` starts a new parent).
"""

from __future__ import annotations

import contextlib
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml
from matplotlib import pyplot
from matplotlib.figure import Figure

from decentral_bench.engines.base import Engine, RunStopped
from decentral_bench.engines.observer import Diverged, RoundObserver
from decentral_bench.engines.select import build_engine
from decentral_bench.experiment.data import label_histogram
from decentral_bench.experiment.models import parameter_count
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.sweep import RunSpec, expand, scenario_hash
from decentral_bench.report.plots import (
    XAxis,
    failure_markers,
    graph_figure,
    label_histogram_figure,
    matrix_csv,
    report_figures,
)
from decentral_bench.report.scaling import AGENTS, points, scaling_figure, scaling_table
from decentral_bench.report.summary import (
    CONTROL_COLUMNS,
    GroupSummary,
    as_csv,
    as_markdown,
    as_table_data,
    group_records,
    latest_per_configuration,
    shared_runs,
    summaries,
    table_rows,
)
from decentral_bench.run.errors import environment_problem
from decentral_bench.scenario import Scenario
from decentral_bench.tracking.local_store import StoreError
from decentral_bench.tracking.metric_buffer import MetricBuffer
from decentral_bench.tracking.notes import child_note, comment_header, parent_note, scenario_note
from decentral_bench.tracking.params import flatten, method_params
from decentral_bench.tracking.provenance import process_is_gone
from decentral_bench.tracking.store import (
    SHARED_TAG,
    Tracker,
    load_records,
    metric_key,
    store_problem,
)
from decentral_bench.tracking.view import GROUP_TAG, run_path

# What stops a run from outside: it is then KILLED (not FAILED) and the stop goes on up.
STOPS = (KeyboardInterrupt, SystemExit, RunStopped)


def stop_reason(stop: BaseException) -> str:
    """Why a run was stopped, in words (the KILLED run's `error` tag)."""
    if isinstance(stop, KeyboardInterrupt):
        return "interrupted by the user"
    if isinstance(stop, SystemExit):
        return (f"the process was stopped (exit code {stop.code}): a signal such as SIGTERM, "
                "which is also how `flwr stop` ends a ServerApp")
    return str(stop)


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


@dataclass
class ScenarioResult:
    """A whole `decentral-bench run`: its parent run, the children it ran, the report."""

    scenario: Scenario
    parent_run_id: str
    tracking_uri: str
    runs: list[MethodResult]
    experiment_id: str = ""
    view_key: str = ""  # the experiment's saved view laid out for the comparison
    skipped: int = 0
    summary: list[tuple[str, ...]] = field(default_factory=list)
    control: list[tuple[str, ...]] = field(default_factory=list)  # consensus control
    notes: list[str] = field(default_factory=list)  # methods run once for a sweep they ignore

    @property
    def failed(self) -> list[MethodResult]:
        return [result for result in self.runs if result.status != "FINISHED"]


class Progress(Protocol):
    """Receives progress of a running scenario (the CLI draws it as bars)."""

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


def record_method(plan: MethodPlan, engine: Engine, tracker: Tracker | None = None,
                  parent_id: str | None = None, progress: Progress | None = None,
                  spec: RunSpec | None = None) -> MethodResult:
    """Run one method on `engine` and record it as an MLflow (child) run."""
    if tracker is None:
        tracking = plan.scenario.tracking
        tracker = Tracker(tracking.uri, tracking.experiment or plan.scenario.name)
    spec = spec or RunSpec(plan.scenario, plan.method.name, (), plan.seed)
    tags = {"method": plan.method.name, "algorithm": plan.algorithm,
            "scenario": plan.scenario.name, "seed": str(spec.seed), "label": spec.label,
            "config_hash": spec.config_hash}
    tags.update({f"sweep.{path}": str(value) for path, value in spec.swept})
    if spec.shared:
        tags[SHARED_TAG] = ",".join(spec.shared)
    if parent_id is not None:  # the runs list groups a scenario run's children by it
        tags[GROUP_TAG] = tracker.run_name(parent_id)
    run_id = tracker.start_run(spec.name, tags=tags, parent_id=parent_id)
    result = MethodResult(name=spec.name, algorithm=plan.algorithm, run_id=run_id)

    buffer = MetricBuffer(tracker.client, run_id)

    def sink(server_round: int, metrics: dict[str, float]) -> None:
        buffer.add(metrics, step=server_round)
        result.history.append((server_round, metrics))
        if progress is not None:
            progress.round_finished(spec.name, server_round, metrics)

    def on_event(server_round: int, text: str) -> None:
        result.events.append((server_round, text))

    if progress is not None:
        progress.method_started(spec.name, plan.rounds)
    started = time.perf_counter()
    stopped: BaseException | None = None
    environment: Exception | None = None
    try:
        tracker.log_params(run_id, method_params(plan, engine.name))
        log_data_and_model(tracker, run_id, plan)
        tracker.describe_run(run_id, child_note(plan, spec))
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
        observer = RoundObserver(plan, sink, on_event, deployed=engine.deployed)
        engine.run(plan, observer.observe, on_event)
        buffer.flush()
        result.status = "FINISHED"
    except STOPS as stop:
        result.status, result.error, stopped = "KILLED", stop_reason(stop), stop
    except Exception as error:  # a failed run must not stop the others ...
        result.status, result.error = "FAILED", _reason(error)
        result.events.append((len(result.history), "".join(traceback.format_exception(error))))
        if environment_problem(error, tracker.uri) is not None:
            environment = error  # ... unless the store or the disk failed: the next would too
    if stopped is not None or result.status == "FAILED":  # keep its rounds, store allowing
        with contextlib.suppress(Exception):
            buffer.flush()
    result.wall_time_s = time.perf_counter() - started
    tracker.log_metrics(run_id, {"wall_time_s": result.wall_time_s}, step=plan.rounds)
    if result.events:
        tracker.log_text(run_id, "".join(f"round {r}: {text}\n" for r, text in result.events),
                         "events.txt")
    if result.status == "FINISHED":
        tracker.finish(run_id)
    elif stopped is not None:
        tracker.kill(run_id, result.error or "")
    else:
        tracker.fail(run_id, result.error or "")
    if progress is not None:
        progress.method_finished(result)
    if stopped is not None:
        raise stopped
    if environment is not None:
        raise environment
    return result


def log_failure_schedule(tracker: Tracker, run_id: str, plan: MethodPlan) -> None:
    """The failures of the scenario as params, what they mean for this method, and the
    round-by-round schedule as `failures/schedule.json`."""
    failures = plan.scenario.failures
    params: dict[str, str] = {}
    if failures.server is not None:
        params["server_failure"] = "not applicable" if plan.is_gossip else \
            f"after round {failures.server.round}, {failures.server.mode}"
    if failures.links is not None and not plan.is_gossip:
        params["link_failures"] = "not applicable"
    if failures.agents and plan.definition.single_agent:
        params["agent_failures"] = "not applicable"
    if params:
        tracker.log_params(run_id, params)
    if failures != type(failures)() and not plan.definition.single_agent:
        schedule = plan.failure_schedule.describe(plan.rounds)
        tracker.log_text(run_id, json.dumps(schedule, indent=2), "failures/schedule.json")


def _reason(error: BaseException) -> str:
    """The innermost cause of an error, which is the one a user can act on."""
    while error.__cause__ is not None:
        error = error.__cause__
    if isinstance(error, Diverged):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _parent_run(tracker: Tracker, scenario: Scenario, digest: str, fresh: bool,
                ) -> tuple[str, set[str]]:
    """The parent run to record into and the configuration hashes it already finished.

    Unless `fresh`, that is the latest parent of the same experiment: a scenario of the
    same name and the same `digest` (`sweep.scenario_hash`: every setting but the seeds
    and the swept values), so that adding seeds or sweep values runs only what is new,
    while a run whose settings differ (`--set topology.kind=torus`, an edited file) gets
    a parent of its own and never mixes its rows into another experiment's table.
    """
    previous = None if fresh else tracker.latest_parent(scenario.name, digest)
    if previous is not None:
        tracker.reopen(previous)
        mark_lost_children(tracker, previous)
        return previous, tracker.finished_hashes(previous)
    name = f"{scenario.name} {time.strftime('%Y-%m-%d %H:%M:%S')}"
    parent_id = tracker.start_run(name, tags={"scenario": scenario.name, "kind": "scenario",
                                              "scenario_hash": digest, GROUP_TAG: name})
    return parent_id, set()


def mark_lost_children(tracker: Tracker, parent_id: str) -> list[str]:
    """Mark the parent's children that are still RUNNING but whose process has ended
    (killed, out of memory, a reboot) KILLED with the error `process lost`; they run
    again as not finished. Children of a live process, or of another host's, are left
    alone. Returns the ids marked."""
    lost = [run_id for run_id, process in tracker.running_children(parent_id).items()
            if process_is_gone(process)]
    for run_id in lost:
        tracker.kill(run_id, "process lost")
    return lost


def run_scenario(scenario: Scenario, engine: Engine | None = None, source: Path | None = None,
                 tracking_uri: str | None = None, progress: Progress | None = None,
                 fresh: bool = False, verbose: bool = False, origin: str | None = None,
                 specs: list[RunSpec] | None = None) -> ScenarioResult:
    """Run every child of `scenario`, recorded in MLflow, and log the comparison report
    on the parent run. Children run on `engine`, by default the one each child's
    `resources.engine` names. `source` is the scenario's file (its text is logged);
    `origin` says where the scenario came from, as the runs' MLflow source (default:
    the file, else the scenario's name). `specs` are its runs when the caller expanded
    them already (with `--set` overrides, `source` is None but swept file names are
    still the file's folder's)."""
    specs = specs if specs is not None else expand(scenario, str(source or scenario.name))
    tracker = Tracker(tracking_uri or scenario.tracking.uri,
                      scenario.tracking.experiment or scenario.name,
                      source=origin or str(source or scenario.name))
    parent_id, finished = _parent_run(tracker, scenario, scenario_hash(scenario), fresh)
    result = ScenarioResult(scenario, parent_id, tracker.uri, [], tracker.experiment_id,
                            tracker.save_comparison_view())
    try:
        if not finished:
            tracker.log_params(parent_id, flatten(scenario.model_dump(mode="json")))
        text = source.read_text() if source is not None else yaml.safe_dump(
            scenario.model_dump(mode="json"), sort_keys=False)
        tracker.log_text(parent_id, text, f"scenario/{scenario.name}.yaml")
        header = comment_header(text)
        tracker.describe_experiment(scenario_note(scenario, header))
        tracker.describe_run(parent_id, scenario_note(scenario, header))
        for spec in specs:
            if spec.config_hash in finished:
                result.skipped += 1
                continue
            plan = MethodPlan.of(spec.scenario, spec.method)
            runs_on = engine or build_engine(spec.scenario, verbose)
            result.runs.append(record_method(plan, runs_on, tracker, parent_id, progress, spec))
        result.summary, result.control, result.notes = log_report(tracker, parent_id,
                                                                  scenario, header)
    except STOPS as stop:
        tracker.kill(parent_id, stop_reason(stop))
        raise
    except Exception as error:
        with contextlib.suppress(Exception):  # the store may be what failed: keep `error`
            tracker.fail(parent_id, _reason(error) + "\n\n" + traceback.format_exc())
        problem = store_problem(error, tracker.uri)
        if problem is not None:
            raise StoreError(problem) from error
        raise
    if result.failed:
        names = ", ".join(r.name for r in result.failed)
        tracker.fail(parent_id, f"runs that did not finish: {names}")
    else:
        tracker.finish(parent_id)
    return result


def log_report(tracker: Tracker, parent_id: str, scenario: Scenario, header: str = "",
               ) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]], list[str]]:
    """Read the parent's children back from the store and log the comparison report on
    the parent: figures (against epochs, and with a network against simulated seconds in
    `plots/time/`, with time to target against the agents where they are swept), each
    group's figures as metrics (`CDSGD.final_test_accuracy`),
    the summary as an MLflow table, CSV and Markdown, and in its description, with the
    consensus-control table where methods control Ξ² and a line for each method that
    ran once for a swept key it ignores. Returns both tables' rows and those lines."""
    records = latest_per_configuration(load_records(tracker.client, parent_id))
    notes = shared_runs(records)
    target = scenario.report.target_accuracy
    groups = summaries(records, target)
    rows, control = table_rows(groups, target)
    markers = failure_markers(scenario.failures)
    axes: tuple[tuple[XAxis, str], ...] = (("epochs", "plots"), ("time", "plots/time"))
    for axis, folder in axes:
        if axis == "time" and scenario.network is None:
            continue  # no clock: nothing to draw against simulated seconds
        for name, figure in report_figures(group_records(records), markers, axis).items():
            log_figure(tracker, parent_id, figure, f"{folder}/{name}")
    if target is not None and scenario.network is not None and AGENTS in scenario.sweep:
        found = points(group_records(records), groups)
        log_figure(tracker, parent_id, scaling_figure(found, target),
                   "plots/time/time_to_target.png")
        tracker.log_text(parent_id, scaling_table(found), "time_to_target.md")
    tracker.log_metrics(parent_id, parent_metrics(groups), step=0)
    tracker.log_table(parent_id, as_table_data(groups), "summary.json")
    tracker.log_text(parent_id, as_csv(rows), "summary.csv")
    table = as_markdown(rows) + "".join(f"\n{note}.\n" for note in notes)
    tracker.log_text(parent_id, table, "summary.md")
    if control:
        controlled = as_markdown(control, CONTROL_COLUMNS)
        tracker.log_text(parent_id, controlled, "consensus_control.md")
        table += "\nConsensus control (extra traffic against the uncontrolled method):\n\n" \
            + controlled
    runs = [(f"{record.label} seed={record.seed}", run_path(tracker.experiment_id, record.run_id))
            for record in records]
    tracker.describe_run(parent_id, parent_note(scenario, header, table, target, runs))
    return rows, control, notes


def parent_metrics(groups: list[GroupSummary]) -> dict[str, float]:
    """Each group's figures as `label.figure` metrics, e.g. `CDSGD.final_test_accuracy`,
    to six significant digits (what the table shows, and what a reader can take in)."""
    return {f"{metric_key(group.label)}.{name}": float(f"{value:.6g}")
            for group in groups for name, value in group.figures().items()}
