"""Consensus control (Kong et al., ICML 2021): extra gossip where the consensus distance
matters, none where it does not.

A controlled round of a gossip method is

    x_{k+1} = Π_k^{m_k} (Π_k x_k − α_k g(x_k))

the usual step, then m_k gossip-only exchanges over the round's network, which
also mix the fresh gradient terms. An exchange replaces each agent's published
point p^j by Σ_l π_jl p^l and moves the rest of its state by the same
displacement (`UpdateRule.translate`), so momentum x_k − x_{k−1} is unchanged
and, Π being doubly stochastic, the average x̄ is too.

- `fixed`: m_k = gossip_steps;
- `adaptive`: exchanges until Ξ² ≤ target (target_ratio × Ξ² before control, or an
  absolute target) or max_gossip_steps;
- `exact`: one all-reduce: every alive agent gets x̄ (Ξ² = 0).

Control acts only in the chosen step-size phases. The adaptive controller reads
the exact Ξ² of the agents' points after every exchange: an oracle control
plane, as in Kong et al.'s experiments, and the one place in the project where
a measurement steers training (DESIGN.md, decision 5).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal

import numpy as np

Mode = Literal["fixed", "adaptive", "exact"]
DEFAULT_MAX_GOSSIP_STEPS = 50


@dataclass(frozen=True)
class ConsensusControl:
    """When and how much a method gossips beyond its training exchange."""

    mode: Mode
    gossip_steps: int = 0
    target_ratio: float | None = None
    target: float | None = None
    max_gossip_steps: int = DEFAULT_MAX_GOSSIP_STEPS
    phases: frozenset[int] | None = None  # None: every phase

    def acts_in(self, phase: int) -> bool:
        return self.phases is None or phase in self.phases

    def round_target(self, before: float) -> float:
        """The Ξ² an adaptive round must reach, given Ξ² before control."""
        return self.target if self.target is not None else (self.target_ratio or 0.0) * before


@dataclass(frozen=True)
class ControlOutcome:
    """What control did in one round."""

    phase: int
    steps: int            # gossip-only exchanges (an all-reduce counts as one)
    before: float         # Ξ² after the training step, before control
    after: float          # Ξ² after control
    target: float | None  # the adaptive round's target
    capped: bool = False  # adaptive: max_gossip_steps reached before the target
    exact: bool = False   # the exchange was an all-reduce


# One exchange over the round's network (or, exact, an all-reduce); returns Ξ² after it.
Exchange = Callable[[bool], float]


def control_round(control: ConsensusControl | None, phase: int, before: float,
                  exchange: Exchange) -> ControlOutcome:
    """Run a round's control: as many exchanges as the mode asks, each through `exchange`."""
    if control is None or not control.acts_in(phase):
        return ControlOutcome(phase=phase, steps=0, before=before, after=before, target=None)
    if control.mode == "exact":
        return ControlOutcome(phase=phase, steps=1, before=before, after=exchange(True),
                              target=None, exact=True)
    after, steps = before, 0
    if control.mode == "fixed":
        for _ in range(control.gossip_steps):
            after = exchange(False)
        return ControlOutcome(phase=phase, steps=control.gossip_steps, before=before,
                              after=after, target=None)
    target = control.round_target(before)
    while after > target and steps < control.max_gossip_steps:
        after = exchange(False)
        steps += 1
    return ControlOutcome(phase=phase, steps=steps, before=before, after=after, target=target,
                          capped=after > target)


def averaging_matrix(agents: int, alive: Collection[int]) -> np.ndarray:
    """The all-reduce as a mixing matrix: 1/n between the n alive agents, the others alone."""
    matrix = np.eye(agents)
    members = sorted(alive)
    matrix[np.ix_(members, members)] = 1.0 / len(members)
    return matrix
