"""CDSGD update rule (Jiang et al., NeurIPS 2017, Algorithm 1 and eq. 5).

Parameters are lists of tensors, one per model parameter; every function is
pure: it returns new tensors and changes none of its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from strategies.gossip import GossipState, Parameters, shift_both


def mix(neighbour_parameters: Sequence[Parameters], weights: Sequence[float]) -> list[torch.Tensor]:
    """The consensus step w_{k+1}^j = Σ_{l∈Nb(j)} π_jl x_k^l (Algorithm 1, line 4).

    `neighbour_parameters[i]` is x_k^l of the i-th member of Nb(j), `weights[i]` its π_jl.
    """
    if len(neighbour_parameters) != len(weights) or not weights:
        raise ValueError("need one weight per neighbour, and at least one neighbour")
    mixed = [weights[0] * tensor for tensor in neighbour_parameters[0]]
    for weight, parameters in zip(weights[1:], neighbour_parameters[1:], strict=True):
        for total, tensor in zip(mixed, parameters, strict=True):
            total.add_(tensor, alpha=weight)
    return mixed


def sgd_step(parameters: Parameters, gradient: Parameters, lr: float) -> list[torch.Tensor]:
    """A plain SGD step x − α g."""
    return [p - lr * g for p, g in zip(parameters, gradient, strict=True)]


def cdsgd_update(neighbour_parameters: Sequence[Parameters], weights: Sequence[float],
                 gradient: Parameters, lr: float) -> list[torch.Tensor]:
    """One CDSGD step for agent j (eq. 5):

        x_{k+1}^j = Σ_{l∈Nb(j)} π_jl x_k^l − α g_j(x_k^j)

    `gradient` is g_j evaluated at the agent's own x_k^j on a minibatch of its own data.
    """
    return sgd_step(mix(neighbour_parameters, weights), gradient, lr)


@dataclass(frozen=True)
class CDSGD:
    """Eq. 5 as an update rule: p_k = x_k, x_{k+1} = Σ π_jl x_k^l − α g_j(x_k^j).
    Nothing is kept between rounds: the message brings x_k^j back."""

    name: str = "cdsgd"

    def published_point(self, state: GossipState) -> list[torch.Tensor]:
        return list(state.current)

    def advance(self, state: GossipState, mixed: Parameters, gradient: Parameters,
                lr: float) -> GossipState:
        updated = sgd_step(mixed, gradient, lr)
        return GossipState(updated, updated)

    def kept(self, state: GossipState) -> list[torch.Tensor] | None:
        return None

    def restore(self, own_point: list[torch.Tensor],
                kept: list[torch.Tensor] | None) -> GossipState:
        return GossipState(own_point, own_point)

    def translate(self, state: GossipState, delta: Parameters) -> GossipState:
        return shift_both(state, delta)
