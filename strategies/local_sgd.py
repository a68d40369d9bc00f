"""Local SGD: FedAvg's client update (McMahan et al. 2017), and what each agent does alone
once FedAvg's server is lost.

    x ← x − α_k g_j(x),  repeated for E epochs of the agent's own data

starting from the global model (or, without a server, from the agent's own last model).
"""

from __future__ import annotations

from typing import Any

import torch

from strategies.gossip import GradientAt, Parameters, sgd_step


def local_sgd(start: Parameters, gradient_at: GradientAt, lr: float, first_step: int,
              steps: int) -> tuple[list[torch.Tensor], list[Any]]:
    """`steps` plain SGD steps from `start`, numbered from `first_step` (which fixes the
    minibatches). Returns the final parameters and the loss of every step."""
    parameters, losses = list(start), []
    for step in range(first_step, first_step + steps):
        gradient, loss = gradient_at(parameters, step)
        parameters = sgd_step(parameters, gradient, lr)
        losses.append(loss)
    return parameters, losses
