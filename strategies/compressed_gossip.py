"""Naive compressed gossip: a gossip method whose agents publish compressed points.

Agent j publishes Q(p_j) instead of its point p_j (CDSGD's x_j, CDMSGD-Nesterov's look-ahead
y_j) and mixes its neighbours' compressed points with its own exact one:

    mixed_j = p_j + Σ_{l≠j} π_jl (Q(p_l) − p_j) = Σ_l π_jl Q(p_l) + π_jj (p_j − Q(p_j))

(Π's rows sum to one), then takes its method's step from `mixed_j`. The compression error
enters every round and is never corrected, so the agents stop agreeing at a distance set
by Q: the baseline that shows why CHOCO-SGD (`strategies.choco`) gossips compressed
*differences* against public copies instead.

Every message is compressed, the first one too: the agents start by publishing Q(x_0)
(`exchanges_at_start`). The draw after minibatch step s is the (s + 1)-th, the start's the
0-th.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from strategies.compression import AgentCompressor, Shapes
from strategies.gossip import (
    Agents,
    GossipRule,
    GradientAt,
    Parameters,
    State,
    Weight,
    add,
    scale_rows,
)

COMPRESSED, HEADER, EXACT = "compressed", "header", "exact"  # the wrapper's own state parts


@dataclass(frozen=True)
class CompressedGossip:
    """`inner`'s rule with compressed messages (see the module docstring). State: the
    inner rule's parts, the published Q(p) and its compressor header."""

    inner: GossipRule
    compression: AgentCompressor

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def ahead(self) -> bool:
        return self.inner.ahead

    @property
    def exchanges_at_start(self) -> bool:
        return True

    def bind(self, seed: int, agents: Agents) -> CompressedGossip:
        return replace(self, compression=self.compression.bind(seed, agents))

    def _inner(self, state: State) -> State:
        return {part: tensors for part, tensors in state.items()
                if part not in (COMPRESSED, HEADER)}

    def _published(self, inner: State, draw: int) -> State:
        compressed, header = self.compression.compress(self.inner.message(inner), draw)
        return {**inner, COMPRESSED: compressed, HEADER: header}

    def start(self, x0: list[torch.Tensor], gradient_at: GradientAt, lr: float) -> State:
        return self._published(self.inner.start(x0, gradient_at, lr), 0)

    def message(self, state: State) -> list[torch.Tensor]:
        return state[COMPRESSED]

    def model(self, state: State) -> list[torch.Tensor]:
        return self.inner.model(self._inner(state))

    def advance(self, state: State, mixed: Parameters, own_weight: Weight,
                gradient_at: GradientAt, lr: float, step: int) -> tuple[State, Any]:
        inner = self._inner(state)
        own = self.inner.message(inner)
        error = [p - q for p, q in zip(own, state[COMPRESSED], strict=True)]
        corrected = add(mixed, scale_rows(own_weight, error))  # j's own point exact
        inner, loss = self.inner.advance(inner, corrected, own_weight, gradient_at, lr, step)
        return self._published(inner, step + 1), loss

    def kept(self, state: State) -> State:
        """The inner rule's keep and the exact point p_j (the router brings back Q(p_j))."""
        inner = self._inner(state)
        return {**self.inner.kept(inner), EXACT: self.inner.message(inner)}

    def restore(self, own_message: list[torch.Tensor], kept: State) -> State:
        inner_kept = {part: tensors for part, tensors in kept.items() if part != EXACT}
        return {**self.inner.restore(kept[EXACT], inner_kept), COMPRESSED: own_message}

    def encode(self, state: State) -> list[torch.Tensor]:
        return self.compression.encode(state[COMPRESSED], state[HEADER])

    def decode(self, wire: Sequence[torch.Tensor], shapes: Shapes) -> list[torch.Tensor]:
        return self.compression.decode(wire, shapes)
