"""The Flower ServerApp side of one method.

CDSGD, CDMSGD and centralized SGD run the gossip router (it routes, never
aggregates), on the round's network when failures are injected; FedAvg runs
Flower's stock strategy while its server lives. All send through a
`NetworkTap` whose traffic the `RoundObserver` turns into metrics.

`app` is the ServerApp that `flwr run .` loads: it reads the scenario path
and the method from the run config and records to MLflow like the CLI does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from decentral_bench.arrays import from_record, to_record
from decentral_bench.data import load_dataset
from decentral_bench.failures import FailureSchedule, RoundNetwork
from decentral_bench.models import build_model
from decentral_bench.network_tap import NetworkTap
from decentral_bench.observer import EventSink, RoundObserver, RoundSink
from decentral_bench.plan import MethodPlan
from decentral_bench.scenario import FailuresConfig
from decentral_bench.training import parameters_of, to_numpy
from strategies.fedavg import build_fedavg
from strategies.gossip_router import (
    CONFIG_KEY,
    LOCAL_ONLY_KEY,
    PUBLISHED_KEY,
    GossipRouter,
    discover_agents,
)


def initial_arrays(plan: MethodPlan) -> ArrayRecord:
    """x_0, the same for every agent (and FedAvg's initial global model)."""
    dataset = load_dataset(plan.scenario.dataset, plan.seed)
    model = build_model(plan.scenario.model, dataset.input_shape, dataset.num_classes, plan.seed)
    return to_record(to_numpy(parameters_of(model)))


def train_config(plan: MethodPlan, threads: int) -> ConfigRecord:
    """What every training message tells the ClientApp: scenario, method, thread budget."""
    return ConfigRecord({
        "scenario": plan.scenario.to_json(),
        "method": plan.method.name,
        "threads": threads,
    })


FinalParameters = dict[int, list[np.ndarray]]


def failure_schedule(plan: MethodPlan) -> FailureSchedule:
    """The scenario's failures on the graph this method runs on (none for centralized SGD,
    whose single worker stands for the whole data set)."""
    failures = FailuresConfig() if plan.algorithm == "centralized_sgd" \
        else plan.scenario.failures
    return FailureSchedule(failures, plan.scenario.topology, plan.topology, plan.seed)


def run_method(grid: Grid, plan: MethodPlan, sink: RoundSink, threads: int = 1,
               on_event: EventSink | None = None,
               stop: threading.Event | None = None) -> FinalParameters:
    """Run every round of one method on `grid`, reporting each round to `sink`.

    Returns the final parameters: each agent's last published point for the
    gossip methods, the last global model (under agent 0) for FedAvg, or each
    agent's own model when FedAvg's server failed with mode `local`.
    """
    tap = NetworkTap(grid, stop=stop)
    observer = RoundObserver(plan, sink, on_event)
    config = train_config(plan, threads)
    start = initial_arrays(plan)
    node_of_agent = discover_agents(tap, plan.agents)
    observer.agent_of_node = {node: agent for agent, node in node_of_agent.items()}
    tap.drain()
    if plan.is_gossip:
        return _run_gossip(tap, plan, observer, config, start, node_of_agent)
    return _run_fedavg(tap, plan, observer, config, start, node_of_agent)


def _run_gossip(tap: NetworkTap, plan: MethodPlan, observer: RoundObserver,
                config: ConfigRecord, start: ArrayRecord,
                node_of_agent: dict[int, int]) -> FinalParameters:
    schedule = failure_schedule(plan)
    networks: dict[int, RoundNetwork] = {}

    def network_at(server_round: int) -> tuple[np.ndarray, frozenset[int]]:
        networks[server_round] = network = schedule.network(server_round)
        return network.mixing_matrix, network.alive

    def observe(server_round: int, _: object) -> None:
        network = networks[server_round]
        extra = network.metrics() if schedule.changes_network else {}
        if schedule.changes_network:
            extra["round_lambda2"] = network.lambda2
        observer.observe(server_round, tap.drain(), extra=extra)

    router = GossipRouter(plan.topology.mixing_matrix, node_of_agent)
    observer.start()
    published = router.start(tap, start, plan.rounds, config, on_round=observe,
                             network_at=network_at)
    return {agent: from_record(arrays) for agent, arrays in published.items()}


def _run_fedavg(tap: NetworkTap, plan: MethodPlan, observer: RoundObserver,
                config: ConfigRecord, start: ArrayRecord,
                node_of_agent: dict[int, int]) -> FinalParameters:
    """Stock FedAvg while the server lives; then local training alone, or a halt."""
    schedule = failure_schedule(plan)
    server = plan.scenario.failures.server
    server_rounds = plan.rounds if server is None else server.round

    def hide_crashed(server_round: int) -> dict[str, float]:
        down = schedule.crashed(server_round)
        tap.down_nodes = {node_of_agent[agent] for agent in down}
        return {"alive_agents": float(plan.agents - len(down))} if plan.scenario.failures.agents \
            else {}

    def observe_global_model(server_round: int, arrays: ArrayRecord) -> None:
        if server_round == 0:
            return
        traffic = tap.drain()
        extra = {"aggregated": 1.0, **hide_crashed(server_round)}
        observer.observe(server_round, traffic, average=from_record(arrays), extra=extra)
        if not any(not reply.has_error() for reply in traffic.replies):
            raise RuntimeError(f"round {server_round}: every agent failed")
        hide_crashed(server_round + 1)

    strategy = build_fedavg(plan.fraction)
    hide_crashed(1)
    observer.start()
    final: FinalParameters = {0: from_record(start)}
    if server_rounds > 0:
        result = strategy.start(grid=tap, initial_arrays=start, num_rounds=server_rounds,
                                train_config=config, evaluate_fn=observe_global_model)
        if result.arrays is not None:
            final = {0: from_record(result.arrays)}
    if server_rounds == plan.rounds:
        return final
    observer.event(server_rounds, f"the server failed after round {server_rounds} "
                                  f"(mode {server.mode})")
    if server.mode == "halt":
        return final
    return _local_training_rounds(tap, plan, observer, config, node_of_agent, schedule,
                                  server_rounds + 1)


def _local_training_rounds(tap: NetworkTap, plan: MethodPlan, observer: RoundObserver,
                           config: ConfigRecord, node_of_agent: dict[int, int],
                           schedule: FailureSchedule, first_round: int) -> FinalParameters:
    """After the server is lost: each client trains on its own data from its own last
    model, with no aggregation. The rounds go on only so the metrics show what is lost."""
    models: FinalParameters = {}
    for server_round in range(first_round, plan.rounds + 1):
        down = schedule.crashed(server_round)
        messages = []
        for agent, node in sorted(node_of_agent.items()):
            if agent in down:
                continue
            round_config = ConfigRecord(dict(config))
            round_config["server-round"] = server_round
            round_config[LOCAL_ONLY_KEY] = True
            messages.append(Message(RecordDict({CONFIG_KEY: round_config}), dst_node_id=node,
                                    message_type=MessageType.TRAIN))
        replies = list(tap.send_and_receive(messages, timeout=3600.0))
        delivered = [reply for reply in replies if not reply.has_error()]
        if messages and not delivered:
            raise RuntimeError(f"round {server_round}: every agent failed")
        for reply in delivered:
            models[observer.agent_of_node[reply.metadata.src_node_id]] = \
                from_record(reply.content[PUBLISHED_KEY])
        extra = {"aggregated": 0.0}
        if plan.scenario.failures.agents:
            extra["alive_agents"] = float(plan.agents - len(down))
        traffic = tap.drain()
        # The replies only report to the observer: without a server nothing is sent.
        traffic.bytes_sent = traffic.bytes_received = 0
        observer.observe(server_round, traffic, extra=extra)
    return models


def make_server_app(plan: MethodPlan, sink: RoundSink, threads: int,
                    on_finished: Callable[[FinalParameters], None] | None = None,
                    on_event: EventSink | None = None,
                    stop: threading.Event | None = None) -> ServerApp:
    """A ServerApp that runs `plan`, reports rounds to `sink` and hands over the result."""
    server = ServerApp()

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        final = run_method(grid, plan, sink, threads, on_event, stop)
        if on_finished is not None:
            on_finished(final)

    return server


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point of `flwr run .`: run config keys `scenario` (a path) and `method`."""
    from decentral_bench import scenario as scenario_file
    from decentral_bench.runner import record_method

    path = Path(str(context.run_config["scenario"]))
    if not path.is_absolute() and not path.exists():  # relative to the app's own folder
        path = Path(__file__).resolve().parents[1] / path
    scenario = scenario_file.load(path)
    plan = MethodPlan.of(scenario, str(context.run_config["method"]))
    result = record_method(plan, lambda sink, on_event: run_method(grid, plan, sink,
                                                                   on_event=on_event))
    if result.status != "FINISHED":  # recorded in MLflow; Flower marks the run failed too
        raise RuntimeError(f"{plan.method.name}: {result.error}")
