"""Stochastic Gradient Push (Assran et al., ICML 2019, Algorithm 1): push-sum gossip over a
directed (possibly time-varying) graph with a column-stochastic P_k (p_ij: the share of
j's mass that j sends to i; every column sums to 1):

    x_{k+½}^j = x_k^j − α ∇F_j(z_k^j)                (a step at the de-biased point)
    x_{k+1}^i = Σ_j p_ij x_{k+½}^j,   w_{k+1}^i = Σ_j p_ij w_k^j     (push-sum)
    z_{k+1}^i = x_{k+1}^i / w_{k+1}^i

from x_0^j = z_0^j = x_0 and w_0^j = 1. A column-stochastic P keeps Σ_i x^i and Σ_i w^i,
but not each agent's share: x^i alone is biased towards the agents that receive more,
and the push-sum weight w^i divides that bias out, so z^i → x̄ where x^i would not. On a
doubly stochastic P the weights stay 1 and SGP is CDSGD taking its gradient at the mixed
point (adapt-then-combine).

As a gossip rule (`strategies.gossip`) SGP is `ahead`: the message already holds the
gradient step, m_k^j = (x_{k+½}^j, w_k^j), the push-sum weight travelling as one more
one-element tensor; the engines' mixing sum Σ_j p_ij m^j is then the push-sum step, and
the model evaluated is z.

Local momentum (`momentum` μ > 0), as the authors' code has it (`gossip_sgd.py`: PyTorch's
SGD, Nesterov by default, stepping on the push-sum numerator after the gradient was taken
at the de-biased point), replaces the step by

    v_k^j = μ v_{k−1}^j + ∇F_j(z_k^j)    (v = ∇F_j(z_0^j) at the first step)
    x_{k+½}^j = x_k^j − α d_k^j,    d = v (heavy ball) or ∇F_j(z_k^j) + μ v (Nesterov)

with the velocity v kept by each agent, never gossiped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from strategies.gossip import GradientAt, Parameters, State, Weight, sgd_step


def debiased(x: Parameters, w: torch.Tensor) -> list[torch.Tensor]:
    """z = x / w: one agent's tensors by its w (shape (1,)), or a stack's (agents along
    dimension 0) each by its own row of w (shape (N, 1))."""
    if w.dim() == 1:
        return [p / w for p in x]
    return [p / w.view(-1, *[1] * (p.dim() - 1)) for p in x]


@dataclass(frozen=True)
class SGP:
    """Push-sum with a gradient step at the de-biased point (see the module docstring).

    State: "x" the half-step numerator x_{k+½} (what is pushed), "w" the push-sum weight
    w_k, "z" the de-biased model z_k the step was taken at, and with momentum "v" the
    local velocity."""

    name: str = "sgp"
    momentum: float = 0.0
    nesterov: bool = True
    ahead: ClassVar[bool] = True
    exchanges_at_start: ClassVar[bool] = True

    def _step(self, x: Parameters, gradient: list[torch.Tensor], lr: float,
              velocity: list[torch.Tensor] | None) -> State:
        """x − α d, and the new velocity where the rule has momentum (PyTorch's SGD)."""
        if not self.momentum:
            return {"x": sgd_step(x, gradient, lr)}
        v = [g.clone() for g in gradient] if velocity is None else \
            [self.momentum * b + g for b, g in zip(velocity, gradient, strict=True)]
        direction = [g + self.momentum * b for g, b in zip(gradient, v, strict=True)] \
            if self.nesterov else v
        return {"x": sgd_step(x, direction, lr), "v": v}

    def start(self, x0: list[torch.Tensor], gradient_at: GradientAt, lr: float) -> State:
        """z_0 = x_0, w_0 = 1, and the first half step on minibatch 0. The loss says whether
        the tensors are one agent's (a float) or a stack's (one loss per agent)."""
        gradient, loss = gradient_at(list(x0), 0)
        rows = (len(loss), 1) if isinstance(loss, torch.Tensor) and loss.dim() == 1 else (1,)
        w = torch.ones(rows, dtype=x0[0].dtype, device=x0[0].device)
        return {**self._step(x0, gradient, lr, None), "w": [w], "z": list(x0)}

    def message(self, state: State) -> list[torch.Tensor]:
        return [*state["x"], state["w"][0]]

    def model(self, state: State) -> list[torch.Tensor]:
        return state["z"]

    def advance(self, state: State, mixed: Parameters, own_weight: Weight,
                gradient_at: GradientAt, lr: float, step: int) -> tuple[State, Any]:
        """Push-sum has happened in `mixed` = Σ_j p_ij (x_{k+½}^j, w_k^j); de-bias, step."""
        *x, w = mixed
        z = debiased(x, w)
        gradient, loss = gradient_at(z, step)
        return {**self._step(x, gradient, lr, state.get("v")), "w": [w], "z": z}, loss

    def kept(self, state: State) -> State:
        return {part: state[part] for part in ("z", "v") if part in state}

    def restore(self, own_message: list[torch.Tensor], kept: State) -> State:
        *x, w = own_message
        return {"x": list(x), "w": [w], **kept}
