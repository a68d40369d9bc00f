"""The simulated clock fed from a round's report: one place both engines' rounds are timed.

`RoundTimer` reads only engine-neutral facts of a `RoundReport` (the round's alive
agents and Π_k, the agents that reported, each agent's message size, consensus
control's exchanges) and the method's plan (minibatch steps per round, when the server
is lost), and asks `decentral_bench.network.clock` for the round's seconds, so the
Flower and vectorized engines give the same `sim_time_s` whenever they compute the same
rounds.
"""

from __future__ import annotations

import numpy as np

from decentral_bench.engines.base import RoundReport
from decentral_bench.experiment.data import steps_per_epoch
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.network.clock import NetworkClock, RoundTime
from decentral_bench.network.traffic import parameter_bytes
from strategies.gossip import gradient_steps


class RoundTimer:
    """A method's rounds in simulated seconds, on its scenario's `network:`."""

    def __init__(self, plan: MethodPlan) -> None:
        network = plan.scenario.network
        if network is None:
            raise ValueError(f"scenario '{plan.scenario.name}' has no network section to "
                             "time rounds on")
        self.plan = plan
        edges = plan.failure_schedule.edges if plan.has_graph else ()
        self.clock = NetworkClock(network, plan.seed, plan.agents, plan.batch_size, edges)
        self.model_bytes = parameter_bytes(plan.initial_parameters)
        if plan.is_gossip:
            self.fedavg_steps = np.zeros(plan.agents)
        else:
            self.fedavg_steps = np.array([plan.local_epochs * steps_per_epoch(len(part),
                                                                              plan.batch_size)
                                          for part in plan.partitions], dtype=float)
        server = plan.scenario.failures.server
        self.server_rounds = plan.rounds if server is None else server.round

    def gossip_steps(self, server_round: int) -> np.ndarray:
        """Minibatch steps every agent takes in a gossip round."""
        steps = len(gradient_steps(self.plan.update_rule, server_round, self.plan.local_steps))
        return np.full(self.plan.agents, float(steps))

    def __call__(self, report: RoundReport) -> RoundTime:
        """The round's compute and communication seconds."""
        server_round = report.server_round
        sizes = report.message_bytes if report.message_bytes is not None \
            else np.full(self.plan.agents, self.model_bytes)
        if self.plan.is_asynchronous:  # the clock's events, not a barrier, time it
            summary = self.plan.async_schedule.rounds[server_round - 1]
            return RoundTime(summary.compute_s, summary.communication_s)
        if self.plan.is_gossip:
            network = report.round_network
            if network is None:
                raise ValueError(f"round {server_round}: a gossip round's report needs its "
                                 "network to be timed")
            return self.clock.gossip_round(server_round, network.mixing_matrix, network.alive,
                                           sizes, self.gossip_steps(server_round),
                                           report.control)
        if server_round <= self.server_rounds:
            return self.clock.fedavg_round(server_round, report.agents, self.model_bytes,
                                           sizes, self.fedavg_steps)
        return self.clock.local_round(server_round, report.agents, self.fedavg_steps)
