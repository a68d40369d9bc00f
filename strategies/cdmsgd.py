"""CDMSGD: consensus-based distributed momentum SGD (Jiang et al. 2017, supplementary 7).

Node j keeps x_k^j and x_{k−1}^j (x_{−1}^j = x_0^j). It publishes one point
p_k^j per round, the point its neighbours mix and the point where it takes its
own gradient:

- Polyak (heavy ball):          p_k = x_k
      x_{k+1}^j = Σ_{l∈Nb(j)} π_jl x_k^l − α_k g_j(x_k^j) + μ (x_k^j − x_{k−1}^j)
- Nesterov:                     p_k = y_k = x_k + μ (x_k − x_{k−1})
      x_{k+1}^j = Σ_{l∈Nb(j)} π_jl y_k^l − α_k g_j(y_k^j)

and, as an option, the form of the authors' released code (`LocalVelocity`).

All functions are pure over lists of tensors (one agent's, or all agents' stacked).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from strategies.cdsgd import cdsgd_update, mix, sgd_step
from strategies.gossip import GossipState, Parameters, shift_both


def nesterov_lookahead(current: Parameters, previous: Parameters,
                       momentum: float) -> list[torch.Tensor]:
    """y_k = x_k + μ (x_k − x_{k−1})."""
    return [x + momentum * (x - x_prev) for x, x_prev in zip(current, previous, strict=True)]


def heavy_ball(mixed: Parameters, gradient: Parameters, lr: float, momentum: float,
               current: Parameters, previous: Parameters) -> list[torch.Tensor]:
    """x_{k+1} = mixed − α g + μ (x_k − x_{k−1})."""
    return [s + momentum * (x - x_prev) for s, x, x_prev in
            zip(sgd_step(mixed, gradient, lr), current, previous, strict=True)]


def polyak_update(neighbour_parameters: Sequence[Parameters], weights: Sequence[float],
                  gradient: Parameters, lr: float, momentum: float, current: Parameters,
                  previous: Parameters) -> list[torch.Tensor]:
    """x_{k+1}^j = Σ π_jl x_k^l − α g_j(x_k^j) + μ (x_k^j − x_{k−1}^j)."""
    return heavy_ball(mix(neighbour_parameters, weights), gradient, lr, momentum, current,
                      previous)


def nesterov_update(neighbour_points: Sequence[Parameters], weights: Sequence[float],
                    gradient: Parameters, lr: float) -> list[torch.Tensor]:
    """x_{k+1}^j = Σ π_jl y_k^l − α g_j(y_k^j), the neighbours having published y_k^l."""
    return cdsgd_update(neighbour_points, weights, gradient, lr)


@dataclass(frozen=True)
class Polyak:
    """Heavy-ball CDMSGD. Publishes x_k; keeps x_{k−1} between rounds."""

    momentum: float
    name: str = "polyak"

    def published_point(self, state: GossipState) -> list[torch.Tensor]:
        return list(state.current)

    def advance(self, state: GossipState, mixed: Parameters, gradient: Parameters,
                lr: float) -> GossipState:
        updated = heavy_ball(mixed, gradient, lr, self.momentum, state.current, state.memory)
        return GossipState(updated, state.current)

    def kept(self, state: GossipState) -> list[torch.Tensor] | None:
        return state.memory

    def restore(self, own_point: list[torch.Tensor],
                kept: list[torch.Tensor] | None) -> GossipState:
        return GossipState(own_point, own_point if kept is None else kept)  # x_{−1} = x_0

    def translate(self, state: GossipState, delta: Parameters) -> GossipState:
        return shift_both(state, delta)


@dataclass(frozen=True)
class Nesterov:
    """Nesterov CDMSGD. Publishes the look-ahead y_k; keeps x_k between rounds (the
    message brings y_k back, and x_{k−1} is needed only to form y_k)."""

    momentum: float
    name: str = "nesterov"

    def published_point(self, state: GossipState) -> list[torch.Tensor]:
        return nesterov_lookahead(state.current, state.memory, self.momentum)

    def advance(self, state: GossipState, mixed: Parameters, gradient: Parameters,
                lr: float) -> GossipState:
        return GossipState(sgd_step(mixed, gradient, lr), state.current)

    def kept(self, state: GossipState) -> list[torch.Tensor] | None:
        return state.current

    def restore(self, own_point: list[torch.Tensor],
                kept: list[torch.Tensor] | None) -> GossipState:
        # x_0 = y_0 before the first round. The memory is read only to form a look-ahead,
        # which a round takes from the message (own_point) before its first step.
        current = own_point if kept is None else kept
        return GossipState(current, current)

    def translate(self, state: GossipState, delta: Parameters) -> GossipState:
        """x_k and x_{k−1} move alike, so the look-ahead y_k moves by `delta` too."""
        return shift_both(state, delta)


@dataclass(frozen=True)
class LocalVelocity:
    """CDMSGD as the authors' released code computes it (`momentum_buffer: local`): each
    agent keeps a velocity of its own gradient steps that is never mixed,

        v_{k+1} = μ v_k − α g_j(x_k)                      (v_0 = 0)
        Polyak:    x_{k+1} = Σ π_jl x_k^l + v_{k+1}
        Nesterov:  x_{k+1} = Σ π_jl x_k^l + μ v_{k+1} − α g_j(x_k)

    It publishes x_k and keeps v_k (the memory) between rounds."""

    momentum: float
    nesterov: bool

    @property
    def name(self) -> str:
        return "nesterov-local" if self.nesterov else "polyak-local"

    def published_point(self, state: GossipState) -> list[torch.Tensor]:
        return list(state.current)

    def advance(self, state: GossipState, mixed: Parameters, gradient: Parameters,
                lr: float) -> GossipState:
        velocity = [self.momentum * v - lr * g
                    for v, g in zip(state.memory, gradient, strict=True)]
        if self.nesterov:
            step = [self.momentum * v - lr * g for v, g in zip(velocity, gradient, strict=True)]
        else:
            step = velocity
        return GossipState([m + s for m, s in zip(mixed, step, strict=True)], velocity)

    def kept(self, state: GossipState) -> list[torch.Tensor] | None:
        return state.memory

    def restore(self, own_point: list[torch.Tensor],
                kept: list[torch.Tensor] | None) -> GossipState:
        return GossipState(own_point, [torch.zeros_like(x) for x in own_point]
                           if kept is None else kept)

    def translate(self, state: GossipState, delta: Parameters) -> GossipState:
        """Only the iterate moves; the velocity is the agent's own and is never mixed."""
        return GossipState([x + d for x, d in zip(state.current, delta, strict=True)],
                           state.memory)
