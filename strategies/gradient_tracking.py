"""Gradient tracking (DSGT: Pu & Nedić 2020; Koloskova, Lin & Stich 2021, Algorithm 1).

    x_{k+1}^j = Σ_{l∈Nb(j)} π_jl (x_k^l − α_k y_k^l)
    y_{k+1}^j = Σ_{l∈Nb(j)} π_jl y_k^l + g_j(x_{k+1}^j) − g_j(x_k^j),     y_0^j = g_j(x_0)

With Π doubly stochastic the trackers keep ȳ_k = ḡ_k, the average of the agents' latest
gradients, so an agent steps along an estimate of the global gradient instead of its own:
the fixed point is a stationary point of the average loss, whatever the agents' data (the
ζ² term of D-SGD's bounds is gone). A message carries x − α y and y: twice the model.

Momentum (optional, β > 0) as the gradient-tracking optimizer of Lin et al.'s code
(epfml/quasi-global-momentum) applies it: a local buffer over the tracker,

    v_k = β v_{k−1} + y_k  (v_{−1} = 0);   polyak: u_k = v_k,   nesterov: u_k = y_k + β v_k

and the step x_k − α_k u_k in place of x_k − α_k y_k.

An adapt-then-combine rule (`ahead`): `start` takes g(x_0) on minibatch 0 and publishes
x_0 − α_1 u_0; round k mixes, takes g(x_k) on minibatch k and publishes x_k − α_k u_k.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from strategies.gossip import GradientAt, Parameters, State, Weight, add, sgd_step


def track(mixed_tracker: Parameters, gradient: Parameters,
          previous_gradient: Parameters) -> list[torch.Tensor]:
    """y_{k+1} = Σ_l π_jl y_k^l + g(x_{k+1}) − g(x_k)."""
    return [y + g - g_old for y, g, g_old in
            zip(mixed_tracker, gradient, previous_gradient, strict=True)]


def tracker_direction(tracker: Parameters, velocity: Parameters | None, momentum: float,
                      nesterov: bool) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """The step's direction u_k and the new buffer v_k (None without momentum):
    u = y; or v = β v_{−} + y and u = v (polyak) or y + β v (nesterov)."""
    if momentum == 0.0 or velocity is None:
        return list(tracker), None
    buffer = [momentum * v + y for v, y in zip(velocity, tracker, strict=True)]
    if nesterov:
        return add(tracker, buffer, momentum), buffer
    return buffer, buffer


@dataclass(frozen=True)
class GradientTracking:
    """DSGT as a gossip rule. State: the iterate x_k, the tracker y_k, the last gradient
    g(x_k), the half-step x_k − α_k u_k it publishes with y_k, and with momentum the
    buffer v_k. Keeps x_k and g(x_k) (and v_k) between rounds: the message brings back
    the half-step and y_k."""

    momentum: float = 0.0
    nesterov: bool = False
    ahead: ClassVar[bool] = True
    exchanges_at_start: ClassVar[bool] = True

    @property
    def name(self) -> str:
        if self.momentum == 0.0:
            return "gradient_tracking"
        return "gradient_tracking-nesterov" if self.nesterov else "gradient_tracking-polyak"

    @property
    def _kept_parts(self) -> tuple[str, ...]:
        return ("x", "gradient", "velocity") if self.momentum else ("x", "gradient")

    def _publish(self, x: list[torch.Tensor], tracker: list[torch.Tensor],
                 gradient: list[torch.Tensor], velocity: list[torch.Tensor] | None,
                 lr: float) -> State:
        direction, buffer = tracker_direction(tracker, velocity, self.momentum, self.nesterov)
        state = {"x": x, "tracker": tracker, "gradient": gradient,
                 "half_step": sgd_step(x, direction, lr)}
        if buffer is not None:
            state["velocity"] = buffer
        return state

    def start(self, x0: list[torch.Tensor], gradient_at: GradientAt, lr: float) -> State:
        gradient, _ = gradient_at(list(x0), 0)
        velocity = [torch.zeros_like(x) for x in x0] if self.momentum else None
        return self._publish(list(x0), list(gradient), list(gradient), velocity, lr)

    def message(self, state: State) -> list[torch.Tensor]:
        return [*state["half_step"], *state["tracker"]]

    def model(self, state: State) -> list[torch.Tensor]:
        return state["x"]

    def advance(self, state: State, mixed: Parameters, own_weight: Weight,
                gradient_at: GradientAt, lr: float, step: int) -> tuple[State, Any]:
        layers = len(state["x"])
        x = list(mixed[:layers])
        gradient, loss = gradient_at(x, step)
        tracker = track(mixed[layers:], gradient, state["gradient"])
        return self._publish(x, tracker, list(gradient), state.get("velocity"), lr), loss

    def kept(self, state: State) -> State:
        return {part: state[part] for part in self._kept_parts}

    def restore(self, own_message: list[torch.Tensor], kept: State) -> State:
        layers = len(own_message) // 2
        return {**kept, "half_step": own_message[:layers], "tracker": own_message[layers:]}
