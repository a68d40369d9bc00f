"""The Flower ServerApp side of one method.

Gossip methods (CDSGD, CDMSGD, gradient tracking, D², QG-DSGDm, centralized SGD) run the
gossip router (it routes, never aggregates), on the round's network when failures are
injected; asynchronous gossip (AD-PSGD) runs its clock's events (`async_router`); the
server methods run Flower's stock strategy (`strategies.stock`) while their server lives.
All send through a `NetworkTap`, and each finished round is handed on as a `RoundReport`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from functools import partial

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from decentral_bench.engines.base import (
    EventSink,
    FinalParameters,
    ReportSink,
    RoundClock,
    stack_points,
)
from decentral_bench.engines.flower.arrays import from_record, record_bytes, to_record
from decentral_bench.engines.flower.async_router import run_async
from decentral_bench.engines.flower.network_tap import NetworkTap, round_report
from decentral_bench.engines.flower.nodes import NodeWait, discover_agents
from decentral_bench.experiment.metrics import consensus_distance
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.network.failures import RoundNetwork
from decentral_bench.network.traffic import gossip_round_bytes, parameter_bytes
from strategies.consensus_control import ControlOutcome, averaging_matrix, control_round
from strategies.gossip_router import GossipRouter
from strategies.protocol import (
    CONFIG_KEY,
    LOCAL_ONLY_KEY,
    MODEL_KEY,
    PUBLISHED_KEY,
    ROUND_KEY,
    TRAIN_TYPE,
)
from strategies.stock import ObservedStrategy, stock_strategy


def train_config(plan: MethodPlan, threads: int) -> ConfigRecord:
    """What every training message tells the ClientApp: scenario (with what a search
    before training found written in, `MethodPlan.settled`), method, thread budget."""
    return ConfigRecord({
        "scenario": plan.settled().scenario.to_json(),
        "method": plan.method.name,
        "threads": threads,
    })


class _Round:
    """Hands rounds to the sink as `RoundReport`s, timed by the engine."""

    def __init__(self, tap: NetworkTap, node_of_agent: dict[int, int],
                 report: ReportSink, message_bytes: int, agents: int) -> None:
        self.tap = tap
        self.agents = agents
        self.message_bytes = message_bytes  # a gossip message's size on the modelled network
        self.agent_of_node = {node: agent for agent, node in node_of_agent.items()}
        self.report = report
        self.clock = RoundClock()

    def finish(self, server_round: int, network: dict[str, float], *,
               graph: RoundNetwork | None = None, average: ArrayRecord | None = None,
               control: ControlOutcome | None = None, moved_nothing: bool = False,
               sizes: np.ndarray | None = None) -> int:
        """Report the round from the tap's traffic; returns how many agents reported.

        Gossip rounds give their `graph`: the network moves each point once over each
        edge used, in each exchange, each agent's message of its own size (`sizes`).
        Otherwise (FedAvg) the network is the server's: it moves what the router moves,
        or nothing once the server is lost (`moved_nothing`), each message the model's
        size."""
        wall_time = self.clock.lap()
        finished = round_report(server_round, self.tap.drain(), self.agent_of_node, network)
        finished.wall_time_s = wall_time
        if average is not None:
            finished.average = [torch.from_numpy(a) for a in from_record(average)]
        if moved_nothing:  # the replies only report to the observer: no server, no traffic
            finished.router_bytes = 0
        finished.control = control
        finished.round_network = graph
        finished.message_bytes = sizes if sizes is not None else \
            np.full(self.agents, self.message_bytes)
        finished.bytes_moved = finished.router_bytes if graph is None else gossip_round_bytes(
            graph.mixing_matrix, graph.alive, self.message_bytes, control)[0]
        self.report(finished)
        self.clock.restart()
        return len(finished.agents)


def run_method(grid: Grid, plan: MethodPlan, report: ReportSink, threads: int = 1,
               on_event: EventSink | None = None, stop: threading.Event | None = None,
               wait: NodeWait | None = None) -> FinalParameters:
    """Run every round of one method on `grid`, handing each round to `report`, once
    every agent has a node (`wait` says how long to wait for them; nodes left out are
    noted to `on_event` at round 0).

    Returns the final parameters: each agent's last model for the gossip methods, the
    last global model (under agent 0) for a server method, or each agent's own model
    when its server failed with mode `local`.
    """
    event = on_event or (lambda *_: None)
    tap = NetworkTap(grid, stop=stop)
    config = train_config(plan, threads)
    node_of_agent = discover_agents(
        tap, plan.agents, wait, on_skip=lambda node, why: event(0, f"node {node} left out: {why}"))
    tap.drain()
    rounds = _Round(tap, node_of_agent, report, parameter_bytes(plan.initial_parameters),
                    plan.agents)
    if plan.is_asynchronous:
        return run_async(tap, plan, report, config, node_of_agent)
    if plan.is_gossip:
        return _run_gossip(tap, plan, rounds, config, node_of_agent)
    return _run_server(tap, plan, rounds, config, node_of_agent, event)


def _run_gossip(tap: NetworkTap, plan: MethodPlan, rounds: _Round, config: ConfigRecord,
                node_of_agent: dict[int, int]) -> FinalParameters:
    """Every round: the router's training exchange on the round's network, then consensus
    control's gossip-only exchanges, if the method has any."""
    schedule = plan.failure_schedule
    router = GossipRouter(plan.topology.mixing_matrix, node_of_agent)
    if plan.update_rule.exchanges_at_start:
        published = router.start(tap, config)
        tap.drain()  # the agents' start is not a round of the modelled network
    else:
        start = to_record(plan.initial_parameters)
        published = {agent: start for agent in node_of_agent}
    rounds.message_bytes = parameter_bytes(from_record(next(iter(published.values())),
                                                     writable=False))
    start_model = to_record(plan.initial_parameters)
    models = {agent: start_model for agent in node_of_agent}  # each agent's latest model
    rounds.clock.restart()
    for server_round in range(1, plan.rounds + 1):
        network = schedule.network(server_round)
        sizes = message_sizes(published, plan.agents)
        replies = router.exchange(tap, published, config, server_round, network.mixing_matrix,
                                  network.alive)
        models.update({rounds.agent_of_node[reply.metadata.src_node_id]:
                       reply.content.array_records.get(MODEL_KEY, reply.content.array_records[
                           PUBLISHED_KEY]) for reply in replies if not reply.has_error()})
        outcome = None
        if plan.consensus_control is not None:
            exchange = partial(_control_exchange, router, tap, published, config, server_round,
                               network)
            outcome = control_round(plan.consensus_control, plan.phase(server_round),
                                    _consensus(published, network.alive), exchange)
            if plan.evaluates(server_round):
                router.evaluate(tap, published, config, server_round, network.alive)
        figures = {**network.metrics(), "round_lambda2": network.lambda2} \
            if schedule.changes_network else {}
        rounds.finish(server_round, figures, graph=network, control=outcome, sizes=sizes)
        if plan.consensus_control is not None:  # control moves the published points
            models = dict(published)
    return {agent: from_record(arrays) for agent, arrays in models.items()}


