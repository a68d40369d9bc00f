"""A gossip method's round, generic over its update rule.

Every agent j holds a state (its iterate x^j and what its rule carries besides: x_{k−1}^j,
a velocity, a tracker y^j, public copies x̂^j, ...) and publishes one message m_k^j per
round. Round k of agent j is

    mixed^j = Σ_{l∈Nb_k(j)} π_jl m_k^l          (the consensus step: the engine computes it)
    state_{k+1}^j = rule.advance(state_k^j, mixed^j, g_j, ...)
    m_{k+1}^j = rule.message(state_{k+1}^j)

where g_j(p, s) is agent j's minibatch gradient at a point p on its s-th minibatch. The
engines differ only in how they compute the mixing sum (Π_k applied to a stack of every
agent's message; the router delivering Nb(j)'s messages to agent j), so every rule runs
unchanged on both, on one agent's tensors or on every agent's stacked along a leading
dimension.

Two shapes of round cover the methods:

- *combine-then-adapt* (`ahead = False`: CDSGD, CDMSGD, CHOCO): the round's first gradient
  is taken at a point the agent holds when the round starts (its published point, or its
  iterate), on minibatch (k − 1)·τ. `local_steps` τ > 1 adds τ − 1 steps without mixing
  (Π = I: the mixed message is the agent's own).
- *adapt-then-combine* (`ahead = True`: D², gradient tracking, QG-DSGDm, SGP): the message
  already holds a gradient step, so `start` takes g(x_0) on minibatch 0 and publishes the
  first message before round 1; round k takes its gradient at the mixed iterate x_k, on
  minibatch k.

Two optional protocols serve compressed messages (`strategies.compression`): a `Bindable`
rule draws random numbers (masks, roundings) seeded from the run's seed and the agents
that run it (`bound`), and an `Encoded` rule's message travels as its encoding
(`wire_message`, `received_message`): the Flower engine ships and decodes it, the
vectorized engine mixes the message, which equals the decoded encoding bitwise.

Everything here is pure: functions return new tensors and change none of their inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

Parameters = Sequence[torch.Tensor]
# An agent's (or a stack of agents') state: named parts, each a list of tensors; "x" is the
# iterate every rule keeps.
State = dict[str, list[torch.Tensor]]
# g(p) at step s: the minibatch gradient at the point p on the agent's own data, and the loss.
# The loss is a float for one agent, a tensor of one loss per agent for a stack.
GradientAt = Callable[[list[torch.Tensor], int], tuple[list[torch.Tensor], Any]]
# π_jj of each agent: a float for one agent, a tensor of one weight per agent for a stack.
Weight = float | torch.Tensor


class GossipRule(Protocol):
    """How a gossip method starts, publishes, steps and gossips; see `strategies.cdsgd`
    and `strategies.cdmsgd` for the simplest rules."""

    @property
    def name(self) -> str:
        """cdsgd, polyak, nesterov, ...: what MLflow records as the variant."""
        ...

    @property
    def ahead(self) -> bool:
        """True when the round's gradient is taken at the mixed iterate (adapt-then-combine:
        `start` takes g(x_0) and round k uses minibatch k); False when it is taken at the
        point published before the round (minibatch (k − 1)·τ)."""
        ...

    @property
    def exchanges_at_start(self) -> bool:
        """True when every agent computes its start state and first message itself, before
        round 1 (on the Flower engine an exchange with the router that is not a round of
        the modelled network); False when the first message is x_0 and nothing is kept."""
        ...

    def start(self, x0: list[torch.Tensor], gradient_at: GradientAt, lr: float) -> State:
        """The state before round 1, from x_0 (rules that are `ahead` take g(x_0) on
        minibatch 0 here)."""
        ...

    def message(self, state: State) -> list[torch.Tensor]:
        """m^j: what j publishes and its neighbours mix (decoded, if compressed)."""
        ...

    def model(self, state: State) -> list[torch.Tensor]:
        """The agent's model: what is evaluated and enters the consensus distance."""
        ...

    def advance(self, state: State, mixed: Parameters, own_weight: Weight,
                gradient_at: GradientAt, lr: float, step: int) -> tuple[State, Any]:
        """The state after one step, from the mixed messages Σ_l π_jl m^l (π_jj is
        `own_weight`), taking gradients on minibatch `step`. Returns the new state and the
        step's minibatch loss."""
        ...

    def kept(self, state: State) -> State:
        """What the agent keeps between rounds that its next message cannot supply (the
        router brings m^j back to j with its neighbours' messages)."""
        ...

    def restore(self, own_message: list[torch.Tensor], kept: State) -> State:
        """The state at the start of a round from the message j published (as the router
        brings it back) and what it kept."""
        ...


# Who runs a rule: one agent's own tensors (its index), or a stack of these agents (along
# dimension 0, in this order).
Agents = int | Sequence[int]


@runtime_checkable
class Bindable(Protocol):
    """A rule that draws random numbers (a compressor's masks and roundings): it seeds them
    from the run's seed and the agents that run it."""

    def bind(self, seed: int, agents: Agents) -> GossipRule:
        """The rule as `agents` run it in a run seeded `seed`."""
        ...


