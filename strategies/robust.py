"""Robust aggregation for the gossip methods: what replaces the mixing sum Σ_l π_jl m^l when
some neighbours may lie.

Agent j aggregates the messages of its neighbourhood Nb(j) (j's own included). Every rule
here works on a padded stack of neighbourhoods (`Neighbourhoods`): one row per agent, one
slot per member of its neighbourhood (sorted by agent index, as the router delivers them),
a mask marking the real slots and the slot of the agent's own message. The vectorized engine
gathers every agent's neighbourhood into such a stack; the Flower ClientApp builds a stack of
one row (`Neighbourhoods.of_one`). Distances are over the whole model: every parameter
tensor of a message, flattened together.

- `mean`: Σ_l π_jl m^l, the plain mixing step (Jiang et al. eq. 5);
- `clipped_gossip` (He, Karimireddy & Jaggi 2022, ClippedGossip):
      x_j + Σ_l π_jl CLIP(m^l − x_j, τ_j),  CLIP(v, τ) = v · min(1, τ / ||v||)
  with τ_j given, or the authors' rule: the second largest distance ||m^l − x_j|| over j's
  neighbours (the largest when it has one);
- `trimmed_mean` (BRIDGE-T, Yang & Bajwa 2019): per coordinate, drop the b largest and the
  b smallest of the neighbours' values and average the rest with the agent's own value;
  needs a degree ≥ 2b + 1;
- `median`: the coordinate-wise median over Nb(j), own value included (the mean of the two
  middle values when they are even in number), as the authors' decentralized CM;
- `krum` (Blanchard et al. 2017, as the authors' decentralized Krum with m = 1): the member
  of Nb(j) whose summed squared distance to its |Nb(j)| − b − 2 nearest other members is
  smallest; needs a degree ≥ 2b + 1.

`trimmed_mean`, `median` and `krum` weigh every member alike (Π's weights play no part);
`mean` and `clipped_gossip` use π_jl. When a round's network leaves an agent fewer
neighbours than a rule's b needs (failed links), b shrinks to what the degree allows.
Everything is pure: functions return new tensors and change none of their inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from strategies.gossip import Parameters

AggregationKind = Literal["mean", "clipped_gossip", "trimmed_mean", "median", "krum"]
SCREENS_WITH_B = ("trimmed_mean", "krum")  # the rules that tolerate b lying neighbours


@dataclass(frozen=True)
class Aggregation:
    """A robust aggregation rule and its parameters: `b`, the lying neighbours
    `trimmed_mean` and `krum` tolerate; `tau`, ClippedGossip's clipping radius (None: the
    authors' adaptive rule)."""

    kind: AggregationKind = "mean"
    b: int = 1
    tau: float | None = None

    @property
    def min_degree(self) -> int:
        """The fewest neighbours (own excluded) an agent needs under this rule."""
        return 2 * self.b + 1 if self.kind in SCREENS_WITH_B else 0


@dataclass(frozen=True)
class Neighbourhoods:
    """Neighbourhoods as a padded stack: `points[i]` is the i-th parameter of every member's
    message, (N, K, ...); `mask` (N, K) marks the real members; `weights` (N, K) holds π_jl
    (0 on padding); `own` (N,) is the slot of each agent's own message."""

    points: list[torch.Tensor]
    mask: torch.Tensor
    weights: torch.Tensor
    own: torch.Tensor

    @classmethod
    def of_one(cls, members: Sequence[Parameters], weights: Sequence[float],
               own: int) -> Neighbourhoods:
        """One agent's neighbourhood (`members[i]` with weight `weights[i]`) as a stack of
        one row."""
        device = members[0][0].device
        return cls(points=[torch.stack([m[i] for m in members]).unsqueeze(0)
                           for i in range(len(members[0]))],
                   mask=torch.ones(1, len(members), dtype=torch.bool, device=device),
                   weights=torch.tensor([list(weights)], dtype=torch.float32, device=device),
                   own=torch.tensor([own], device=device))

    @property
    def slots(self) -> int:
        return self.mask.shape[1]

    def own_points(self) -> list[torch.Tensor]:
        """x_j, each agent's own message, (N, ...) per parameter."""
        rows = torch.arange(len(self.own), device=self.own.device)
        return [p[rows, self.own] for p in self.points]

    def neighbours(self) -> torch.Tensor:
        """(N, K): the real members other than the agent itself."""
        slots = torch.arange(self.slots, device=self.mask.device)
        return self.mask & (slots.unsqueeze(0) != self.own.unsqueeze(1))