def message_sizes(published: dict[int, ArrayRecord], agents: int) -> np.ndarray:
    """Bytes of each agent's published message (0 for an agent with none)."""
    sizes = np.zeros(agents, dtype=np.int64)
    for agent, record in published.items():
        sizes[agent] = record_bytes(record)
    return sizes


def _consensus(published: dict[int, ArrayRecord], alive: Collection[int]) -> float:
    """Ξ² of the alive agents' latest points: what the adaptive controller reads."""
    return consensus_distance(stack_points([from_record(published[agent], writable=False)
                                            for agent in sorted(alive)]))


def _control_exchange(router: GossipRouter, tap: NetworkTap, published: dict[int, ArrayRecord],
                      config: ConfigRecord, server_round: int, network: RoundNetwork,
                      exact: bool) -> float:
    """One gossip-only exchange over the round's network (exact: every alive agent is sent
    every alive point with weight 1/n); returns Ξ² after it."""
    matrix = averaging_matrix(len(network.mixing_matrix), network.alive) if exact \
        else network.mixing_matrix
    router.exchange(tap, published, config, server_round, matrix, network.alive,
                    gossip_only=True)
    return _consensus(published, network.alive)


def _run_server(tap: NetworkTap, plan: MethodPlan, rounds: _Round, config: ConfigRecord,
                node_of_agent: dict[int, int], on_event: EventSink) -> FinalParameters:
    """The stock strategy while the server lives; then local training alone, or a halt."""
    schedule = plan.failure_schedule
    server = plan.scenario.failures.server
    server_rounds = plan.rounds if server is None else server.round

    def alive(server_round: int) -> dict[str, float]:
        return {"alive_agents": float(len(schedule.alive(server_round)))} \
            if plan.scenario.failures.agents else {}

    def show_sampled(server_round: int) -> None:
        """The strategy sees only the round's sampled agents (crashed ones never)."""
        sampled = set(plan.sampled_agents(server_round, schedule.alive(server_round)))
        tap.down_nodes = {node for agent, node in node_of_agent.items() if agent not in sampled}

    def finish(server_round: int, _: list[Message], average: ArrayRecord | None) -> None:
        reported = rounds.finish(server_round, {"aggregated": 1.0, **alive(server_round)},
                                 average=average)
        if not reported:
            raise RuntimeError(f"round {server_round}: every agent failed")

    stock = plan.definition.stock
    if stock is None:
        raise ValueError(f"'{plan.algorithm}' has no server strategy")
    strategy = ObservedStrategy(stock_strategy(stock, plan.options), before_round=show_sampled,
                                after_round=finish)
    final: FinalParameters = {0: plan.initial_parameters}
    if server_rounds > 0:
        rounds.clock.restart()
        # a copy: stock strategies write into it (FedProx its proximal-mu), and the rounds
        # after a server loss send `config` itself
        result = strategy.start(grid=tap, initial_arrays=to_record(plan.initial_parameters),
                                num_rounds=server_rounds, train_config=ConfigRecord(dict(config)))
        if result.arrays is not None:
            final = {0: from_record(result.arrays)}
    if server is None or server_rounds == plan.rounds:
        return final
    on_event(server_rounds, f"the server failed after round {server_rounds} "
                            f"(mode {server.mode})")
    if server.mode == "halt":
        return final
    models: FinalParameters = {}
    for server_round in range(server_rounds + 1, plan.rounds + 1):
        models.update(_train_alone(tap, server_round, config, node_of_agent,
                                   schedule.alive(server_round)))
        rounds.finish(server_round, {"aggregated": 0.0, **alive(server_round)},
                      moved_nothing=True)
    return models


