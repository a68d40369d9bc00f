"""AD-PSGD, asynchronous decentralized parallel SGD (Lian et al., ICML 2018, Algorithm 1).

Each agent i, on its own clock, with no round barrier:

    x̂_i = x_i                                 (read its point)
    g_i = ∇F_i(x̂_i; ξ_i)                       (a minibatch gradient there, c_i seconds)
    x_i, x_j ← (x_i + x_j) / 2                 (average with a random neighbour j)
    x_i ← x_i − α g_i                          (apply the gradient, now stale)

When events happen, and which neighbour, is the simulated clock's business
(`decentral_bench.network.asynchrony`): the engines apply its events in order. As a gossip
rule (`strategies.gossip`) an event is a round of the active agent i with Nb(i) = {i, j}
and weights ½, ½: `advance` mixes and applies the gradient taken on the point read at
i's last event (kept as "read"), and the read point becomes the new x_i. The passive j only
averages: consensus control's gossip-only exchange, which moves x_j and leaves j's read
point where it was (`translate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from strategies.gossip import GradientAt, Parameters, State, Weight, add, sgd_step


@dataclass(frozen=True)
class ADPSGD:
    """Algorithm 1's step as a gossip rule (see the module docstring).

    State: "x" the agent's point (its message and model), "read" x̂, the point its next
    gradient is taken at (x after its last own step; x_0 before its first)."""

    name: str = "ad_psgd"
    ahead: ClassVar[bool] = False
    exchanges_at_start: ClassVar[bool] = False

    def start(self, x0: list[torch.Tensor], gradient_at: GradientAt, lr: float) -> State:
        return {"x": list(x0), "read": list(x0)}

    def message(self, state: State) -> list[torch.Tensor]:
        return state["x"]

    def model(self, state: State) -> list[torch.Tensor]:
        return state["x"]

    def advance(self, state: State, mixed: Parameters, own_weight: Weight,
                gradient_at: GradientAt, lr: float, step: int) -> tuple[State, Any]:
        """x ← (x_i + x_j)/2 − α g(x̂) from `mixed` = (x_i + x_j)/2; x̂ ← x."""
        gradient, loss = gradient_at(state["read"], step)
        x = sgd_step(mixed, gradient, lr)
        return {"x": x, "read": x}, loss

    def kept(self, state: State) -> State:
        return {"read": state["read"]}

    def restore(self, own_message: list[torch.Tensor], kept: State) -> State:
        """Before its first event an agent has read x_0, its own message then."""
        return {"x": own_message, "read": kept.get("read", own_message)}

    def translate(self, state: State, delta: Parameters) -> State:
        """A passive average moves x, not the point the pending gradient was read at."""
        return {"x": add(state["x"], delta), "read": state["read"]}
