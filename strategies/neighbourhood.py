"""Who an agent hears from in a round: its neighbourhood Nb(j) in the mixing matrix Π_k."""

from __future__ import annotations

import numpy as np


def neighbourhood(matrix: np.ndarray, agent: int) -> list[int]:
    """Nb(j) as the paper defines it: the agents l with π_jl ≠ 0, and j itself (even where
    π_jj = 0: j takes its gradient at its own point)."""
    return sorted({agent, *(int(other) for other in np.flatnonzero(matrix[agent]))})
