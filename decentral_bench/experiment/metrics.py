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
    """Ξ² = (1/n) Σ_i ||x̄ − x_i||² (Kong et al. 2021), over all parameters.

    Layer by layer: x̄ is accumulated row by row in float64 and rounded to a float32
    centre c; the distances x_i − c are exact where agents nearly agree (Sterbenz), and
    what the rounding moved c by is taken out with the identity
    (1/n) Σ ||x_i − x̄||² = (1/n) Σ ||x_i − c||² − ||x̄ − c||². Agents that agree
    exactly give exactly 0. A chunk of agents at a time keeps the scratch near
    `CHUNK_ELEMENTS` floats. (Reductions along the agents' dimension, or distances in
    float64, were 5–10 times slower on a 2-core CPU.)
    """
    if not points:
        return 0.0
    n = points[0].shape[0]
    total = 0.0
    for layer in points:
        flat = layer.reshape(n, -1)
        mean = torch.zeros(flat.shape[1], dtype=torch.float64, device=flat.device)
        for row in flat:
            mean += row
        mean /= n
        centre = mean.to(flat.dtype)
        for chunk in flat.split(max(1, CHUNK_ELEMENTS // max(1, flat.shape[1]))):
            distances = torch.linalg.vector_norm(chunk - centre, dim=1).to(torch.float64)
            total += float(distances @ distances)
        shift = mean - centre.to(torch.float64)
        total -= n * float(shift @ shift)
    return max(total / n, 0.0)


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