def _train_alone(tap: NetworkTap, server_round: int, config: ConfigRecord,
                 node_of_agent: dict[int, int], alive: frozenset[int]) -> FinalParameters:
    """After the server is lost: each client trains on its own data from its own last
    model, with no aggregation. The rounds go on only so the metrics show what is lost."""
    messages = []
    for agent, node in sorted(node_of_agent.items()):
        if agent not in alive:
            continue
        round_config = ConfigRecord(dict(config))
        round_config[ROUND_KEY] = server_round
        round_config[LOCAL_ONLY_KEY] = True
        messages.append(Message(RecordDict({CONFIG_KEY: round_config}), dst_node_id=node,
                                message_type=TRAIN_TYPE))
    replies = list(tap.send_and_receive(messages, timeout=3600.0))
    delivered = [reply for reply in replies if not reply.has_error()]
    if messages and not delivered:
        raise RuntimeError(f"round {server_round}: every agent failed")
    agent_of_node = {node: agent for agent, node in node_of_agent.items()}
    return {agent_of_node[reply.metadata.src_node_id]:
            from_record(reply.content.array_records[PUBLISHED_KEY]) for reply in delivered}


def make_server_app(plan: MethodPlan, report: ReportSink, threads: int,
                    on_finished: Callable[[FinalParameters], None] | None = None,
                    on_event: EventSink | None = None,
                    stop: threading.Event | None = None) -> ServerApp:
    """A ServerApp that runs `plan`, reports rounds to `report` and hands over the result."""
    server = ServerApp()

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        final = run_method(grid, plan, report, threads, on_event, stop)
        if on_finished is not None:
            on_finished(final)

    return server
