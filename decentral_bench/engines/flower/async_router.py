"""Asynchronous gossip (AD-PSGD) on the Flower engine: the router sends each event's
messages, a tick at a time.

The events come from `MethodPlan.async_schedule` (`decentral_bench.network.asynchrony`).
For a tick, the router sends every active agent i of an event the points of i and its
partner j with weights ½, ½ and the minibatch its gradient is taken on (`STEP_KEY`): i
averages, applies the gradient it took at the point it read, and replies with its new
point. Its partner j gets the same two points as a gossip-only message: it averages and
replies. The tick's events share no agent, so its messages go out in one exchange. A
virtual round (N gradient steps) ends with the router asking every agent to evaluate its
point (on evaluation rounds) and is reported as a round, as the vectorized engine reports
it (`decentral_bench.engines.vectorized.asynchronous`).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord

from decentral_bench.engines.base import (
    FinalParameters,
    ReportSink,
    RoundClock,
    RoundReport,
    stack_points,
)
from decentral_bench.engines.flower.arrays import from_record, to_record
from decentral_bench.engines.flower.network_tap import NetworkTap
from decentral_bench.engines.flower.nodes import readable_reason
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.network.asynchrony import POINTS_PER_EVENT, Tick
from decentral_bench.network.failures import RoundNetwork
from decentral_bench.network.traffic import parameter_bytes
from strategies.gossip_router import GossipRouter
from strategies.protocol import CONFIG_KEY, METRICS_KEY, PUBLISHED_KEY, STEP_KEY

STEP_FIGURES = ("minibatch_loss", "grad_norm_sq")


def pair_matrix(agents: int, tick: Tick) -> np.ndarray:
    """Π of a tick: each event's pair averages with weights ½, ½ (the other rows: I)."""
    matrix = np.eye(agents)
    for first, second in zip(tick.active, tick.passive, strict=True):
        matrix[[first, second], first] = 0.5
        matrix[[first, second], second] = 0.5
    return matrix


def _exchange(tap: NetworkTap, router: GossipRouter, published: dict[int, ArrayRecord],
              config: ConfigRecord, server_round: int, tick: Tick,
              figures: dict[int, dict[str, list[float]]]) -> None:
    """One tick's messages out and replies in; each agent's new point replaces its entry
    in `published`, and each active agent's step figures go into `figures`."""
    matrix = pair_matrix(len(published), tick)
    active = router.messages(published, config, server_round, matrix, tick.active)
    step_of = dict(zip(tick.active, tick.steps, strict=True))
    for message in active:  # the router sends in the agents' order
        message.content.config_records[CONFIG_KEY][STEP_KEY] = \
            step_of[router.agent_of_node[message.metadata.dst_node_id]]
    passive = router.messages(published, config, server_round, matrix, tick.passive,
                              gossip_only=True)
    replies = list(tap.send_and_receive(active + passive, timeout=3600.0))
    failed = [reply for reply in replies if reply.has_error()]
    if failed or len(replies) < len(active) + len(passive):
        reasons = "; ".join(sorted({readable_reason(str(reply.error.reason))
                                    for reply in failed})) or "no reply before the timeout"
        raise RuntimeError(f"virtual round {server_round}: an agent failed ({reasons}); "
                           "asynchronous gossip does not model failures")
    stepping = set(tick.active)
    for reply in replies:
        agent = router.agent_of_node[reply.metadata.src_node_id]
        published[agent] = reply.content.array_records[PUBLISHED_KEY]
        if agent in stepping:
            metrics = reply.content.metric_records[METRICS_KEY]
            for key in STEP_FIGURES:
                figures[agent][key].append(float(metrics[key]))  # type: ignore[arg-type]


def run_async(tap: NetworkTap, plan: MethodPlan, report: ReportSink, config: ConfigRecord,
              node_of_agent: dict[int, int]) -> FinalParameters:
    """Every virtual round of an asynchronous method (see the module docstring)."""
    schedule = plan.async_schedule
    agents = plan.agents
    everyone = list(range(agents))
    router = GossipRouter(plan.topology.mixing_matrix, node_of_agent)
    start = to_record(plan.initial_parameters)
    published = {agent: start for agent in everyone}
    point_bytes = parameter_bytes(plan.initial_parameters)
    network = RoundNetwork(plan.topology.graph, frozenset(everyone), plan.topology.mixing_matrix)
    sizes = np.full(agents, point_bytes)
    clock = RoundClock()
    for server_round, ticks in enumerate(schedule.ticks_per_round, start=1):
        figures: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for tick in ticks:
            _exchange(tap, router, published, config, server_round, tick, figures)
        metrics: dict[int, dict[str, float]] = {agent: {} for agent in everyone}
        if plan.evaluates(server_round):
            for reply in router.evaluate(tap, published, config, server_round, everyone):
                if reply.has_error():
                    raise RuntimeError(f"virtual round {server_round}: an agent failed to "
                                       f"evaluate: {readable_reason(str(reply.error.reason))}")
                agent = router.agent_of_node[reply.metadata.src_node_id]
                metrics[agent].update(
                    {key: float(value) for key, value in
                     reply.content.metric_records[METRICS_KEY].items()
                     if isinstance(value, int | float)})
        for agent, steps in figures.items():
            metrics[agent].update({key: sum(values) / len(values)
                                   for key, values in steps.items()})
        events = sum(len(tick.active) for tick in ticks)
        traffic = tap.drain()
        wall_time = clock.lap()
        report(RoundReport(
            server_round=server_round, agents=everyone,
            points=stack_points([from_record(published[agent], writable=False)
                                 for agent in everyone]),
            agent_metrics=metrics, bytes_moved=POINTS_PER_EVENT * events * point_bytes,
            router_bytes=traffic.router_bytes, network=schedule.metrics(server_round),
            wall_time_s=wall_time, round_network=network, message_bytes=sizes))
        clock.restart()
    return {agent: from_record(published[agent]) for agent in everyone}
