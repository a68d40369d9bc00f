"""One round of a gossip method (CDSGD and its momentum forms), generic over its update rule.

A round of agent j (Jiang et al. 2017, Algorithm 1 with `local_steps` = τ):

    step 1:      x_{k+1}^j = rule(Σ_{l∈Nb(j)} π_jl p_k^l, g_j(p_k^j), state_k^j)
    steps 2..τ:  the same rule with Π = I (no exchange): the mixed point is j's own p^j

where p_k^j is the point j published in round k (x_k^j, or a look-ahead) and
state^j what the rule carries besides it (x_{k−1}^j, a velocity, nothing).

Everything here is pure and works on any tensor shapes: one agent's parameter
list (the ClientApp) or every agent's parameters stacked along a leading
dimension (the vectorized engine), where the mixing sum is Π applied to the stack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

Parameters = Sequence[torch.Tensor]
# g(p) at step s: the minibatch gradient at the point p on the agent's own data, and the loss.
# The loss is a float for one agent, a tensor of one loss per agent for a stack.
GradientAt = Callable[[list[torch.Tensor], int], tuple[list[torch.Tensor], Any]]


@dataclass(frozen=True)
class GossipState:
    """What an agent holds between steps: its iterate x_k and the rule's memory
    (x_{k−1} for the momentum forms; the iterate itself for CDSGD)."""

    current: list[torch.Tensor]
    memory: list[torch.Tensor]


class UpdateRule(Protocol):
    """How a gossip method publishes, steps and gossips; see `strategies.cdsgd` and
    `strategies.cdmsgd` for the rules themselves."""

    @property
    def name(self) -> str:
        """cdsgd, polyak, nesterov, ...: what MLflow records as the variant."""
        ...

    def published_point(self, state: GossipState) -> list[torch.Tensor]:
        """p_k^j: what j publishes, its neighbours mix, and j takes its gradient at."""
        ...

    def advance(self, state: GossipState, mixed: Parameters, gradient: Parameters,
                lr: float) -> GossipState:
        """The state after one step, from the mixed point Σ π_jl p^l and g_j(p^j)."""
        ...

    def kept(self, state: GossipState) -> list[torch.Tensor] | None:
        """What the agent must keep between rounds that its next message cannot supply
        (the message brings back p_k^j); None when nothing."""
        ...

    def restore(self, own_point: list[torch.Tensor],
                kept: list[torch.Tensor] | None) -> GossipState:
        """The state at the start of a round from the point j published (`own_point`, as
        the message brings it back) and what it kept (None before its first round)."""
        ...

    def translate(self, state: GossipState, delta: Parameters) -> GossipState:
        """The state moved by `delta`, the displacement a gossip-only exchange gave the
        published point (consensus control): its published point moves by `delta`."""
        ...


def shift_both(state: GossipState, delta: Parameters) -> GossipState:
    """Iterate and memory moved alike: a momentum x_k − x_{k−1} is left unchanged."""
    return GossipState([x + d for x, d in zip(state.current, delta, strict=True)],
                       [m + d for m, d in zip(state.memory, delta, strict=True)])


def gossip_round(rule: UpdateRule, state: GossipState, own_point: list[torch.Tensor],
                 mixed: Parameters, gradient_at: GradientAt, lr: float, first_step: int,
                 local_steps: int) -> tuple[GossipState, list[Any]]:
    """One round: the consensus step from `mixed` = Σ_l π_jl p_k^l, then `local_steps − 1`
    steps without mixing. `own_point` is p_k^j, where the first gradient is taken.

    Returns the new state and the losses of the steps.
    """
    point, losses = own_point, []
    for step in range(first_step, first_step + local_steps):
        if step > first_step:  # local steps after the consensus step: Π = I
            point = rule.published_point(state)
            mixed = point
        gradient, loss = gradient_at(point, step)
        state = rule.advance(state, mixed, gradient, lr)
        losses.append(loss)
    return state, losses
