"""The same computation as a Flower run, as one plain PyTorch loop in matrix form.

With X_k the N agents' parameters stacked row-wise, P_k the published points
(P_k = X_k, or X_k + μ (X_k − X_{k−1}) for Nesterov) and G the minibatch
gradients taken at P_k:

    CDSGD     X_{k+1} = Π X_k − α_k G(X_k)                       (eq. 6)
    Polyak    X_{k+1} = Π X_k − α_k G(X_k) + μ (X_k − X_{k−1})
    Nesterov  X_{k+1} = Π P_k − α_k G(P_k)

with the same x_0, minibatches and step sizes as the Flower simulation. Under
failures Π becomes the round's Π_k, and the rows of the agents that are down in
round k keep X_k (and X_{k−1}) unchanged. It checks both engines (all must end
with the same parameters) and is the baseline the benchmark measures the
framework's overhead against.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from decentral_bench.agent import AgentSetup
from decentral_bench.plan import MethodPlan
from decentral_bench.training import from_numpy, gradient, to_numpy


def reference_gossip(plan: MethodPlan, on_round: Callable[[float], None] | None = None,
                     ) -> dict[int, list[np.ndarray]]:
    """Every agent's published point after `plan.rounds` rounds, in matrix form, from x_0.

    `on_round` receives each round's wall time in seconds.
    """
    if not plan.is_gossip:
        raise ValueError(f"the matrix-form reference covers gossip methods, not {plan.algorithm}")
    setups = [AgentSetup.build(plan, agent) for agent in range(plan.agents)]
    device = setups[0].device
    rule, momentum = plan.update_rule.name, float(plan.options.get("momentum", 0.0))
    schedule = plan.failure_schedule
    static = torch.as_tensor(plan.topology.mixing_matrix, dtype=torch.float32, device=device)
    identity = torch.eye(plan.agents, device=device)
    current = [torch.stack([tensor] * plan.agents)
               for tensor in from_numpy(plan.initial_parameters, device)]
    previous = current

    def points() -> list[torch.Tensor]:
        if rule == "nesterov":
            return [x + momentum * (x - x_prev)
                    for x, x_prev in zip(current, previous, strict=True)]
        return current

    for server_round in range(1, plan.rounds + 1):
        round_started = time.perf_counter()
        lr = plan.lr_at(server_round)
        first_step = (server_round - 1) * plan.local_steps
        mixing, down = static, torch.zeros(plan.agents, dtype=torch.bool, device=device)
        if schedule.changes_network:
            network = schedule.network(server_round)
            mixing = torch.as_tensor(network.mixing_matrix, dtype=torch.float32, device=device)
            down[[agent for agent in range(plan.agents) if agent not in network.alive]] = True
        start = current, previous
        for step in range(first_step, first_step + plan.local_steps):
            published = points()
            per_agent = [gradient(setup.model, [layer[agent] for layer in published],
                                  *setup.minibatch(step), weight_decay=plan.weight_decay)[0]
                         for agent, setup in enumerate(setups)]
            gradients = [torch.stack([g[index] for g in per_agent])
                         for index in range(len(current))]
            weights = mixing if step == first_step else identity
            updated = [torch.tensordot(weights, p, dims=1) - lr * g
                       for p, g in zip(published, gradients, strict=True)]
            if rule == "polyak":
                updated = [u + momentum * (x - x_prev)
                           for u, x, x_prev in zip(updated, current, previous, strict=True)]
            current, previous = updated, current
        if bool(down.any()):  # agents that are down neither step nor publish
            current, previous = _keep_rows(down, current, start[0]), \
                _keep_rows(down, previous, start[1])
        if on_round is not None:
            on_round(time.perf_counter() - round_started)
    final = points()
    return {agent: to_numpy([layer[agent] for layer in final]) for agent in range(plan.agents)}


def _keep_rows(down: torch.Tensor, new: list[torch.Tensor],
               old: list[torch.Tensor]) -> list[torch.Tensor]:
    """`new` with the rows of the agents in `down` taken from `old`."""
    return [torch.where(down.view(-1, *[1] * (n.dim() - 1)), o, n)
            for n, o in zip(new, old, strict=True)]