def _per_slot(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(N, K) values shaped to broadcast over (N, K, ...)."""
    return values.view(*values.shape, *[1] * (like.dim() - 2))


def _per_row(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(N,) values shaped to broadcast over (N, ...)."""
    return values.view(-1, *[1] * (like.dim() - 1))


def _weighted_sum(points: Sequence[torch.Tensor], weights: torch.Tensor,
                  mask: torch.Tensor) -> list[torch.Tensor]:
    """Σ_k w_jk p_jk over the masked slots (padding never enters, whatever it holds)."""
    return [torch.where(_per_slot(mask, p), _per_slot(weights, p).to(p.dtype) * p,
                        torch.zeros((), dtype=p.dtype, device=p.device)).sum(dim=1)
            for p in points]


def squared_distances(points: Sequence[torch.Tensor], centre: Sequence[torch.Tensor],
                      ) -> torch.Tensor:
    """(N, K): ||p_jk − c_j||² over the whole model."""
    total = torch.zeros(points[0].shape[:2], dtype=torch.float64, device=points[0].device)
    for p, c in zip(points, centre, strict=True):
        difference = (p - c.unsqueeze(1)).reshape(*p.shape[:2], -1)
        total += (difference * difference).sum(dim=2).to(torch.float64)
    return total


def mean(neighbourhoods: Neighbourhoods) -> list[torch.Tensor]:
    """Σ_{l∈Nb(j)} π_jl m^l: the plain mixing step."""
    return _weighted_sum(neighbourhoods.points, neighbourhoods.weights, neighbourhoods.mask)


def clipping_radius(distances: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """The authors' adaptive τ_j (N,): the second largest of j's neighbours' distances, the
    largest when it has one neighbour, 0 when it has none."""
    ranked = torch.where(neighbours, distances, torch.full_like(distances, -1.0))
    ranked = ranked.sort(dim=1, descending=True).values
    degree = neighbours.sum(dim=1)
    pick = torch.clamp(degree - 1, min=0, max=1)  # 0: the largest, 1: the second largest
    chosen = ranked.gather(1, pick.unsqueeze(1)).squeeze(1)
    return torch.where(degree > 0, chosen, torch.zeros_like(chosen))


def clipped_gossip(neighbourhoods: Neighbourhoods, tau: float | None) -> list[torch.Tensor]:
    """ClippedGossip: x_j + Σ_l π_jl CLIP(m^l − x_j, τ_j), CLIP(v, τ) = v · min(1, τ/||v||)."""
    own = neighbourhoods.own_points()
    distances = squared_distances(neighbourhoods.points, own).sqrt()
    radius = clipping_radius(distances, neighbourhoods.neighbours()) if tau is None \
        else torch.full(distances.shape[:1], tau, dtype=distances.dtype,
                        device=distances.device)
    radius = radius.unsqueeze(1)
    scale = torch.where(distances > radius, radius / distances.clamp(min=1e-300),
                        torch.ones_like(distances))
    weights = neighbourhoods.weights.to(torch.float64) * scale
    differences = [p - x.unsqueeze(1) for p, x in zip(neighbourhoods.points, own, strict=True)]
    steps = _weighted_sum(differences, weights, neighbourhoods.mask)
    return [x + step for x, step in zip(own, steps, strict=True)]


def trimmed_mean(neighbourhoods: Neighbourhoods, b: int) -> list[torch.Tensor]:
    """BRIDGE-T: per coordinate, the neighbours' values without their b largest and b
    smallest, averaged with the agent's own value: (x_j + Σ kept) / (d_j − 2b + 1)."""
    neighbours = neighbourhoods.neighbours()
    degree = neighbours.sum(dim=1)
    trimmed = torch.clamp(torch.minimum(torch.full_like(degree, b), (degree - 1) // 2), min=0)
    slots = torch.arange(neighbourhoods.slots, device=degree.device).unsqueeze(0)
    kept = (slots >= trimmed.unsqueeze(1)) & (slots < (degree - trimmed).unsqueeze(1))
    count = (degree - 2 * trimmed + 1)
    result = []
    for p, x in zip(neighbourhoods.points, neighbourhoods.own_points(), strict=True):
        ranked = torch.where(_per_slot(neighbours, p), p,
                             torch.full((), torch.inf, dtype=p.dtype, device=p.device))
        ranked = ranked.sort(dim=1).values
        total = torch.where(_per_slot(kept, ranked), ranked,
                            torch.zeros((), dtype=p.dtype, device=p.device)).sum(dim=1)
        result.append((x + total) / _per_row(count, x).to(p.dtype))
    return result


def median(neighbourhoods: Neighbourhoods) -> list[torch.Tensor]:
    """The coordinate-wise median over Nb(j), own value included (the mean of the two
    middle values when they are even in number)."""
    members = neighbourhoods.mask.sum(dim=1)
    lower, upper = (members - 1) // 2, members // 2
    result = []
    for p in neighbourhoods.points:
        ranked = torch.where(_per_slot(neighbourhoods.mask, p), p,
                             torch.full((), torch.inf, dtype=p.dtype, device=p.device))
        ranked = ranked.sort(dim=1).values

        def at(slot: torch.Tensor, ranked: torch.Tensor = ranked) -> torch.Tensor:
            index = _per_row(slot, ranked[:, 0]).unsqueeze(1).expand(
                -1, 1, *ranked.shape[2:])
            return ranked.gather(1, index).squeeze(1)

        result.append((at(lower) + at(upper)) / 2)
    return result


def krum_scores(neighbourhoods: Neighbourhoods, b: int) -> torch.Tensor:
    """(N, K): each member's Krum score, the sum of its squared distances to its
    |Nb(j)| − b − 2 nearest other members (at least 1); inf on padding."""
    mask = neighbourhoods.mask
    members = mask.sum(dim=1)
    slots = neighbourhoods.slots
    pairs = torch.stack([squared_distances(
        neighbourhoods.points, [p[:, slot] for p in neighbourhoods.points])
        for slot in range(slots)], dim=1)  # pairs[j, a, c] = ||m_a − m_c||²
    index = torch.arange(slots, device=mask.device)
    valid = mask.unsqueeze(2) & mask.unsqueeze(1) & (index.unsqueeze(1) != index.unsqueeze(0))
    nearest = torch.where(valid, pairs, torch.full_like(pairs, torch.inf)).sort(dim=2).values
    counted = torch.clamp(members - b - 2, min=1).view(-1, 1, 1)
    taken = index.view(1, 1, -1) < counted
    scores = torch.where(taken & torch.isfinite(nearest), nearest,
                         torch.zeros_like(nearest)).sum(dim=2)
    return torch.where(mask, scores, torch.full_like(scores, torch.inf))


def krum(neighbourhoods: Neighbourhoods, b: int) -> list[torch.Tensor]:
    """The member of Nb(j) with the smallest Krum score (the lowest slot on a tie; the
    agent's own message when it is alone)."""
    chosen = krum_scores(neighbourhoods, b).argmin(dim=1)
    chosen = torch.where(neighbourhoods.mask.sum(dim=1) > 1, chosen, neighbourhoods.own)
    rows = torch.arange(len(chosen), device=chosen.device)
    return [p[rows, chosen] for p in neighbourhoods.points]


def aggregate(aggregation: Aggregation, neighbourhoods: Neighbourhoods) -> list[torch.Tensor]:
    """Every agent's aggregate of its neighbourhood under `aggregation`, (N, ...)."""
    if aggregation.kind == "mean":
        return mean(neighbourhoods)
    if aggregation.kind == "clipped_gossip":
        return clipped_gossip(neighbourhoods, aggregation.tau)
    if aggregation.kind == "trimmed_mean":
        return trimmed_mean(neighbourhoods, aggregation.b)
    if aggregation.kind == "median":
        return median(neighbourhoods)
    return krum(neighbourhoods, aggregation.b)
