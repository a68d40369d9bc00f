"""Local SGD: the client update of the server methods (McMahan et al. 2017), with FedProx's
proximal term (Li et al. 2020), and what each agent does alone once the server is lost.

    x ← x − α_k (g_j(x) + μ (x − x_t)),  repeated for E epochs of the agent's own data

starting from the global model x_t (or, without a server, from the agent's own last model,
with μ = 0: there is no global model to stay close to). μ = 0 is FedAvg's client update;
μ (x − x_t) is the gradient of FedProx's proximal term μ/2 ||x − x_t||².
"""

from __future__ import annotations

from typing import Any

import torch

from strategies.gossip import GradientAt, Parameters, add, sgd_step


def proximal_gradient(gradient: Parameters, parameters: Parameters, anchor: Parameters,
                      proximal_mu: float) -> list[torch.Tensor]:
    """g + μ (x − x_t): the gradient of f_j(x) + μ/2 ||x − x_t||²."""
    if proximal_mu == 0.0:
        return list(gradient)
    return add(gradient, [x - a for x, a in zip(parameters, anchor, strict=True)], proximal_mu)


def local_sgd(start: Parameters, gradient_at: GradientAt, lr: float, first_step: int,
              steps: int, proximal_mu: float = 0.0) -> tuple[list[torch.Tensor], list[Any]]:
    """`steps` SGD steps from `start`, numbered from `first_step` (which fixes the
    minibatches), with the proximal term μ/2 ||x − start||². Returns the final parameters
    and the loss of every step (without the proximal term)."""
    anchor = list(start)
    parameters, losses = list(start), []
    for step in range(first_step, first_step + steps):
        gradient, loss = gradient_at(parameters, step)
        parameters = sgd_step(parameters, proximal_gradient(gradient, parameters, anchor,
                                                            proximal_mu), lr)
        losses.append(loss)
    return parameters, losses
