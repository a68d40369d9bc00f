"""D² (Tang, Lian, Yan, Zhang & Liu, ICML 2018, Algorithm 1).

    x_1^j     = Σ_{l∈Nb(j)} π_jl (x_0^l − α g_l(x_0^l))
    x_{k+1}^j = Σ_{l∈Nb(j)} π_jl (2 x_k^l − x_{k−1}^l − α g_l(x_k^l) + α g_l(x_{k−1}^l))

The correction x_k − x_{k−1} + α g(x_{k−1}) cancels the agents' own gradients at a fixed
point, so with a constant step and full gradients the agents reach the minimizer of the
average loss whatever their data. The recursion needs λ_min(Π) > −1/3 (the paper's
Theorem 1; `topology.lazy: true` makes every eigenvalue ≥ 0). Under a step schedule each
gradient keeps the step it was taken with: the message of round k is
2x_k − x_{k−1} − α_k g_k + α_{k−1} g_{k−1}, so x̄ still follows x̄_{k+1} = x̄_k − α_k ḡ_k.

An adapt-then-combine rule (`ahead`): `start` takes g(x_0) on minibatch 0 and publishes
x_0 − α_1 g_0; round k mixes into x_k, takes g(x_k) on minibatch k and publishes the
extrapolation above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from strategies.gossip import GradientAt, Parameters, State, Weight


def extrapolate(current: Parameters, previous: Parameters, step: Parameters,
                previous_step: Parameters) -> list[torch.Tensor]:
    """D²'s message 2x_k − x_{k−1} − α_k g_k + α_{k−1} g_{k−1}, with `step` = α_k g_k."""
    return [2 * x - x_prev - s + s_prev for x, x_prev, s, s_prev in
            zip(current, previous, step, previous_step, strict=True)]


def scaled(gradient: Parameters, lr: float) -> list[torch.Tensor]:
    """α g."""
    return [lr * g for g in gradient]


@dataclass(frozen=True)
class D2:
    """D² as a gossip rule. State: the iterate x_k, its scaled gradient α_k g(x_k) and the
    message it publishes. Keeps x_k and α_k g(x_k) between rounds (the message brings
    itself back)."""

    name: str = "d2"
    ahead: ClassVar[bool] = True
    exchanges_at_start: ClassVar[bool] = True

    def start(self, x0: list[torch.Tensor], gradient_at: GradientAt, lr: float) -> State:
        gradient, _ = gradient_at(list(x0), 0)
        step = scaled(gradient, lr)
        return {"x": list(x0), "step": step,
                "extrapolation": [x - s for x, s in zip(x0, step, strict=True)]}

    def message(self, state: State) -> list[torch.Tensor]:
        return state["extrapolation"]

    def model(self, state: State) -> list[torch.Tensor]:
        return state["x"]

    def advance(self, state: State, mixed: Parameters, own_weight: Weight,
                gradient_at: GradientAt, lr: float, step: int) -> tuple[State, Any]:
        x = list(mixed)
        gradient, loss = gradient_at(x, step)
        taken = scaled(gradient, lr)
        return {"x": x, "step": taken,
                "extrapolation": extrapolate(x, state["x"], taken, state["step"])}, loss

    def kept(self, state: State) -> State:
        return {"x": state["x"], "step": state["step"]}

    def restore(self, own_message: list[torch.Tensor], kept: State) -> State:
        return {**kept, "extrapolation": own_message}
