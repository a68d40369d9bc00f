"""CDMSGD: consensus-based distributed momentum SGD (Jiang et al. 2017, supplementary 7).

Node j keeps x_k^j and what its momentum form needs besides. It publishes one point
p_k^j per round, the point its neighbours mix and the point where it takes its own
gradient:

- Polyak (heavy ball):          p_k = x_k
      x_{k+1}^j = Σ_{l∈Nb(j)} π_jl x_k^l − α_k g_j(x_k^j) + μ (x_k^j − x_{k−1}^j)
- Nesterov:                     p_k = y_k = x_k + μ (x_k − x_{k−1})
      x_{k+1}^j = Σ_{l∈Nb(j)} π_jl y_k^l − α_k g_j(y_k^j)

and, as an option, the form of the authors' released code (`LocalVelocity`).

All functions are pure over lists of tensors (one agent's, or all agents' stacked).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from strategies.gossip import GradientAt, Parameters, State, Weight, add, sgd_step


def nesterov_lookahead(current: Parameters, previous: Parameters,
                       momentum: float) -> list[torch.Tensor]:
    """y_k = x_k + μ (x_k − x_{k−1})."""
    return [x + momentum * (x - x_prev) for x, x_prev in zip(current, previous, strict=True)]


def heavy_ball(mixed: Parameters, gradient: Parameters, lr: float, momentum: float,
               current: Parameters, previous: Parameters) -> list[torch.Tensor]:
    """x_{k+1} = mixed − α g + μ (x_k − x_{k−1})."""
    return [s + momentum * (x - x_prev) for s, x, x_prev in
            zip(sgd_step(mixed, gradient, lr), current, previous, strict=True)]


def nesterov_divergence_bound(momentum: float) -> float:
    """The eigenvalue at and below which Nesterov on the iterates diverges: −1/(1 + 2μ),
    where a root of `nesterov_disagreement_modulus`'s polynomial reaches −1."""
    return -1.0 / (1.0 + 2.0 * momentum)


def nesterov_disagreement_modulus(eigenvalue: float, momentum: float) -> float:
    """How fast Nesterov on the iterates shrinks a disagreement along an eigenvector of Π.

    Mixing the look-ahead, a disagreement e along an eigenvector with eigenvalue λ follows
    e_{k+1} = λ ((1 + μ) e_k − μ e_{k−1}), whose characteristic polynomial is
    z² − λ(1 + μ) z + λμ. Returns the larger modulus of its two roots: the factor the
    disagreement is multiplied by per round in the long run (≥ 1: it grows). On the
    Metropolis ring's λN = −1/3 at μ = 0.9 the roots are 0.316 and −0.949.
    """
    trace, determinant = eigenvalue * (1.0 + momentum), eigenvalue * momentum
    discriminant = trace * trace - 4.0 * determinant
    if discriminant < 0.0:  # complex pair: both roots have modulus √(λμ)
        return math.sqrt(determinant)
    root = math.sqrt(discriminant)
    return max(abs(trace + root), abs(trace - root)) / 2.0


@dataclass(frozen=True)
class Polyak:
    """Heavy-ball CDMSGD. State: x_k and x_{k−1} (x_{−1} = x_0); publishes x_k and keeps
    x_{k−1} between rounds."""

    momentum: float
    name: str = "polyak"
    ahead: ClassVar[bool] = False
    exchanges_at_start: ClassVar[bool] = False

    def start(self, x0: list[torch.Tensor], gradient_at: GradientAt, lr: float) -> State:
        return {"x": list(x0), "previous": list(x0)}

    def message(self, state: State) -> list[torch.Tensor]:
        return state["x"]

    def model(self, state: State) -> list[torch.Tensor]:
        return state["x"]

    def advance(self, state: State, mixed: Parameters, own_weight: Weight,
                gradient_at: GradientAt, lr: float, step: int) -> tuple[State, Any]:
        gradient, loss = gradient_at(state["x"], step)
        updated = heavy_ball(mixed, gradient, lr, self.momentum, state["x"], state["previous"])
        return {"x": updated, "previous": state["x"]}, loss

    def kept(self, state: State) -> State:
        return {"previous": state["previous"]}

    def restore(self, own_message: list[torch.Tensor], kept: State) -> State:
        return {"x": own_message, "previous": kept.get("previous", own_message)}

    def translate(self, state: State, delta: Parameters) -> State:
        """x_k and x_{k−1} move alike: the momentum x_k − x_{k−1} is unchanged."""
        return {part: add(tensors, delta) for part, tensors in state.items()}


