"""What is measured each round, as pure functions of the agents' points and reports.

Points come stacked: one tensor per model parameter with the agents along the
first dimension, on whatever device the engine computed them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

# Elements of float64 scratch per chunk of agents: bounds the extra memory of Ξ².
CHUNK_ELEMENTS = 1 << 22


def average_parameters(points: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """x̄ = (1/n) Σ_i x_i, layer by layer, accumulated in float64, returned in the
    points' dtype."""
    return [layer.sum(dim=0, dtype=torch.float64).div_(layer.shape[0]).to(layer.dtype)
            for layer in points]


def consensus_distance(points: Sequence[torch.Tensor]) -> float:
    """Ξ² = (1/n) Σ_i ||x̄ − x_i||² (Kong et al. 2021), over all parameters, in float64.

    Layer by layer and a chunk of agents at a time, so the float64 scratch stays
    near `CHUNK_ELEMENTS` however many agents and parameters there are.
    """
    if not points:
        return 0.0
    n = points[0].shape[0]
    total = 0.0
    for layer in points:
        flat = layer.reshape(n, -1)
        mean = flat.sum(dim=0, dtype=torch.float64).div_(n)
        rows = max(1, CHUNK_ELEMENTS // max(1, flat.shape[1]))
        for chunk in flat.split(rows):
            difference = chunk.to(torch.float64) - mean
            total += float(torch.sum(difference * difference))
    return total / n


def agent_statistics(reports: Sequence[Mapping[str, float]],
                     keys: Sequence[str]) -> dict[str, float]:
    """Mean, std, min and max over agents of each of `keys` the reports carry."""
    summary: dict[str, float] = {}
    for key in keys:
        values = np.array([report[key] for report in reports if key in report], dtype=float)
        if len(values) == 0:
            continue
        summary[f"{key}_mean"] = float(values.mean())
        summary[f"{key}_std"] = float(values.std())
        summary[f"{key}_min"] = float(values.min())
        summary[f"{key}_max"] = float(values.max())
    return summary
