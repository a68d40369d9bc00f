"""The Flower engine: one method as a Flower simulation (Ray-backed Simulation Engine),
one node per agent, running the project's ServerApp and ClientApp."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from flwr.clientapp import ClientApp
from flwr.simulation import run_simulation

from decentral_bench.engine import EventSink, FinalParameters, ReportSink
from decentral_bench.flower.client_app import app as client_app
from decentral_bench.flower.engine_patch import prompt_pickup
from decentral_bench.flower.server_app import make_server_app
from decentral_bench.plan import MethodPlan
from decentral_bench.training import available_cpus, select_device

# Ray passes a task's arguments up to this size inside the call and larger ones through
# its shared-memory object store. Its default, 100 KiB, sends a 5-agent digits message
# (5 × 19 KB of arrays, 103.6 KB in all) through the store. Measured on a 2-core machine,
# one actor call: 120 KB 2.9 ms through the store, 1.3 ms inline; the two meet near
# 800 KB; 2 MB 4.2 ms through the store, 7.9 ms inline.
INLINE_ARGUMENT_BYTES = 768 * 1024


def backend_config(plan: MethodPlan, verbose: bool = False) -> dict:
    """Ray resources per agent actor: `cpus_per_agent` CPUs and, on a GPU, a share of it
    (`gpus_per_agent`, by default one GPU split over the actors that run at once)."""
    resources = plan.scenario.resources
    cpus = available_cpus()
    per_agent = min(resources.cpus_per_agent, cpus)
    gpus = 0.0
    if select_device(resources.device).type == "cuda":
        parallel = max(1, min(plan.agents, cpus // per_agent))
        gpus = resources.gpus_per_agent or 1.0 / parallel
    return {
        "client_resources": {"num_cpus": per_agent, "num_gpus": gpus},
        "init_args": {"num_cpus": cpus, "logging_level": "error", "log_to_driver": verbose,
                      "_system_config": {"max_direct_call_object_size": INLINE_ARGUMENT_BYTES}},
    }


@contextmanager
def quiet_flower(verbose: bool) -> Iterator[None]:
    """Keep Flower's per-round INFO logs off the console unless asked for."""
    logger = logging.getLogger("flwr")
    level = logger.level
    if not verbose:
        logger.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        if not verbose:
            warnings.simplefilter("ignore")
        try:
            yield
        finally:
            logger.setLevel(level)


def simulate(plan: MethodPlan, report: ReportSink, verbose: bool = False,
             client: ClientApp = client_app, on_event: EventSink | None = None,
             ) -> FinalParameters:
    """Run one method of a scenario in Flower's Simulation Engine, one node per agent,
    handing each round to `report`.

    Returns the final parameters (see `server_app.run_method`).
    """
    final: FinalParameters = {}
    threads = min(plan.scenario.resources.cpus_per_agent, available_cpus())
    stop = threading.Event()
    server_app = make_server_app(plan, report, threads=threads, on_finished=final.update,
                                 on_event=on_event, stop=stop)
    failure: list[BaseException] = []

    def engine() -> None:
        try:
            run_simulation(server_app=server_app, client_app=client,
                           num_supernodes=plan.agents,
                           backend_config=backend_config(plan, verbose), verbose_logging=verbose)
        except BaseException as error:  # handed to the main thread below
            failure.append(error)

    # The engine runs in a thread and the main thread waits in short steps: a Ctrl-C
    # is then handled at once, even when the signal lands on one of Ray's threads.
    with quiet_flower(verbose), prompt_pickup():
        thread = threading.Thread(target=engine, name="flower-simulation", daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.2)
        except KeyboardInterrupt:
            stop.set()  # the ServerApp stops waiting for replies and ends the simulation
            thread.join(60)
            raise
    if failure:
        raise failure[0]
    if not final:
        raise RuntimeError("the Flower simulation ended without finishing its rounds")
    return final


class FlowerEngine:
    """The reference engine: Flower's Simulation Engine (see `simulate`)."""

    name = "flower"

    def __init__(self, verbose: bool = False, client: ClientApp = client_app) -> None:
        self.verbose = verbose
        self.client = client

    def run(self, plan: MethodPlan, report: ReportSink, on_event: EventSink) -> FinalParameters:
        return simulate(plan, report, verbose=self.verbose, client=self.client,
                        on_event=on_event)
