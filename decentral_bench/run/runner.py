"""Runs a scenario's child runs (sweep combination × seed × method), recorded in MLflow.

Children run one after another in this process, or `jobs` at once in processes of
their own or as Ray tasks (`dispatch`, `parallel`); each records itself the same way
(`child`). A child that crashes is marked FAILED with its reason and the next one
runs (with `fail_fast`, the sweep stops there); Ctrl-C, a signal that ends the
process (SIGTERM, which is how Flower stops a ServerApp) or an engine's `RunStopped`
(`flwr stop`) marks the running children and the parent KILLED, with the reason in
their `error` tag. Re-running a scenario reuses the last parent run of the same
experiment (the same settings but for seeds and swept values) and skips every child
already FINISHED with the same configuration hash: finished runs are never redone,
overwritten or duplicated (`fresh=True` starts a new parent).
"""

from __future__ import annotations

import contextlib
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from decentral_bench.engines import stopping
from decentral_bench.engines.base import Engine
from decentral_bench.engines.select import build_engine
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.sweep import RunSpec, expand, scenario_hash
from decentral_bench.report.plots import XAxis, failure_markers, report_figures
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
from decentral_bench.run.child import (
    STOPS,
    MethodResult,
    Progress,
    failure_reason,
    log_figure,
    record_method,
    stop_reason,
)
from decentral_bench.run.dispatch import Jobs, open_dispatch
from decentral_bench.run.parallel import ParallelSweep, Sweep
from decentral_bench.scenario import Scenario
from decentral_bench.tracking.local_store import StoreError
from decentral_bench.tracking.notes import comment_header, parent_note, scenario_note
from decentral_bench.tracking.params import flatten
from decentral_bench.tracking.provenance import process_is_gone
from decentral_bench.tracking.store import (
    DEFAULT_TRACKING_URI,
    Tracker,
    load_records,
    metric_key,
)
from decentral_bench.tracking.store_problems import store_problem
from decentral_bench.tracking.view import GROUP_TAG, run_path


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
    jobs: int = 1

    @property
    def failed(self) -> list[MethodResult]:
        return [result for result in self.runs if result.status != "FINISHED"]


def one_after_another(specs: list[RunSpec], sweep: Sweep, progress: Progress | None = None,
                      fail_fast: bool = False) -> list[MethodResult]:
    """Each spec's child run in this process, in order (with `fail_fast`, none after the
    first that failed)."""
    if progress is not None:
        progress.sweep_started(len(specs), 1)
    runs: list[MethodResult] = []
    for spec in specs:
        stopping.check()  # a stop that a library swallowed starts no further run
        plan = MethodPlan.of(spec.scenario, spec.method)
        engine = sweep.engine or build_engine(spec.scenario, sweep.verbose)
        runs.append(record_method(plan, engine, sweep.tracker, sweep.parent_id, progress, spec))
        if fail_fast and runs[-1].status == "FAILED":
            break
    return runs


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
                 specs: list[RunSpec] | None = None, jobs: Jobs | None = None,
                 fail_fast: bool = False) -> ScenarioResult:
    """Run every child of `scenario`, recorded in MLflow, and log the comparison report
    on the parent run. Children run on `engine`, by default the one each child's
    `resources.engine` names, `jobs` at once (default `resources.parallel_runs`; see
    `dispatch`); with `fail_fast` the first that fails stops the others. `source` is
    the scenario's file (its text is logged); `origin` says where the scenario came
    from, as the runs' MLflow source (default: the file, else the scenario's name).
    `specs` are its runs when the caller expanded them already (with `--set` overrides,
    `source` is None but swept file names are still the file's folder's)."""
    specs = specs if specs is not None else expand(scenario, str(source or scenario.name))
    origin = origin or str(source or scenario.name)
    uri = tracking_uri or scenario.tracking.uri or DEFAULT_TRACKING_URI
    requested = jobs if jobs is not None else scenario.resources.parallel_runs
    with contextlib.closing(open_dispatch(scenario, specs, requested, uri,
                                          str(source or scenario.name), verbose)) as dispatch:
        tracker = Tracker(uri, scenario.tracking.experiment or scenario.name, source=origin)
        parent_id, finished = _parent_run(tracker, scenario, scenario_hash(scenario), fresh)
        result = ScenarioResult(scenario, parent_id, tracker.uri, [], tracker.experiment_id,
                                tracker.save_comparison_view(), jobs=dispatch.jobs)
        try:
            header = _log_scenario(tracker, parent_id, scenario, source, logged=bool(finished))
            todo = [spec for spec in specs if spec.config_hash not in finished]
            result.skipped = len(specs) - len(todo)
            sweep = Sweep(tracker, parent_id, origin, engine, verbose)
            if dispatch.parallel:
                result.runs = ParallelSweep(sweep, dispatch.jobs, dispatch.pool_for, progress,
                                            fail_fast).run(todo)
            else:
                result.runs = one_after_another(todo, sweep, progress, fail_fast)
            result.summary, result.control, result.notes = log_report(tracker, parent_id,
                                                                      scenario, header)
        except STOPS as stop:
            tracker.kill(parent_id, stop_reason(stop))
            raise
        except Exception as error:
            with contextlib.suppress(Exception):  # the store may be what failed: keep `error`
                tracker.fail(parent_id, failure_reason(error) + "\n\n" + traceback.format_exc())
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


def _log_scenario(tracker: Tracker, parent_id: str, scenario: Scenario, source: Path | None,
                  logged: bool) -> str:
    """The scenario on its parent run: its settings as params (unless `logged` by an
    earlier run), its text, and its description; returns the file's comment header."""
    if not logged:
        tracker.log_params(parent_id, flatten(scenario.model_dump(mode="json")))
    text = source.read_text() if source is not None else yaml.safe_dump(
        scenario.model_dump(mode="json"), sort_keys=False)
    tracker.log_text(parent_id, text, f"scenario/{scenario.name}.yaml")
    header = comment_header(text)
    tracker.describe_experiment(scenario_note(scenario, header))
    tracker.describe_run(parent_id, scenario_note(scenario, header))
    return header


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
