"""The Flower ServerApp side of one method.

CDSGD and centralized SGD run the gossip router (it routes, never
aggregates); FedAvg runs Flower's stock strategy. Both send through a
`NetworkTap` whose traffic the `RoundObserver` turns into metrics.

`app` is the ServerApp that `flwr run .` loads: it reads the scenario path
and the method from the run config and records to MLflow like the CLI does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from decentral_bench.data import load_dataset
from decentral_bench.models import build_model
from decentral_bench.network_tap import NetworkTap
from decentral_bench.observer import RoundObserver, RoundSink
from decentral_bench.plan import MethodPlan
from decentral_bench.training import parameters_of, to_numpy
from strategies.fedavg import build_fedavg
from strategies.gossip_router import GossipRouter, discover_agents


def initial_arrays(plan: MethodPlan) -> ArrayRecord:
    """x_0, the same for every agent (and FedAvg's initial global model)."""
    dataset = load_dataset(plan.scenario.dataset, plan.seed)
    model = build_model(plan.scenario.model, dataset.input_shape, dataset.num_classes, plan.seed)
    return ArrayRecord(to_numpy(parameters_of(model)))


def train_config(plan: MethodPlan, threads: int) -> ConfigRecord:
    """What every training message tells the ClientApp: scenario, method, thread budget."""
    return ConfigRecord({
        "scenario": plan.scenario.to_json(),
        "method": plan.method.name,
        "threads": threads,
    })


FinalParameters = dict[int, list[np.ndarray]]


def run_method(grid: Grid, plan: MethodPlan, sink: RoundSink, threads: int = 1) -> FinalParameters:
    """Run every round of one method on `grid`, reporting each round to `sink`.

    Returns the final parameters: each agent's last published x^j for the
    gossip methods, FedAvg's global model (under agent 0) for FedAvg.
    """
    tap = NetworkTap(grid)
    observer = RoundObserver(plan, sink)
    config = train_config(plan, threads)
    start = initial_arrays(plan)
    if plan.is_gossip:
        router = GossipRouter(plan.topology.mixing_matrix, discover_agents(tap, plan.agents))
        tap.drain()
        observer.start()
        published = router.start(
            tap, start, plan.rounds, config,
            on_round=lambda server_round, _: observer.observe(server_round, tap.drain()))
        return {agent: arrays.to_numpy_ndarrays() for agent, arrays in published.items()}

    def observe_global_model(server_round: int, arrays: ArrayRecord) -> None:
        if server_round > 0:
            observer.observe(server_round, tap.drain(), average=arrays.to_numpy_ndarrays())

    strategy = build_fedavg(plan.agents, plan.fraction)
    observer.start()
    result = strategy.start(grid=tap, initial_arrays=start, num_rounds=plan.rounds,
                            train_config=config, evaluate_fn=observe_global_model)
    return {0: result.arrays.to_numpy_ndarrays()}


def make_server_app(plan: MethodPlan, sink: RoundSink, threads: int,
                    on_finished: Callable[[FinalParameters], None] | None = None) -> ServerApp:
    """A ServerApp that runs `plan`, reports rounds to `sink` and hands over the result."""
    server = ServerApp()

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        final = run_method(grid, plan, sink, threads)
        if on_finished is not None:
            on_finished(final)

    return server


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point of `flwr run .`: run config keys `scenario` (a path) and `method`."""
    from decentral_bench import scenario as scenario_file
    from decentral_bench.runner import record_method

    scenario = scenario_file.load(str(context.run_config["scenario"]))
    plan = MethodPlan.of(scenario, str(context.run_config["method"]))
    record_method(plan, lambda sink: run_method(grid, plan, sink))
