"""The consensus step on the stack: Π_k applied to every agent's published point at once.

    mixed_j = Σ_l π_jl p^l   for every j, i.e.  M = Π_k P

A sparse graph (a ring, a torus, most random graphs) is applied as a CSR
sparse × dense product, so a round costs O(edges × parameters); a dense one
(complete graphs, small networks) as a dense matmul. Both give the same sums
(tested); `dense` forces one or the other.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

DENSE_ABOVE = 0.25  # fraction of non-zero entries of Π above which a dense matmul is used


class Mixer:
    """Π (N×N) ready to multiply stacks of N points of `dtype` on `device`."""

    def __init__(self, matrix: np.ndarray, device: torch.device, dense: bool | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        agents = len(matrix)
        density = np.count_nonzero(matrix) / max(1, agents * agents)
        self.dense = density > DENSE_ABOVE if dense is None else dense
        weights = torch.as_tensor(matrix, dtype=dtype, device=device)
        if self.dense:
            self.matrix = weights
        else:
            with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
                warnings.simplefilter("ignore", UserWarning)
                self.matrix = weights.to_sparse_csr()

    def __call__(self, points: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Π P for each parameter's stack P (agents along dimension 0)."""
        agents = points[0].shape[0]
        return [(self.matrix @ p.reshape(agents, -1)).reshape(p.shape) for p in points]
