"""Bytes a round moves, counted the same way for every engine.

Two figures per round:

- `bytes_moved`, what the modelled network moves. Gossip: each agent sends its
  point once over every edge the round uses (both directions of each alive edge
  with π_jl^k > 0); FedAvg: the global model down to each sampled agent and its
  model back up.
- `router_bytes_moved`, what the Flower router moves to simulate it: each alive
  agent j receives the points of Nb_k(j), its own included, and replies with its
  new point. The Flower engine measures it on the wire (parameter data only,
  no headers); the vectorized engine computes it from the same Π_k.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from decentral_bench.topology import neighbourhood


def parameter_bytes(arrays: Sequence[np.ndarray]) -> int:
    """Bytes of a point's parameter data."""
    return int(sum(array.nbytes for array in arrays))


def gossip_peer_bytes(matrix: np.ndarray, alive: Collection[int], point_bytes: int) -> int:
    """Both directions of every edge between alive agents that carries weight in Π_k."""
    members = np.zeros(len(matrix), dtype=bool)
    members[list(alive)] = True
    used = (matrix != 0) & members[:, None] & members[None, :]
    np.fill_diagonal(used, False)
    return int(used.sum()) * point_bytes  # each undirected edge appears twice


def gossip_router_bytes(matrix: np.ndarray, alive: Collection[int], replies: int,
                        point_bytes: int) -> int:
    """The router's messages (Nb_k(j), j included, for each alive j) and the replies."""
    received = sum(len(neighbourhood(matrix, agent)) for agent in alive)
    return (received + replies) * point_bytes

