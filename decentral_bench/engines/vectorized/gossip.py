"""A gossip method on the stack: every agent's round of `strategies.gossip.gossip_round`,
block by block of agents (`blocks.py`), the mixing sum being Π_k applied to the stack of
every agent's message (`Mixer`).

Agents that are down in a round neither step nor publish (their rows keep their state and
message); consensus control's exchanges then move the alive agents' published points the
way the ClientApp moves them (`GossipRule.restore` of the mixed point and what the rule
keeps), so both engines hold the same numbers.
"""

from __future__ import annotations

import numpy as np
import torch

from decentral_bench.engines.base import FinalParameters, RoundReport
from decentral_bench.engines.vectorized.blocks import BlockRounds, start_in_blocks
from decentral_bench.engines.vectorized.mixing import Mixer
from decentral_bench.engines.vectorized.stack import Stack, StackedRun
from decentral_bench.experiment.metrics import consensus_distance
from decentral_bench.network.failures import RoundNetwork
from decentral_bench.network.traffic import gossip_round_bytes
from strategies.consensus_control import ControlOutcome, control_round
from strategies.gossip import GossipRule, State, Translatable, gradient_steps


class _Exchanges:
    """A round's gossip-only exchanges (consensus control) on the stack."""

    def __init__(self, rule: GossipRule, mixer: Mixer, alive: list[int], state: State,
                 device: torch.device) -> None:
        if not hasattr(rule, "translate"):
            raise ValueError(f"consensus control cannot move the state of rule {rule.name}")
        self.rule, self.mixer, self.alive, self.state = rule, mixer, alive, state
        self.translatable: Translatable = rule  # type: ignore[assignment]
        self.rows = torch.as_tensor(alive, device=device)
        self.everyone = len(alive) == len(state["x"][0])

    def alive_points(self) -> Stack:
        points = self.rule.message(self.state)
        return points if self.everyone else [p[self.rows] for p in points]

    def exchange(self, exact: bool) -> float:
        """One exchange over the round's network (exact: every alive agent gets x̄); each
        agent's state moves with its point. Returns Ξ² after it."""
        published = self.rule.message(self.state)
        if exact:
            mixed = [p.clone() for p in published]
            for m, p in zip(mixed, published, strict=True):
                m[self.rows] = p[self.rows].mean(dim=0, keepdim=True)
        else:
            mixed = self.mixer(published)
        delta = [m - p for m, p in zip(mixed, published, strict=True)]
        moved = self.translatable.translate(self.state, delta)
        self.state = self.rule.restore(mixed, self.rule.kept(moved))
        return consensus_distance(self.alive_points())


class GossipLoop:
    """Every round of a gossip method on the stack (see the module docstring)."""

    def __init__(self, run: StackedRun) -> None:
        self.run = run
        self.plan = run.plan
        self.rule = run.plan.update_rule
        self.agents = run.plan.agents
        self.static = Mixer(run.plan.topology.mixing_matrix, run.device, run.dense)
        self.blocks = BlockRounds(run)

    def own_weights(self, matrix: np.ndarray) -> torch.Tensor:
        """π_jj^k of every agent."""
        return torch.as_tensor(np.diag(matrix).copy(), dtype=torch.float32,
                               device=self.run.device)

    def start(self) -> State:
        """Every agent's state before round 1."""
        return start_in_blocks(self.run, self.rule, self.run.stack(self.agents),
                               self.plan.lr_at(1))

    def round_network(self, server_round: int) -> tuple[RoundNetwork | None, Mixer]:
        """The round's network when failures change it (None otherwise) and its mixer."""
        if not self.plan.failure_schedule.changes_network:
            return None, self.static
        network = self.plan.failure_schedule.network(server_round)
        return network, Mixer(network.mixing_matrix, self.run.device, self.run.dense)

    def step(self, state: State, server_round: int, network: RoundNetwork | None,
             mixer: Mixer) -> tuple[State, dict[str, torch.Tensor]]:
        """Every alive agent's round from `state`; the agents that are down keep theirs.
        Returns the new state and the round's per-agent columns (loss, gradient norm)."""
        matrix = self.plan.topology.mixing_matrix if network is None else network.mixing_matrix
        down = None
        if network is not None and len(network.alive) < self.agents:
            down = torch.ones(self.agents, dtype=torch.bool, device=self.run.device)
            down[sorted(network.alive)] = False
        return self.blocks.round(self.rule, state, mixer, self.own_weights(matrix),
                                 self.plan.lr_at(server_round),
                                 gradient_steps(self.rule, server_round, self.plan.local_steps),
                                 down)

    def run_rounds(self) -> FinalParameters:
        plan, run = self.plan, self.run
        state = self.start()
        message_bytes = sum(int(m[0].nelement() * m.element_size())
                            for m in self.rule.message(state))
        everyone = list(range(self.agents))
        run.clock.restart()
        for server_round in range(1, plan.rounds + 1):
            network, mixer = self.round_network(server_round)
            alive = everyone if network is None else sorted(network.alive)
            state, columns = self.step(state, server_round, network, mixer)
            outcome: ControlOutcome | None = None
            if plan.consensus_control is not None:
                exchanges = _Exchanges(self.rule, mixer, alive, state, run.device)
                outcome = control_round(plan.consensus_control, plan.phase(server_round),
                                        consensus_distance(exchanges.alive_points()),
                                        exchanges.exchange)
                state = exchanges.state
            models = self.rule.model(state)
            reporting = models if len(alive) == self.agents else \
                [p[torch.as_tensor(alive, device=run.device)] for p in models]
            wall_time = run.lap()
            matrix = plan.topology.mixing_matrix if network is None else network.mixing_matrix
            moved, routed = gossip_round_bytes(matrix, alive, message_bytes, outcome)
            run.finish(RoundReport(
                server_round=server_round, agents=alive, points=reporting,
                agent_metrics=run.agent_metrics(alive, reporting, columns, server_round),
                bytes_moved=moved, router_bytes=routed,
                network={} if network is None else
                {**network.metrics(), "round_lambda2": network.lambda2},
                control=outcome, wall_time_s=wall_time))
        final = self.rule.model(state)
        return {agent: [p[agent].cpu().numpy() for p in final] for agent in everyone}

