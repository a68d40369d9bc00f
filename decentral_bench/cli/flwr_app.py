"""The ServerApp that `flwr run .` loads (`[tool.flwr.app.components]` in pyproject.toml).

It reads the scenario path and the method from the run config and records the
method to MLflow the way `decentral-bench run` does, on the grid Flower gives
it (a simulation's or a real deployment's SuperLink). It sits at the top of the
import graph: it uses the runner, and nothing imports it. The engine it runs on is
`decentral_bench.engines.flower.grid`.

Run config keys: `scenario` (a path; relative ones also from the app's folder),
`method` (a method name in it) and `wait-for-nodes` (seconds to wait for every
agent's SuperNode to connect; 300 by default). A run that `flwr stop` ends, or
whose ServerApp process is stopped, is KILLED in MLflow; a method that fails is
FAILED there and fails the Flower run too.

What it prints lands in the Flower run's log (`flwr run . --stream`, `flwr log RUN_ID`):
a progress line at every tenth of the rounds, then where the run was recorded (the
MLflow run, its experiment and store, its final test accuracy, the link to its page) and,
where Flower built a fresh environment for the run, how to reuse the installed one.
"""

from __future__ import annotations

import os
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from rich.console import Console

from decentral_bench import scenario as scenario_file
from decentral_bench.cli.console import LineProgress
from decentral_bench.engines.flower.grid import GridEngine, node_wait, prompt_reply_pulls
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.run.runner import MethodResult, record_method
from decentral_bench.tracking.store import Tracker
from decentral_bench.tracking.view import run_link, ui_command

APP_FOLDER = Path(__file__).resolve().parents[2]  # where pyproject.toml is
# Where Flower 1.41 builds an app's environment for each run (under FLWR_HOME) when its
# SuperLink installs the app's dependencies, which it does unless started with
# FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 (or --disable-runtime-dependency-installation).
RUNTIME_ENVS = "runtime-envs"


app = ServerApp()


def recorded(result: MethodResult, tracker: Tracker) -> list[str]:
    """Where a method's run was recorded (the progress lines before it end with its
    status and final test accuracy): the MLflow run, experiment and store, and how to
    open its page."""
    link = run_link(tracker.uri, tracker.experiment_id, result.run_id)
    lines = [f"{result.name}: recorded as MLflow run {result.run_id} in experiment "
             f"'{tracker.experiment_name}' of {tracker.uri}"]
    if tracker.uri.startswith(("http://", "https://")):
        return [*lines, f"open it: {link}"]
    return [*lines, f"open it: {ui_command(tracker.uri)}, then {link}"]


def flower_built_environment(environment: dict[str, str]) -> str | None:
    """A note where this ServerApp runs in an environment Flower built for the run (its
    `VIRTUAL_ENV` under FLWR_HOME's runtime-envs), which costs about 30 s and gigabytes a
    run: how to have the local SuperLink reuse the installed environment instead."""
    built = environment.get("VIRTUAL_ENV", "")
    if RUNTIME_ENVS not in Path(built).parts:
        return None
    return (f"note: Flower installed this app's dependencies into a new environment for "
            f"this run ({built}). To reuse the installed one, stop the local SuperLink "
            "(flower-superlink) and run `make flwr-run`, or start it with "
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 set")


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point of `flwr run .`: run config keys `scenario`, `method`, `wait-for-nodes`."""
    path = Path(str(context.run_config["scenario"]))
    if not path.is_absolute() and not path.exists():  # relative to the app's own folder
        path = APP_FOLDER / path
    scenario = scenario_file.load(path)
    plan = MethodPlan.of(scenario, str(context.run_config["method"]))
    console = Console(width=160)
    note = flower_built_environment(dict(os.environ))
    if note is not None:
        console.print(note, highlight=False, markup=False, soft_wrap=True)
    tracker = Tracker(scenario.tracking.uri, scenario.tracking.experiment or scenario.name,
                      source=str(path))
    with prompt_reply_pulls():
        result = record_method(plan, GridEngine(grid, node_wait(grid, context, plan.agents)),
                               tracker, progress=LineProgress(console))
    for line in recorded(result, tracker):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if result.status != "FINISHED":  # recorded in MLflow; Flower marks the run failed too
        raise RuntimeError(f"{plan.method.name}: {result.error}")