@runtime_checkable
class Encoded(Protocol):
    """A rule whose message travels encoded (a compressor's wire format, see
    `strategies.compression`): the Flower engine sends `encode(state)` and its receivers
    `decode` it; the vectorized engine mixes `message(state)`, which equals the decoded
    wire bitwise."""

    def encode(self, state: State) -> list[torch.Tensor]:
        """The wire arrays of the message (for a stack: each with the agents along dim 0)."""
        ...

    def decode(self, wire: Sequence[torch.Tensor],
               shapes: Sequence[tuple[int, ...]]) -> list[torch.Tensor]:
        """The message from its wire arrays, the model's parameters being of `shapes`."""
        ...


def bound(rule: GossipRule, seed: int, agents: Agents) -> GossipRule:
    """`rule` as `agents` run it in a run seeded `seed` (`Bindable`); a rule that draws
    nothing at random is returned as it is."""
    return rule.bind(seed, agents) if isinstance(rule, Bindable) else rule


def wire_message(rule: GossipRule, state: State) -> list[torch.Tensor]:
    """What the network carries of the state's message: its encoding, or the message."""
    return rule.encode(state) if isinstance(rule, Encoded) else rule.message(state)


def received_message(rule: GossipRule, wire: Sequence[torch.Tensor],
                     shapes: Sequence[tuple[int, ...]]) -> list[torch.Tensor]:
    """A message from what the network carried of it (`wire_message`)."""
    return rule.decode(wire, shapes) if isinstance(rule, Encoded) else list(wire)


class Translatable(Protocol):
    """A rule whose state can move with its published point (consensus control)."""

    def translate(self, state: State, delta: Parameters) -> State:
        """The state moved by `delta`, the displacement a gossip-only exchange gave the
        published point: its published point moves by `delta`."""
        ...


def add(left: Parameters, right: Parameters, scale: float = 1.0) -> list[torch.Tensor]:
    """left + scale × right, tensor by tensor (one pass over the tensors)."""
    return [torch.add(a, b, alpha=scale) for a, b in zip(left, right, strict=True)]


def sgd_step(parameters: Parameters, gradient: Parameters, lr: float) -> list[torch.Tensor]:
    """A plain SGD step x − α g (one pass over the tensors)."""
    return [torch.sub(p, g, alpha=lr) for p, g in zip(parameters, gradient, strict=True)]


def scale_rows(weight: Weight, tensors: Parameters) -> list[torch.Tensor]:
    """Each agent's tensors times its own weight (a float, or one weight per stacked agent)."""
    if isinstance(weight, torch.Tensor):
        return [weight.view(-1, *[1] * (t.dim() - 1)).to(t.dtype) * t for t in tensors]
    return [weight * t for t in tensors]


def per_agent(value: float, loss: Any) -> torch.Tensor:
    """`value` once per agent, as a state part can hold it: a 0-dim tensor for one agent, one
    entry per agent for a stack (`loss` is what the gradient oracle returned with the
    gradients: a float, or one loss per stacked agent)."""
    if isinstance(loss, torch.Tensor) and loss.dim() == 1:
        return torch.full_like(loss, value, dtype=torch.float64)
    return torch.tensor(value, dtype=torch.float64)


def as_weight(values: torch.Tensor) -> Weight:
    """A `per_agent` value as `scale_rows` takes it: a float for one agent, the vector for a
    stack."""
    return float(values) if values.dim() == 0 else values


def gradient_steps(rule: GossipRule, server_round: int, local_steps: int) -> range:
    """The minibatches round `server_round` takes its gradients on (see the module
    docstring): (k − 1)·τ .. k·τ − 1, or k for a rule that is `ahead`."""
    if rule.ahead:
        return range(server_round, server_round + 1)
    first = (server_round - 1) * local_steps
    return range(first, first + local_steps)


def gossip_round(rule: GossipRule, state: State, mixed: Parameters, own_weight: Weight,
                 gradient_at: GradientAt, lr: float, steps: range) -> tuple[State, list[Any]]:
    """One round: the consensus step from `mixed` = Σ_l π_jl m^l on the first of `steps`,
    then a step without mixing (Π = I: the agent's own message) on each of the others.
    Returns the new state and the losses of the steps."""
    losses = []
    for step in steps:
        if step != steps.start:
            mixed, own_weight = rule.message(state), 1.0
        state, loss = rule.advance(state, mixed, own_weight, gradient_at, lr, step)
        losses.append(loss)
    return state, losses


def keep_rows(keep: torch.Tensor, new: Parameters, old: Parameters) -> list[torch.Tensor]:
    """`new` with the rows (agents along dimension 0) marked in `keep` taken from `old`."""
    return [torch.where(keep.view(-1, *[1] * (n.dim() - 1)), o, n)
            for n, o in zip(new, old, strict=True)]


def keep_state_rows(keep: torch.Tensor, new: State, old: State) -> State:
    """Every part of a stacked state, with the agents marked in `keep` as in `old`."""
    return {part: keep_rows(keep, new[part], old[part]) for part in new}
