"""CDMSGD: consensus-based distributed momentum SGD (Jiang et al. 2017, supplementary 7).

Node j keeps x_k^j and x_{k−1}^j (x_{−1}^j = x_0^j) in its own state. It
publishes one point p_k^j per round, the point its neighbours mix and the
point where it takes its own gradient:

- CDSGD (no momentum, eq. 5):   p_k = x_k
      x_{k+1}^j = Σ_{l∈Nb(j)} π_jl x_k^l − α_k g_j(x_k^j)
- Polyak (heavy ball):          p_k = x_k
      x_{k+1}^j = Σ_{l∈Nb(j)} π_jl x_k^l − α_k g_j(x_k^j) + μ (x_k^j − x_{k−1}^j)
- Nesterov:                     p_k = y_k = x_k + μ (x_k − x_{k−1})
      x_{k+1}^j = Σ_{l∈Nb(j)} π_jl y_k^l − α_k g_j(y_k^j)

All functions are pure over lists of tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from strategies.cdsgd import Parameters, cdsgd_update

UpdateRule = Literal["cdsgd", "polyak", "nesterov"]


def nesterov_lookahead(current: Parameters, previous: Parameters,
                       momentum: float) -> list[torch.Tensor]:
    """y_k = x_k + μ (x_k − x_{k−1})."""
    return [x + momentum * (x - x_prev) for x, x_prev in zip(current, previous, strict=True)]


def published_point(rule: UpdateRule, current: Parameters, previous: Parameters,
                    momentum: float) -> list[torch.Tensor]:
    """p_k^j: what node j publishes, its neighbours mix, and it takes its gradient at."""
    if rule == "nesterov":
        return nesterov_lookahead(current, previous, momentum)
    return list(current)


def polyak_update(neighbour_parameters: Sequence[Parameters], weights: Sequence[float],
                  gradient: Parameters, lr: float, momentum: float, current: Parameters,
                  previous: Parameters) -> list[torch.Tensor]:
    """x_{k+1}^j = Σ π_jl x_k^l − α g_j(x_k^j) + μ (x_k^j − x_{k−1}^j)."""
    step = cdsgd_update(neighbour_parameters, weights, gradient, lr)
    return [s + momentum * (x - x_prev)
            for s, x, x_prev in zip(step, current, previous, strict=True)]


def nesterov_update(neighbour_points: Sequence[Parameters], weights: Sequence[float],
                    gradient: Parameters, lr: float) -> list[torch.Tensor]:
    """x_{k+1}^j = Σ π_jl y_k^l − α g_j(y_k^j), the neighbours having published y_k^l."""
    return cdsgd_update(neighbour_points, weights, gradient, lr)


def consensus_step(rule: UpdateRule, neighbour_points: Sequence[Parameters],
                   weights: Sequence[float], gradient: Parameters, lr: float, momentum: float,
                   current: Parameters, previous: Parameters) -> list[torch.Tensor]:
    """x_{k+1}^j under `rule`, from the points Nb(j) published and g_j at j's own point."""
    if rule == "polyak":
        return polyak_update(neighbour_points, weights, gradient, lr, momentum, current, previous)
    if rule == "nesterov":
        return nesterov_update(neighbour_points, weights, gradient, lr)
    return cdsgd_update(neighbour_points, weights, gradient, lr)