@dataclass(frozen=True)
class Nesterov:
    """Nesterov CDMSGD. State: x_k and the look-ahead y_k it publishes; keeps x_k between
    rounds (the message brings y_k back)."""

    momentum: float
    name: str = "nesterov"
    ahead: ClassVar[bool] = False
    exchanges_at_start: ClassVar[bool] = False

    def start(self, x0: list[torch.Tensor], gradient_at: GradientAt, lr: float) -> State:
        return {"x": list(x0), "lookahead": list(x0)}  # y_0 = x_0 (x_{−1} = x_0)

    def message(self, state: State) -> list[torch.Tensor]:
        return state["lookahead"]

    def model(self, state: State) -> list[torch.Tensor]:
        return state["lookahead"]

    def advance(self, state: State, mixed: Parameters, own_weight: Weight,
                gradient_at: GradientAt, lr: float, step: int) -> tuple[State, Any]:
        gradient, loss = gradient_at(state["lookahead"], step)
        updated = sgd_step(mixed, gradient, lr)
        return {"x": updated,
                "lookahead": nesterov_lookahead(updated, state["x"], self.momentum)}, loss

    def kept(self, state: State) -> State:
        return {"x": state["x"]}

    def restore(self, own_message: list[torch.Tensor], kept: State) -> State:
        return {"x": kept.get("x", own_message), "lookahead": own_message}

    def translate(self, state: State, delta: Parameters) -> State:
        """x_k and x_{k−1} move alike, so the look-ahead y_k moves by `delta` too."""
        return {part: add(tensors, delta) for part, tensors in state.items()}


@dataclass(frozen=True)
class LocalVelocity:
    """CDMSGD as the authors' released code computes it (`momentum_buffer: local`): each
    agent keeps a velocity of its own gradient steps that is never mixed,

        v_{k+1} = μ v_k − α g_j(x_k)                      (v_0 = 0)
        Polyak:    x_{k+1} = Σ π_jl x_k^l + v_{k+1}
        Nesterov:  x_{k+1} = Σ π_jl x_k^l + μ v_{k+1} − α g_j(x_k)

    It publishes x_k and keeps v_k between rounds."""

    momentum: float
    nesterov: bool
    ahead: ClassVar[bool] = False
    exchanges_at_start: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return "nesterov-local" if self.nesterov else "polyak-local"

    def start(self, x0: list[torch.Tensor], gradient_at: GradientAt, lr: float) -> State:
        return {"x": list(x0), "velocity": [torch.zeros_like(x) for x in x0]}

    def message(self, state: State) -> list[torch.Tensor]:
        return state["x"]

    def model(self, state: State) -> list[torch.Tensor]:
        return state["x"]

    def advance(self, state: State, mixed: Parameters, own_weight: Weight,
                gradient_at: GradientAt, lr: float, step: int) -> tuple[State, Any]:
        gradient, loss = gradient_at(state["x"], step)
        velocity = [self.momentum * v - lr * g
                    for v, g in zip(state["velocity"], gradient, strict=True)]
        if self.nesterov:
            step_taken = [self.momentum * v - lr * g
                          for v, g in zip(velocity, gradient, strict=True)]
        else:
            step_taken = velocity
        return {"x": add(mixed, step_taken), "velocity": velocity}, loss

    def kept(self, state: State) -> State:
        return {"velocity": state["velocity"]}

    def restore(self, own_message: list[torch.Tensor], kept: State) -> State:
        velocity = kept.get("velocity") or [torch.zeros_like(x) for x in own_message]
        return {"x": own_message, "velocity": velocity}

    def translate(self, state: State, delta: Parameters) -> State:
        """Only the iterate moves; the velocity is the agent's own and is never mixed."""
        return {"x": add(state["x"], delta), "velocity": state["velocity"]}
