"""The same computation as a Flower run, as one plain PyTorch loop in matrix form.

    X_{k+1} = Π X_k − α G(X_k)            (Jiang et al. 2017, eq. 6)

with X_k the N agents' parameters stacked row-wise, the same initial x_0,
the same minibatches and the same step sizes as the Flower simulation. It
checks the simulation (both must end with the same parameters) and is the
baseline the benchmark measures the framework's overhead against.
"""

from __future__ import annotations

import numpy as np
import torch

from decentral_bench.client_app import agent_setup
from decentral_bench.plan import MethodPlan
from decentral_bench.training import from_numpy, gradient, to_numpy
from strategies.cdsgd import sgd_step


def reference_gossip(plan: MethodPlan, initial: list[np.ndarray]) -> dict[int, list[np.ndarray]]:
    """Final x^j of every agent after `plan.rounds` rounds of CDSGD in matrix form."""
    if not plan.is_gossip:
        raise ValueError(f"the matrix-form reference covers gossip methods, not {plan.algorithm}")
    scenario_json = plan.scenario.to_json()
    setups = [agent_setup(scenario_json, plan.method.name, agent) for agent in range(plan.agents)]
    device = setups[0].device
    mixing = torch.as_tensor(plan.topology.mixing_matrix, dtype=torch.float32, device=device)
    layers = [torch.stack([tensor] * plan.agents) for tensor in from_numpy(initial, device)]
    for server_round in range(1, plan.rounds + 1):
        first_step = (server_round - 1) * plan.local_steps
        gradients = [gradient(setup.model, [layer[agent] for layer in layers],
                              *setup.minibatch(first_step))[0]
                     for agent, setup in enumerate(setups)]
        layers = [torch.tensordot(mixing, layer, dims=1) - plan.lr * torch.stack(
            [agent_gradient[index] for agent_gradient in gradients])
            for index, layer in enumerate(layers)]
        for step in range(first_step + 1, first_step + plan.local_steps):
            for agent, setup in enumerate(setups):
                own = [layer[agent] for layer in layers]
                grads = gradient(setup.model, own, *setup.minibatch(step))[0]
                for layer, updated in zip(layers, sgd_step(own, grads, plan.lr), strict=True):
                    layer[agent] = updated
    return {agent: to_numpy([layer[agent] for layer in layers]) for agent in range(plan.agents)}
