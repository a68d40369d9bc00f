"""CDSGD update rule (Jiang et al., NeurIPS 2017, Algorithm 1 and eq. 5).

    x_{k+1}^j = Σ_{l∈Nb(j)} π_jl x_k^l − α g_j(x_k^j)

Parameters are lists of tensors, one per model parameter; every function is
pure: it returns new tensors and changes none of its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from strategies.gossip import GradientAt, Parameters, State, Weight, add, sgd_step


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


def cdsgd_update(neighbour_parameters: Sequence[Parameters], weights: Sequence[float],
                 gradient: Parameters, lr: float) -> list[torch.Tensor]:
    """One CDSGD step for agent j (eq. 5):

        x_{k+1}^j = Σ_{l∈Nb(j)} π_jl x_k^l − α g_j(x_k^j)

    `gradient` is g_j evaluated at the agent's own x_k^j on a minibatch of its own data.
    """
    return sgd_step(mix(neighbour_parameters, weights), gradient, lr)


@dataclass(frozen=True)
class CDSGD:
    """Eq. 5 as a gossip rule: the state is x_k alone and the message is x_k itself, so
    nothing is kept between rounds (the router brings x_k^j back)."""

    name: str = "cdsgd"
    ahead: ClassVar[bool] = False
    exchanges_at_start: ClassVar[bool] = False

    def start(self, x0: list[torch.Tensor], gradient_at: GradientAt, lr: float) -> State:
        return {"x": list(x0)}

    def message(self, state: State) -> list[torch.Tensor]:
        return state["x"]

    def model(self, state: State) -> list[torch.Tensor]:
        return state["x"]

    def advance(self, state: State, mixed: Parameters, own_weight: Weight,
                gradient_at: GradientAt, lr: float, step: int) -> tuple[State, Any]:
        gradient, loss = gradient_at(state["x"], step)
        return {"x": sgd_step(mixed, gradient, lr)}, loss

    def kept(self, state: State) -> State:
        return {}

    def restore(self, own_message: list[torch.Tensor], kept: State) -> State:
        return {"x": own_message}

    def translate(self, state: State, delta: Parameters) -> State:
        return {"x": add(state["x"], delta)}
