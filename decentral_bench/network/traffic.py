"""Bytes a round moves, counted the same way for every engine.

Two figures per round:

- `bytes_moved`, what the modelled network moves. Gossip: each agent sends its
  point once over every edge the round uses (both directions of each alive edge
  with π_jl^k > 0); FedAvg: the global model down to each sampled agent and its
  model back up; an all-reduce (consensus control's `exact` mode) 2(N − 1)/N
  points per agent, as a ring all-reduce moves them.
- `router_bytes_moved`, what the Flower router moves to simulate it: each alive
  agent j receives the points of Nb_k(j), its own included, and replies with its
  new point (and its model beside it where that is not its message: SGP's
  z = x / w). The Flower engine measures it on the wire (parameter data only, no
  headers); the vectorized engine computes it from the same Π_k.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from strategies.consensus_control import ControlOutcome, averaging_matrix
from strategies.neighbourhood import neighbourhood


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


def all_reduce_bytes(agents: int, point_bytes: int) -> int:
    """A ring all-reduce of one point among `agents` agents: each sends and receives
    2(N − 1)/N points, 2(N − 1) points in all."""
    return 2 * (agents - 1) * point_bytes


def gossip_round_bytes(matrix: np.ndarray, alive: Collection[int], point_bytes: int,
                       control: ControlOutcome | None = None,
                       model_bytes: int = 0) -> tuple[int, int]:
    """A gossip round's (bytes_moved, router_bytes_moved): its training exchange, and the
    gossip-only exchanges or the all-reduce of consensus control, every agent in `alive`
    taking part and replying. `point_bytes` is a message's size; `model_bytes` that of the
    model a training reply also carries to the router where the message is not the model
    (gradient tracking, D², QG-DSGDm), which the modelled network does not move."""
    moved = gossip_peer_bytes(matrix, alive, point_bytes)
    routed = gossip_router_bytes(matrix, alive, len(alive), point_bytes) \
        + len(alive) * model_bytes
    if control is not None and control.exact:
        average = averaging_matrix(len(matrix), alive)
        return (moved + all_reduce_bytes(len(alive), point_bytes),
                routed + gossip_router_bytes(average, alive, len(alive), point_bytes))
    steps = 0 if control is None else control.steps
    return (1 + steps) * moved, (1 + steps) * routed
