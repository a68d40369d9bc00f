"""A gossip method on the stack: every agent's round of `strategies.gossip.gossip_round`,
block by block of agents (`blocks.py`), the mixing sum being Π_k applied to the stack of
every agent's message (`Mixer`).

Agents that are down in a round neither step nor publish (their rows keep their state and
message); consensus control's exchanges then move the alive agents' published points the
way the ClientApp moves them (`GossipRule.restore` of the mixed point and what the rule
keeps), so both engines hold the same numbers.

With robust aggregation or attackers a round runs on the whole stack: each agent's
neighbourhood is gathered into a padded stack and aggregated by `strategies.robust`; with
attackers the published stack is kept apart from the honest messages: an attacker mixes its
own honest message, and publishes what its attack makes of its honest message and its honest
neighbours' messages of this round (`strategies.attacks`), as its ClientApp does.
"""

from __future__ import annotations

import numpy as np
import torch

from decentral_bench.engines.base import FinalParameters, RoundReport
from decentral_bench.engines.vectorized.blocks import (
    BlockGradients,
    BlockRounds,
    start_in_blocks,
)
from decentral_bench.engines.vectorized.mixing import Mixer
from decentral_bench.engines.vectorized.neighbourhoods import Gathering
from decentral_bench.engines.vectorized.stack import Stack, StackedRun
from decentral_bench.experiment.metrics import consensus_distance
from decentral_bench.network.failures import RoundNetwork
from decentral_bench.network.traffic import agent_message_bytes, gossip_round_bytes
from strategies.attacks import gossip_attack
from strategies.consensus_control import ControlOutcome, control_round
from strategies.gossip import (
    GossipRule,
    State,
    Translatable,
    gossip_round,
    gradient_steps,
    keep_rows,
    keep_state_rows,
    scale_rows,
    wire_message,
)
from strategies.robust import aggregate


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
        self.rule = run.plan.agents_rule(tuple(range(run.plan.agents)))
        self.agents = run.plan.agents
        self.static = Mixer(run.plan.topology.mixing_matrix, run.device, run.dense,
                            run.plan.dtype)
        self.blocks = BlockRounds(run)
        self.adversaries = run.plan.adversaries
        self.aggregation = run.plan.aggregation
        self.gathers = self.aggregation.kind != "mean" or self.adversaries is not None
        self.static_gathering = Gathering(run.plan.topology.mixing_matrix, run.plan.attackers,
                                          run.device, run.plan.dtype) if self.gathers else None
        self.static_network = RoundNetwork(run.plan.topology.graph,
                                           frozenset(range(self.agents)),
                                           run.plan.topology.mixing_matrix)

    def own_weights(self, matrix: np.ndarray) -> torch.Tensor:
        """π_jj^k of every agent."""
        return torch.as_tensor(np.diag(matrix).copy(), dtype=self.plan.dtype,
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
        return network, Mixer(network.mixing_matrix, self.run.device, self.run.dense,
                              self.plan.dtype)

    def gathering(self, network: RoundNetwork | None) -> Gathering | None:
        """The round's neighbourhoods, where robust aggregation or attackers need them."""
        if not self.gathers or network is None:
            return self.static_gathering
        return Gathering(network.mixing_matrix, self.plan.attackers, self.run.device,
                         self.plan.dtype)

    def combine(self, published: Stack, honest: Stack, own_weights: torch.Tensor,
                mixer: Mixer, gathering: Gathering | None) -> Stack:
        """Every agent's aggregate of its neighbourhood: the neighbours' published messages
        and its own honest one (Π_k applied to the published stack, an attacker's own term
        put back to its honest message, under plain mixing)."""
        if gathering is not None and self.aggregation.kind != "mean":
            return aggregate(self.aggregation, gathering.neighbourhoods(published, honest))
        if self.adversaries is None:  # everyone publishes its honest message
            return mixer(honest)
        own_terms = scale_rows(own_weights, [h - p for h, p in zip(honest, published,
                                                                   strict=True)])
        return [m + t for m, t in zip(mixer(published), own_terms, strict=True)]

    def publish(self, before: Stack, honest: Stack, server_round: int, alive: list[int],
                gathering: Gathering | None) -> Stack:
        """What every agent publishes after the round: its honest message, or, for the alive
        attackers once the attack is on, what the attack makes of it and of the messages
        `before` it mixed this round."""
        adversaries = self.adversaries
        if adversaries is None or gathering is None or not adversaries.active(server_round):
            return honest
        attackers = sorted(adversaries.attackers & set(alive))
        if not attackers:
            return honest
        rows = torch.as_tensor(attackers, device=self.run.device)
        own = [h[rows] for h in honest]
        view, attackers_weight = gathering.attackers_view(attackers, before)
        noise = adversaries.attack.noise(own, self.plan.seed, attackers, server_round)
        attacked = gossip_attack(adversaries.attack, own, view, attackers_weight, noise)
        published = [h.clone() for h in honest]
        for p, a in zip(published, attacked, strict=True):
            p[rows] = a
        return published

    def step(self, state: State, published: Stack, server_round: int,
             network: RoundNetwork | None, mixer: Mixer,
             ) -> tuple[State, Stack, dict[str, torch.Tensor]]:
        """Every alive agent's round from `state` and the `published` messages; the agents
        that are down keep their state and published message. Returns the new state, the
        new published messages and the round's per-agent columns (loss, gradient norm)."""
        matrix = self.plan.topology.mixing_matrix if network is None else network.mixing_matrix
        own_weights = self.own_weights(matrix)
        alive = list(range(self.agents)) if network is None else sorted(network.alive)
        down = None
        if len(alive) < self.agents:
            down = torch.ones(self.agents, dtype=torch.bool, device=self.run.device)
            down[alive] = False
        lr = self.plan.lr_at(server_round)
        steps = gradient_steps(self.rule, server_round, self.plan.local_steps)
        if not self.gathers:  # every agent mixes and publishes its honest message
            updated, columns = self.blocks.round(self.rule, state, mixer, own_weights, lr,
                                                 steps, down)
            return updated, self.rule.message(updated), columns
        gathering = self.gathering(network)
        honest = self.rule.message(state)
        gradient_at = BlockGradients(self.run, slice(0, self.agents))
        updated, losses = gossip_round(
            self.rule, state, self.combine(published, honest, own_weights, mixer, gathering),
            own_weights, gradient_at, lr, steps)
        if down is not None:
            updated = keep_state_rows(down, updated, state)
        new_published = self.publish(published, self.rule.message(updated), server_round,
                                     alive, gathering)
        if down is not None and self.adversaries is not None:
            new_published = keep_rows(down, new_published, published)
        columns = {"minibatch_loss": torch.stack(losses).to(torch.float64).mean(dim=0),
                   "grad_norm_sq": torch.stack(gradient_at.norms).mean(dim=0)}
        return updated, new_published, columns

    def run_rounds(self) -> FinalParameters:
        plan, run = self.plan, self.run
        state = self.start()
        published = self.rule.message(state)
        message_bytes = agent_message_bytes(wire_message(self.rule, state))  # as encoded
        model = self.rule.model(state)  # a reply carries it too where it is not the message
        model_bytes = 0 if model is published else agent_message_bytes(model)
        sizes = np.full(self.agents, message_bytes)  # every agent's upload: its message
        everyone = list(range(self.agents))
        run.clock.restart()
        for server_round in range(1, plan.rounds + 1):
            network, mixer = self.round_network(server_round)
            alive = everyone if network is None else sorted(network.alive)
            state, published, columns = self.step(state, published, server_round, network,
                                                  mixer)
            outcome: ControlOutcome | None = None
            if plan.consensus_control is not None:
                exchanges = _Exchanges(self.rule, mixer, alive, state, run.device)
                outcome = control_round(plan.consensus_control, plan.phase(server_round),
                                        consensus_distance(exchanges.alive_points()),
                                        exchanges.exchange)
                state = exchanges.state
                published = self.rule.message(state)
            models = self.reported(state, published, server_round)
            reporting = models if len(alive) == self.agents else \
                [p[torch.as_tensor(alive, device=run.device)] for p in models]
            wall_time = run.lap()
            matrix = plan.topology.mixing_matrix if network is None else network.mixing_matrix
            moved, routed = gossip_round_bytes(matrix, alive, message_bytes, outcome,
                                               model_bytes)
            run.finish(RoundReport(
                server_round=server_round, agents=alive, points=reporting,
                agent_metrics=run.agent_metrics(alive, reporting, columns, server_round),
                bytes_moved=moved, router_bytes=routed,
                network={} if network is None else
                {**network.metrics(), "round_lambda2": network.lambda2},
                control=outcome, wall_time_s=wall_time,
                round_network=network or self.static_network, message_bytes=sizes))
        final = self.reported(state, published, plan.rounds)
        return {agent: [p[agent].cpu().numpy() for p in final] for agent in everyone}

    def reported(self, state: State, published: Stack, server_round: int) -> Stack:
        """Every agent's point as it reports it: its model; an attacker whose model is its
        message, once the attack is on, what it publishes (its ClientApp replies with that
        alone)."""
        models, adversaries = self.rule.model(state), self.adversaries
        if adversaries is None or not adversaries.active(server_round) \
                or models is not self.rule.message(state):
            return models
        lying = torch.zeros(self.agents, dtype=torch.bool, device=self.run.device)
        lying[sorted(adversaries.attackers)] = True
        return keep_rows(lying, models, published)
