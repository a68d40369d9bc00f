"""The consensus step on the stack: Π_k applied to every agent's published point at once.

    mixed_j = Σ_l π_jl p^l   for every j, i.e.  M = Π_k P

A sparse graph (a ring, a torus, most random graphs) is applied as a CSR
sparse × dense product, so a round costs O(edges × parameters); a dense one
(complete graphs, small networks) as a dense matmul. Both give the same sums
(tested); `dense` forces one or the other. `rows` gives the sums of a block of
agents only (the engine's rounds go block by block, see `chunks.py`): a block of
rows of Π, so no stack of every agent's mixed point is ever held.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

DENSE_ABOVE = 0.25  # fraction of non-zero entries of Π above which a dense matmul is used


def _csr(crow: np.ndarray, columns: np.ndarray, values: torch.Tensor, shape: tuple[int, int],
         device: torch.device) -> torch.Tensor:
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.as_tensor(crow, dtype=torch.int64, device=device),
            torch.as_tensor(columns, dtype=torch.int64, device=device),
            values.to(device), shape)


class Mixer:
    """Π (N×N) ready to multiply stacks of N points of `dtype` on `device`."""

    def __init__(self, matrix: np.ndarray, device: torch.device, dense: bool | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        agents = len(matrix)
        rows, columns = np.nonzero(matrix)  # row-major order: CSR's order
        density = len(rows) / max(1, agents * agents)
        self.agents = agents
        self.device = device
        self.dense = density > DENSE_ABOVE if dense is None else dense
        self._matrix = torch.as_tensor(matrix, dtype=dtype, device=device) \
            if self.dense else None
        self._crow = np.searchsorted(rows, np.arange(agents + 1))
        self._columns = columns
        self._values = torch.as_tensor(matrix[rows, columns], dtype=dtype)
        self._blocks: dict[tuple[int, int], torch.Tensor] = {}

    def _block(self, first: int, stop: int) -> torch.Tensor:
        """Rows first..stop − 1 of Π, as the product needs them (built once, kept)."""
        block = self._blocks.get((first, stop))
        if block is None:
            if self._matrix is not None:
                block = self._matrix[first:stop]
            else:
                start, end = self._crow[first], self._crow[stop]
                block = _csr(self._crow[first:stop + 1] - start, self._columns[start:end],
                             self._values[start:end], (stop - first, self.agents), self.device)
            self._blocks[(first, stop)] = block
        return block

    def rows(self, points: Sequence[torch.Tensor], block: slice,
             out: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """(Π P)[block] for each parameter's stack P: the mixed points of the agents of
        `block` (a slice of rows with a start and a stop), written into `out` (one
        contiguous tensor per parameter, of the block's rows) where it is given: a
        product into a buffer it is handed is a third of the time of one that allocates
        its result (2-core CPU, sparse)."""
        weights = self._block(block.start, block.stop)
        agents = points[0].shape[0]
        if out is None:
            return [(weights @ p.reshape(agents, -1)).reshape(-1, *p.shape[1:])
                    for p in points]
        for p, target in zip(points, out, strict=True):
            torch.addmm(target.view(len(target), -1), weights, p.reshape(agents, -1), beta=0,
                        out=target.view(len(target), -1))
        return list(out)

    def __call__(self, points: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Π P for each parameter's stack P (agents along dimension 0)."""
        return self.rows(points, slice(0, points[0].shape[0]))
