"""The Flower engine on a grid that Flower hands over (`flwr run`): a simulation's or a real
deployment's SuperLink. The `flwr run .` entry (`decentral_bench.cli.flwr_app`) records a
method through it the way `decentral-bench run` does.

A run that `flwr stop` ends raises `RunStopped`; replies of a deployment are pulled with short
pauses (`prompt_reply_pulls`); how long to wait for nodes comes from the run config
(`node_wait`, key `wait-for-nodes`, 300 s by default).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from flwr.app import Context
from flwr.serverapp import Grid
from flwr.supercore.run import RunNotRunningException
from flwr.superlink.grid import HttpGrid, InMemoryGrid, http_grid

from decentral_bench.engines.base import EventSink, FinalParameters, ReportSink, RunStopped
from decentral_bench.engines.flower.nodes import NodeWait, deployment_advice, simulation_advice
from decentral_bench.engines.flower.server_app import run_method
from decentral_bench.engines.flower.supernode import source_mismatches
from decentral_bench.experiment.plan import MethodPlan

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
    with `RunStopped`. On a deployment's grid (not a simulation's) the engine is
    `deployed`: the observer records each round's measured wall time beside the
    simulated clock's.
    """

    name = "flower"

    def __init__(self, grid: Grid, wait: NodeWait) -> None:
        self.grid = grid
        self.wait = wait
        self.deployed = not isinstance(grid, InMemoryGrid)  # a SuperLink's, over the network

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
