"""Decentralized SGD in adapt-then-combine form, the form of the ClippedGossip authors' code
(He, Karimireddy & Jaggi 2022; epfml/byzantine-robust-decentralized-optimizer,
`codes/simulator.py`: each worker applies its gradient to its own model, then aggregates its
neighbours' updated models):

    v_k^j         = μ v_{k−1}^j + g_j(x_k^j)                  (v_{−1} = 0)
    u_k^j         = v_k^j  (heavy ball)   or   g_j(x_k^j) + μ v_k^j  (Nesterov)
    x_{k+½}^j     = x_k^j − α_k u_k^j
    x_{k+1}^j     = AGG_{l∈Nb(j)} x_{k+½}^l        (AGG: Σ_l π_jl x_{k+½}^l, or a robust rule)

CDSGD (`strategies.cdsgd`) is the combine-then-adapt form: x_{k+1}^j = AGG(x_k^l) − α g_j(x_k^j),
the gradient taken at the agent's own point and added to the aggregate. Under plain mixing the
two differ only in where a step's gradient enters the average; under a robust rule they do not
behave alike: the aggregate of CDSGD can lie far from the point where its gradient was taken
(a coordinate-wise median of a sparse neighbourhood moves each coordinate to another agent's
value), while here every aggregated point has taken its owner's step, and the rule chooses
among stepped points. The momentum buffer v is the agent's own and is never mixed (the
authors' workers run torch's SGD with momentum on their local model).

An adapt-then-combine rule (`ahead`): `start` takes g(x_0) on minibatch 0 and publishes
x_{½} = x_0 − α_1 u_0; round k aggregates into x_k, takes g(x_k) on minibatch k and publishes
x_{k+½}. With μ = 0 it is QG-DSGDm with β = 0 (`strategies.qg_dsgdm`), whose buffer then
plays no part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from strategies.gossip import GradientAt, Parameters, State, Weight, add, sgd_step


def local_velocity(velocity: Parameters, gradient: Parameters,
                   momentum: float) -> list[torch.Tensor]:
    """v_k = μ v_{k−1} + g_k."""
    return add(gradient, velocity, momentum)


def direction(velocity: Parameters, gradient: Parameters, momentum: float,
              nesterov: bool) -> list[torch.Tensor]:
    """u_k = v_k (heavy ball) or g_k + μ v_k (Nesterov), as torch's SGD steps."""
    return add(gradient, velocity, momentum) if nesterov else list(velocity)


@dataclass(frozen=True)
class DSGDAdaptThenCombine:
    """D-SGD, adapt then combine, as a gossip rule. State: the iterate x_k (what the agent
    evaluates), its velocity v_k and the half-step x_{k+½} it publishes. Keeps x_k and v_k
    between rounds (the message brings the half-step back)."""

    momentum: float = 0.0
    nesterov: bool = False
    ahead: ClassVar[bool] = True
    exchanges_at_start: ClassVar[bool] = True

    @property
    def name(self) -> str:
        if not self.momentum:
            return "atc"
        return "atc-nesterov" if self.nesterov else "atc-heavy-ball"

    def _publish(self, x: list[torch.Tensor], velocity: Parameters, gradient: Parameters,
                 lr: float) -> State:
        updated = local_velocity(velocity, gradient, self.momentum)
        step = direction(updated, gradient, self.momentum, self.nesterov)
        return {"x": x, "velocity": updated, "half_step": sgd_step(x, step, lr)}

    def start(self, x0: list[torch.Tensor], gradient_at: GradientAt, lr: float) -> State:
        gradient, _ = gradient_at(list(x0), 0)
        return self._publish(list(x0), [torch.zeros_like(x) for x in x0], gradient, lr)

    def message(self, state: State) -> list[torch.Tensor]:
        return state["half_step"]

    def model(self, state: State) -> list[torch.Tensor]:
        return state["x"]

    def advance(self, state: State, mixed: Parameters, own_weight: Weight,
                gradient_at: GradientAt, lr: float, step: int) -> tuple[State, Any]:
        x = list(mixed)
        gradient, loss = gradient_at(x, step)
        return self._publish(x, state["velocity"], gradient, lr), loss

    def kept(self, state: State) -> State:
        return {"x": state["x"], "velocity": state["velocity"]}

    def restore(self, own_message: list[torch.Tensor], kept: State) -> State:
        return {**kept, "half_step": own_message}
