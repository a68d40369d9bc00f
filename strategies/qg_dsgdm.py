"""QG-DSGDm: decentralized SGD with quasi-global momentum (Lin, Karimireddy, Stich & Jaggi,
ICML 2021, Algorithm 1; the authors' code epfml/quasi-global-momentum,
`decentralized_qg_sgd.py`).

    m_k^j     = β m̂_{k−1}^j + g_j(x_k^j)                    (m̂_{−1} = 0)
    u_k^j     = m_k^j  (heavy ball)   or   g_j(x_k^j) + β m_k^j  (Nesterov)
    x_{k+1}^j = Σ_{l∈Nb(j)} π_jl (x_k^l − α_k u_k^l)
    d_k^j     = (x_k^j − x_{k+1}^j) / α_k
    m̂_k^j    = μ m̂_{k−1}^j + (1 − μ) d_k^j

Local momentum (DSGDm) accumulates the agent's own gradients, which on heterogeneous data
point away from the global descent direction; the quasi-global buffer m̂ accumulates the
model's displacement after gossip instead, an estimate of the global direction. μ is the
buffer's averaging factor (the code's `1 − factor`, 0.9 by default).

An adapt-then-combine rule (`ahead`): `start` takes g(x_0) on minibatch 0 and publishes
x_0 − α_1 u_0; round k mixes into x_k, updates m̂ from the displacement x_{k−1} − x_k,
takes g(x_k) on minibatch k and publishes x_k − α_k u_k. The step α of each half-step is
kept with it, so the displacement is divided by the step that made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from strategies.gossip import (
    GradientAt,
    Parameters,
    State,
    Weight,
    add,
    as_weight,
    per_agent,
    scale_rows,
    sgd_step,
)


def local_direction(buffer: Parameters, gradient: Parameters, momentum: float,
                    nesterov: bool) -> list[torch.Tensor]:
    """u = β m̂ + g (heavy ball) or g + β (β m̂ + g) (Nesterov)."""
    local = add(gradient, buffer, momentum)
    return add(gradient, local, momentum) if nesterov else local


def quasi_global_buffer(buffer: Parameters, before: Parameters, after: Parameters,
                        lr: Weight, buffer_momentum: float) -> list[torch.Tensor]:
    """m̂ ← μ m̂ + (1 − μ) (x_k − x_{k+1}) / α."""
    displacement = scale_rows(1.0 / lr, [b - a for b, a in zip(before, after, strict=True)])
    return [buffer_momentum * m + (1.0 - buffer_momentum) * d
            for m, d in zip(buffer, displacement, strict=True)]


@dataclass(frozen=True)
class QuasiGlobalMomentum:
    """QG-DSGDm as a gossip rule. State: the iterate x_k, the quasi-global buffer m̂_{k−1},
    the half-step x_k − α_k u_k it publishes and that step's α_k. Keeps x_k, m̂ and α_k
    between rounds (the message brings the half-step back)."""

    momentum: float
    buffer_momentum: float
    nesterov: bool
    ahead: ClassVar[bool] = True
    exchanges_at_start: ClassVar[bool] = True

    @property
    def name(self) -> str:
        return "qg-nesterov" if self.nesterov else "qg-heavy-ball"

    def _publish(self, x: list[torch.Tensor], buffer: list[torch.Tensor],
                 gradient: Parameters, lr: float, loss: Any) -> State:
        direction = local_direction(buffer, gradient, self.momentum, self.nesterov)
        return {"x": x, "buffer": buffer, "half_step": sgd_step(x, direction, lr),
                "lr": [per_agent(lr, loss)]}

    def start(self, x0: list[torch.Tensor], gradient_at: GradientAt, lr: float) -> State:
        gradient, loss = gradient_at(list(x0), 0)
        return self._publish(list(x0), [torch.zeros_like(x) for x in x0], gradient, lr, loss)

    def message(self, state: State) -> list[torch.Tensor]:
        return state["half_step"]

    def model(self, state: State) -> list[torch.Tensor]:
        return state["x"]

    def advance(self, state: State, mixed: Parameters, own_weight: Weight,
                gradient_at: GradientAt, lr: float, step: int) -> tuple[State, Any]:
        x = list(mixed)
        buffer = quasi_global_buffer(state["buffer"], state["x"], x,
                                     as_weight(state["lr"][0]), self.buffer_momentum)
        gradient, loss = gradient_at(x, step)
        return self._publish(x, buffer, gradient, lr, loss), loss

    def kept(self, state: State) -> State:
        return {"x": state["x"], "buffer": state["buffer"], "lr": state["lr"]}

    def restore(self, own_message: list[torch.Tensor], kept: State) -> State:
        return {**kept, "half_step": own_message}
