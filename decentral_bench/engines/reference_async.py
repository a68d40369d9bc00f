"""Asynchronous gossip (AD-PSGD) in matrix form, one event at a time.

With X the N agents' points stacked row-wise and R their read points (R = X_0 at the
start), the e-th event of the clock (`MethodPlan.async_schedule`), agent i averaging with
j on i's minibatch s in virtual round k, is

    X ← A_ij X,   X_i ← X_i − α_k g_i(R_i; s),   R_i ← X_i

where A_ij is the identity with rows i and j replaced by (e_i + e_j)/2. The engines apply
a tick's events together; this applies them one by one in the clock's order, so it also
checks that a tick's events commute.
"""

from __future__ import annotations

import numpy as np
import torch

from decentral_bench.experiment.agent import AgentSetup
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.training import from_numpy, gradient, to_numpy


def pairwise_average(agents: int, first: int, second: int, dtype: torch.dtype,
                     device: torch.device) -> torch.Tensor:
    """A_ij: rows i and j average x_i and x_j, the others keep their own."""
    matrix = torch.eye(agents, dtype=dtype, device=device)
    for row in (first, second):
        matrix[row] = 0.0
        matrix[row, first] = matrix[row, second] = 0.5
    return matrix


def reference_async(plan: MethodPlan) -> dict[int, list[np.ndarray]]:
    """Every agent's point after the clock's events, in matrix form, from x_0."""
    if not plan.is_asynchronous:
        raise ValueError(f"the asynchronous reference covers AD-PSGD, not {plan.algorithm}")
    setups = [AgentSetup.build(plan, agent) for agent in range(plan.agents)]
    device = setups[0].device
    start = from_numpy(plan.initial_parameters, device)
    points = [torch.stack([p] * plan.agents) for p in start]
    read = [p.clone() for p in points]
    for tick in plan.async_schedule.ticks:
        lr = plan.lr_at(tick.virtual_round)
        for agent, partner, step in zip(tick.active, tick.passive, tick.steps, strict=True):
            averaging = pairwise_average(plan.agents, agent, partner, plan.dtype, device)
            points = [torch.tensordot(averaging, p, dims=1) for p in points]
            grads = gradient(setups[agent].model, [r[agent] for r in read],
                             *setups[agent].minibatch(step), weight_decay=plan.weight_decay)[0]
            for p, r, g in zip(points, read, grads, strict=True):
                p[agent] = p[agent] - lr * g
                r[agent] = p[agent]
    return {agent: to_numpy([p[agent] for p in points]) for agent in range(plan.agents)}
