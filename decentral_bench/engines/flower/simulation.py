"""The Flower engine: one method as a Flower simulation (Ray-backed Simulation Engine),
one node per agent, running the project's ServerApp and ClientApp."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from functools import partial
from queue import Empty, Queue
from typing import Any

from flwr.clientapp import ClientApp
from flwr.simulation import run_simulation

from decentral_bench.engines import stopping
from decentral_bench.engines.base import EventSink, FinalParameters, ReportSink
from decentral_bench.engines.flower.client_app import app as client_app
from decentral_bench.engines.flower.confinement import enter_private_network
from decentral_bench.engines.flower.engine_patch import prompt_pickup
from decentral_bench.engines.flower.ray_cluster import backend_config, check_reachable, ray_address
from decentral_bench.engines.flower.server_app import make_server_app
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.training import available_cpus


class MainThreadCalls:
    """Runs the ServerApp's calls of the report and event sinks on the thread that waits
    for the simulation (the caller of `simulate`), which stays in the host's network
    namespace: MLflow is written from there even while the engine's threads are confined
    (`confinement`). A call blocks its thread until it has run, and returns its result
    or raises its exception there."""

    def __init__(self) -> None:
        self.calls: Queue[tuple[Callable[[], Any], Future]] = Queue()
        self.closed = threading.Event()

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def on_main_thread(*arguments: Any) -> Any:
            if self.closed.is_set():
                raise RuntimeError("the simulation was stopped")
            done: Future = Future()
            self.calls.put((partial(function, *arguments), done))
            return done.result()

        return on_main_thread

    def serve(self, thread: threading.Thread, poll: float = 0.2) -> None:
        """Run the calls as they come until `thread` has ended (or a stop was asked for:
        see `stopping`)."""
        while thread.is_alive() or not self.calls.empty():
            stopping.check()
            try:
                call, done = self.calls.get(timeout=poll)
            except Empty:
                continue
            try:
                done.set_result(call())
            except Exception as error:  # handed back to the engine's thread
                done.set_exception(error)
            except BaseException:  # Ctrl-C while a call runs: stop it and the engine
                done.set_exception(RuntimeError("the simulation was stopped"))
                raise

    def wake(self) -> None:
        """Let `serve` notice at once that the engine's thread has ended."""
        self.calls.put((lambda: None, Future()))

    def close(self) -> None:
        """Refuse further calls and fail the waiting ones (the simulation is stopping)."""
        self.closed.set()
        while not self.calls.empty():
            self.calls.get_nowait()[1].set_exception(RuntimeError("the simulation was stopped"))


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

    Ray is a private one in a network namespace of its own (`confinement`), or the
    cluster at `ray_cluster.ray_address`, tried first. Returns the final parameters
    (see `server_app.run_method`).
    """
    final: FinalParameters = {}
    threads = min(plan.scenario.resources.cpus_per_agent, available_cpus())
    stop = threading.Event()
    calls = MainThreadCalls()
    server_app = make_server_app(plan, calls.wrap(report), threads=threads,
                                 on_finished=final.update, stop=stop,
                                 on_event=None if on_event is None else calls.wrap(on_event))
    address = ray_address(plan)
    if address is not None:
        check_reachable(address)
    failure: list[BaseException] = []

    def engine() -> None:
        try:
            if address is None:
                enter_private_network()
            run_simulation(server_app=server_app, client_app=client,
                           num_supernodes=plan.agents,
                           backend_config=backend_config(plan, verbose), verbose_logging=verbose)
        except BaseException as error:  # handed to the main thread below
            failure.append(error)
        finally:
            calls.wake()

    # The engine runs in a thread and the main thread serves its calls in short waits:
    # a Ctrl-C is then handled at once, even when the signal lands on one of Ray's threads.
    with quiet_flower(verbose), prompt_pickup():
        thread = threading.Thread(target=engine, name="flower-simulation", daemon=True)
        thread.start()
        try:
            calls.serve(thread)
        except KeyboardInterrupt:
            stop.set()  # the ServerApp stops waiting for replies and ends the simulation
            calls.close()
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
    deployed = False

    def __init__(self, verbose: bool = False, client: ClientApp = client_app) -> None:
        self.verbose = verbose
        self.client = client

    def run(self, plan: MethodPlan, report: ReportSink, on_event: EventSink) -> FinalParameters:
        return simulate(plan, report, verbose=self.verbose, client=self.client,
                        on_event=on_event)
