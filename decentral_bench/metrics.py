"""What is measured each round, as pure functions of the agents' parameters and reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def flatten(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """One agent's parameters as a single float64 vector."""
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def average_parameters(agent_arrays: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """x̄ = (1/n) Σ_i x_i, layer by layer, in float32 like the models."""
    return [np.mean(np.stack(layers).astype(np.float64), axis=0).astype(np.float32)
            for layers in zip(*agent_arrays, strict=True)]


def consensus_distance(agent_arrays: Sequence[Sequence[np.ndarray]]) -> float:
    """Ξ² = (1/n) Σ_i ||x̄ − x_i||² (Kong et al. 2021), over all parameters."""
    vectors = np.stack([flatten(arrays) for arrays in agent_arrays])
    mean = vectors.mean(axis=0)
    return float(np.mean(np.sum((vectors - mean) ** 2, axis=1)))


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
