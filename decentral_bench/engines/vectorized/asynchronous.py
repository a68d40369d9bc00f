"""Asynchronous gossip (AD-PSGD) on the stack: the clock's events, a tick at a time.

The events come from `MethodPlan.async_schedule` (`decentral_bench.network.asynchrony`):
a tick's events share no agent, so they are applied together. For a tick whose active
agents are A and whose passive partners are B (row by row),

    m = (X_A + X_B) / 2
    X_A ← m − α g_A(R_A),  R_A ← X_A,  X_B ← m

(`strategies.ad_psgd.ADPSGD.advance` on the rows A; R holds each agent's read point),
each active agent's gradient taken on its own next minibatch. A virtual round (N gradient
steps) is reported as a round: every agent's point, its minibatch loss and squared
gradient norm averaged over the steps it took in the round (none: not reported), the
staleness figures, and the bytes the events moved: two points each over the network
(i → j and j → i), six through the Flower router (each agent is sent both points and
replies with its own).
"""

from __future__ import annotations

import numpy as np
import torch

from decentral_bench.engines.base import FinalParameters, RoundReport
from decentral_bench.engines.vectorized.stack import Stack, StackedRun, squared_norms
from decentral_bench.network.asynchrony import POINTS_PER_EVENT, Tick
from decentral_bench.network.failures import RoundNetwork
from strategies.gossip import Parameters

ROUTED_PER_EVENT = 6  # points an event sends through the Flower router: 2 to each, 1 back


class AsyncLoop:
    """Every virtual round of an asynchronous method on the stack (see the module
    docstring)."""

    def __init__(self, run: StackedRun) -> None:
        self.run = run
        self.plan = run.plan
        self.rule = run.plan.update_rule
        self.agents = run.plan.agents
        self.network = RoundNetwork(run.plan.topology.graph, frozenset(range(self.agents)),
                                    run.plan.topology.mixing_matrix)

    def run_rounds(self) -> FinalParameters:
        plan, run = self.plan, self.run
        schedule = plan.async_schedule
        points = run.stack(self.agents)
        read = [p.clone() for p in points]
        everyone = list(range(self.agents))
        sizes = np.full(self.agents, run.point_bytes)
        run.clock.restart()
        for server_round, ticks in enumerate(schedule.ticks_per_round, start=1):
            lr = plan.lr_at(server_round)
            losses = torch.zeros(self.agents, dtype=torch.float64, device=run.device)
            norms = torch.zeros_like(losses)
            stepped = torch.zeros_like(losses)
            events = 0
            for tick in ticks:
                active = torch.as_tensor(tick.active, device=run.device)
                step_losses, step_norms = self.tick(points, read, tick, active, lr)
                losses.index_add_(0, active, step_losses.to(torch.float64))
                norms.index_add_(0, active, step_norms)
                stepped.index_add_(0, active, torch.ones_like(step_norms))
                events += len(tick.active)
            metrics = run.agent_metrics(everyone, points, {}, server_round)
            for agent, count in enumerate(stepped.tolist()):
                if count:
                    metrics[agent]["minibatch_loss"] = float(losses[agent]) / count
                    metrics[agent]["grad_norm_sq"] = float(norms[agent]) / count
            wall_time = run.lap()
            run.finish(RoundReport(
                server_round=server_round, agents=everyone, points=points,
                agent_metrics=metrics, bytes_moved=POINTS_PER_EVENT * events * run.point_bytes,
                router_bytes=ROUTED_PER_EVENT * events * run.point_bytes,
                network=schedule.metrics(server_round), wall_time_s=wall_time,
                round_network=self.network, message_bytes=sizes))
        return {agent: [p[agent].cpu().numpy() for p in points] for agent in everyone}

    def tick(self, points: Stack, read: Stack, tick: Tick, active: torch.Tensor, lr: float,
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply one tick's events to the points and read points in place; returns the
        active agents' minibatch losses and squared gradient norms."""
        passive = torch.as_tensor(tick.passive, device=self.run.device)
        mixed = [0.5 * p[active] + 0.5 * p[passive] for p in points]
        norms: list[torch.Tensor] = []

        def gradient_at(at: list[torch.Tensor], _: int) -> tuple[Stack, torch.Tensor]:
            grads, losses = self.run.gradient_at(tick.active, tick.steps, at)
            norms.append(squared_norms(grads))
            return grads, losses

        state = {"x": [p[active] for p in points], "read": [r[active] for r in read]}
        new, losses = self.rule.advance(state, mixed, 0.5, gradient_at, lr, 0)
        _write(points, passive, mixed)
        _write(points, active, new["x"])
        _write(read, active, new["read"])
        return losses, norms[0]


def _write(stack: Stack, rows: torch.Tensor, values: Parameters) -> None:
    """The rows `rows` of every tensor of `stack` set to `values`."""
    for tensor, value in zip(stack, values, strict=True):
        tensor[rows] = value
