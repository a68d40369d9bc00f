"""The ServerApp that `flwr run .` loads (`[tool.flwr.app.components]` in pyproject.toml).

It reads the scenario path and the method from the run config and records the
method to MLflow the way `decentral-bench run` does, on the grid Flower gives
it (a simulation's or a real deployment's SuperLink). It sits at the top of the
import graph: it uses the runner, and nothing imports it.

Run config keys: `scenario` (a path; relative ones also from the app's folder),
`method` (a method name in it) and `wait-for-nodes` (seconds to wait for every
agent's SuperNode to connect; 300 by default). A run that `flwr stop` ends, or
whose ServerApp process is stopped, is KILLED in MLflow; a method that fails is
FAILED there and fails the Flower run too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import RunNotRunningException
from flwr.superlink.grid import HttpGrid, InMemoryGrid, http_grid

from decentral_bench import scenario as scenario_file
from decentral_bench.engine import EventSink, FinalParameters, ReportSink, RunStopped
from decentral_bench.flower.nodes import NodeWait, deployment_advice, simulation_advice
from decentral_bench.flower.server_app import run_method
from decentral_bench.flower.supernode import source_mismatches
from decentral_bench.plan import MethodPlan
from decentral_bench.runner import record_method

APP_FOLDER = Path(__file__).resolve().parents[2]  # where pyproject.toml is
DEFAULT_NODE_WAIT_S = 300.0
PULL_SOURCE = {"pull_messages": "67a5266a5a2ed515"}  # HttpGrid's, as `prompt_reply_pulls` knows it
logger = logging.getLogger(__name__)


@contextmanager
def prompt_reply_pulls() -> Iterator[None]:
    """In a deployment's ServerApp: a reply whose arrays the SuperNode is still uploading
    is asked for again after 10 ms, doubling to 0.2 s, instead of Flower's 1 s, then 2 s
    (`HttpGrid.pull_messages` gets `pull_objects` with shorter pauses). Only while the
    installed flwr is the one this was written against; otherwise logged and left alone."""
    problems = source_mismatches(HttpGrid, PULL_SOURCE)
    if problems:
        logger.warning("replies are pulled with Flower's own pauses: %s", "; ".join(problems))
        yield
        return
    original = http_grid.pull_objects
    http_grid.pull_objects = partial(original, initial_backoff=0.01, backoff_cap=0.2)
    try:
        yield
    finally:
        http_grid.pull_objects = original


class GridEngine:
    """The Flower engine on a grid that Flower hands over (`flwr run`).

    Each agent's node trains with `resources.cpus_per_agent` torch threads unless its
    node config sets `threads`. A run stopped on the SuperLink (`flwr stop`) ends
    with `RunStopped`.
    """

    name = "flower"

    def __init__(self, grid: Grid, wait: NodeWait) -> None:
        self.grid = grid
        self.wait = wait

    def run(self, plan: MethodPlan, report: ReportSink, on_event: EventSink) -> FinalParameters:
        try:
            return run_method(self.grid, plan, report,
                              threads=plan.scenario.resources.cpus_per_agent,
                              on_event=on_event, wait=self.wait)
        except RunNotRunningException as stopped:  # the SuperLink refuses a stopped run
            raise RunStopped("the Flower run was stopped (flwr stop)") from stopped


def node_wait(grid: Grid, context: Context, agents: int) -> NodeWait:
    """How long to wait for nodes (run config `wait-for-nodes`), with advice that fits
    where the run is: Flower's local simulation runtime or a deployment."""
    timeout = float(context.run_config.get("wait-for-nodes", DEFAULT_NODE_WAIT_S))
    simulated = isinstance(grid, InMemoryGrid)
    return NodeWait(timeout=timeout, poll=0.01 if simulated else 0.25,
                    advice=simulation_advice(agents) if simulated else deployment_advice(agents))


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point of `flwr run .`: run config keys `scenario`, `method`, `wait-for-nodes`."""
    path = Path(str(context.run_config["scenario"]))
    if not path.is_absolute() and not path.exists():  # relative to the app's own folder
        path = APP_FOLDER / path
    scenario = scenario_file.load(path)
    plan = MethodPlan.of(scenario, str(context.run_config["method"]))
    with prompt_reply_pulls():
        result = record_method(plan, GridEngine(grid, node_wait(grid, context, plan.agents)))
    if result.status != "FINISHED":  # recorded in MLflow; Flower marks the run failed too
        raise RuntimeError(f"{plan.method.name}: {result.error}")
