"""Every agent's neighbourhood in Π_k as a padded stack, for robust aggregation and attacks.

Agent j's slots hold the messages of Nb_k(j) in the order the router delivers them (sorted
by agent index, j's own among them), padded to the largest neighbourhood; its own slot holds
its honest message (an attacker mixes its own honest message, not what it publishes), the
others what its neighbours published. An attacker's view is its honest neighbours only.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import torch

from strategies.neighbourhood import neighbourhood
from strategies.robust import Neighbourhoods


class Gathering:
    """The neighbourhoods of a round's Π (N × N) as index tensors on `device`, its weights
    in `dtype`."""

    def __init__(self, matrix: np.ndarray, attackers: Collection[int],
                 device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        agents = len(matrix)
        rows = [neighbourhood(matrix, agent) for agent in range(agents)]
        slots = max(len(row) for row in rows)
        index = np.array([row + [agent] * (slots - len(row)) for agent, row in enumerate(rows)])
        mask = np.array([[slot < len(row) for slot in range(slots)] for row in rows])
        weights = np.where(mask, np.take_along_axis(matrix, index, axis=1), 0.0)
        self.index = torch.as_tensor(index, device=device)
        self.mask = torch.as_tensor(mask, device=device)
        self.weights = torch.as_tensor(weights, dtype=dtype, device=device)
        self.own = torch.as_tensor([row.index(agent) for agent, row in enumerate(rows)],
                                   device=device)
        lying = np.zeros(agents, dtype=bool)
        lying[sorted(attackers)] = True
        self.lying = torch.as_tensor(lying, device=device)

    def neighbourhoods(self, published: Sequence[torch.Tensor],
                       honest: Sequence[torch.Tensor]) -> Neighbourhoods:
        """Every agent's neighbourhood: its neighbours' published messages, its own honest
        message in its own slot."""
        rows = torch.arange(len(self.own), device=self.own.device)
        points = []
        for p, h in zip(published, honest, strict=True):
            gathered = p[self.index]
            gathered[rows, self.own] = h
            points.append(gathered)
        return Neighbourhoods(points, self.mask, self.weights, self.own)

    def attackers_view(self, attackers: Sequence[int], published: Sequence[torch.Tensor],
                       ) -> tuple[Neighbourhoods, torch.Tensor]:
        """What each of `attackers` sees: its honest neighbours' published messages (the
        mask keeps only them) with its row of Π, and Σ_{a∈Nb(b)∩A} π_ba."""
        rows = torch.as_tensor(list(attackers), device=self.index.device)
        index, mask, weights = self.index[rows], self.mask[rows], self.weights[rows]
        lying = self.lying[index] & mask
        honest = mask & ~lying
        view = Neighbourhoods([p[index] for p in published], honest, weights, self.own[rows])
        attackers_weight = torch.where(lying, weights, torch.zeros_like(weights)).sum(dim=1)
        return view, attackers_weight
