"""Time-varying graphs (`topology.schedule`): round k's graph G_k and mixing matrix Π_k.

- `one_peer_exponential` (Ying et al. 2021): N = 2^τ agents; in round k (from 1) agent i
  sends to i + h_k (mod N), h_k = 2^((k − 1) mod τ), and keeps half its mass:

      Π_k[i, i] = ½,   Π_k[i + h_k, i] = ½    (row i = what agent i receives)

  Π_k is doubly stochastic but not symmetric (for h_k < N/2), and the product of τ
  consecutive rounds is exactly J = 11ᵀ/N: the agents average exactly in log₂ N rounds at
  one message per agent. The union of its graphs is the exponential graph (`kind:
  exponential`).
- `random_matching`: a maximal matching of the base graph's edges drawn each round (the
  edges in a seeded random order, taken greedily); matched agents average pairwise
  (½, ½), the others keep their point. On a complete graph of even N it is a perfect
  matching.
- `resample`: the random family (`erdos_renyi`, `random_regular`, `small_world`) drawn
  again every round with its own seed, Π_k by the scenario's mixing rule (decentralizepy's
  dynamic peer sampler).

Draws: round k's matching from the generator seeded (seed, 31, k); round k's graph of
`resample` with the seed drawn from (seed, 32, k). So a schedule is a pure function of the
scenario's seed and the round's number, the same on every engine.

The checks (`check`): each Π_k is doubly stochastic (non-negative, rows and columns
summing to 1) with its weights on G_k's edges; a single round need not be connected (a
matching never is), but the union of G_k over each window of B rounds (`window`: the
period τ for `one_peer_exponential`, else `topology.schedule_window`) must be. The
product Π_B ⋯ Π_1 of a window describes how far one window mixes: `product_lambda2` is
its second largest eigenvalue modulus (0 for one-peer exponential on 2^τ agents).
"""

from __future__ import annotations

import math
from functools import cached_property

import networkx as nx
import numpy as np

from decentral_bench.network.families import TopologyError, random_graph
from decentral_bench.network.topology import ENTRY_TOLERANCE, Topology, lazy, mixing_matrix
from decentral_bench.scenario import TopologyConfig

MATCHING, RESAMPLE = 31, 32


def one_peer_exponential(agents: int, server_round: int) -> np.ndarray:
    """Π_k of the one-peer exponential graph (see the module docstring)."""
    period = round(math.log2(agents))
    hop = 2 ** ((server_round - 1) % period)
    matrix = np.eye(agents) / 2.0
    senders = np.arange(agents)
    matrix[(senders + hop) % agents, senders] += 0.5
    return matrix


def random_matching(graph: nx.Graph, key: list[int]) -> nx.Graph:
    """A maximal matching of `graph`: its edges in the order drawn from `key`, greedily."""
    edges = sorted(tuple(sorted(edge)) for edge in graph.edges())
    matched = nx.empty_graph(graph.number_of_nodes())
    taken: set[int] = set()
    for index in np.random.default_rng(key).permutation(len(edges)):
        j, l = edges[index]
        if j not in taken and l not in taken:
            matched.add_edge(j, l)
            taken.update((j, l))
    return matched


def pairwise_average(matching: nx.Graph) -> np.ndarray:
    """Π of a matching: matched agents average (½, ½), the others keep their point."""
    matrix = np.eye(matching.number_of_nodes())
    for j, l in matching.edges():
        matrix[j, j] = matrix[l, l] = matrix[j, l] = matrix[l, j] = 0.5
    return matrix


def support(matrix: np.ndarray) -> nx.Graph:
    """The undirected graph of the links Π uses."""
    graph = nx.empty_graph(len(matrix))
    rows, cols = np.nonzero(matrix)
    graph.add_edges_from((int(j), int(l)) for j, l in zip(rows, cols, strict=True) if j != l)
    return graph


def second_modulus(matrix: np.ndarray) -> float:
    """The second largest |eigenvalue| of a (possibly asymmetric) stochastic matrix."""
    if len(matrix) < 2:
        return 0.0
    values = np.sort(np.abs(np.linalg.eigvals(matrix)))[::-1]
    return float(values[1]) if abs(values[1]) > 1e-12 else 0.0


def doubly_stochastic_problem(matrix: np.ndarray, graph: nx.Graph) -> str | None:
    """What keeps Π from being doubly stochastic on `graph`'s edges (None: it is)."""
    if np.any(matrix < -ENTRY_TOLERANCE):
        return "Π has negative weights"
    allowed = nx.to_numpy_array(graph, nodelist=range(len(matrix)), weight=None) > 0
    np.fill_diagonal(allowed, True)
    if np.any(~allowed & (np.abs(matrix) > ENTRY_TOLERANCE)):
        return "Π puts weight between agents that share no edge of the round's graph"
    for axis, what in ((1, "rows"), (0, "columns")):
        sums = matrix.sum(axis=axis)
        if np.any(np.abs(sums - 1.0) > ENTRY_TOLERANCE):
            return f"Π's {what} do not all sum to 1"
    return None


class GraphSchedule:
    """Round k's graph and Π_k for a scenario's `topology.schedule`."""

    def __init__(self, config: TopologyConfig, base: Topology, seed: int) -> None:
        self.config = config
        self.base = base
        self.seed = config.seed if config.seed is not None else seed
        self.agents = base.agents

    @property
    def kind(self) -> str:
        return str(self.config.schedule)

    @property
    def period(self) -> int | None:
        """τ = log₂ N for one-peer exponential; random schedules have none."""
        if self.kind == "one_peer_exponential":
            return max(1, round(math.log2(self.agents)))
        return None

    @property
    def window(self) -> int:
        """B: the rounds whose union must be connected."""
        return self.period or self.config.schedule_window or 2 * self.agents

    def round(self, server_round: int) -> tuple[nx.Graph, np.ndarray]:
        """G_k (undirected: the links used) and Π_k of round `server_round`."""
        if self.kind == "one_peer_exponential":
            matrix = one_peer_exponential(self.agents, server_round)
            graph = support(matrix)
        elif self.kind == "random_matching":
            graph = random_matching(self.base.graph, [self.seed, MATCHING, server_round])
            matrix = pairwise_average(graph)
        else:
            draw = int(np.random.default_rng([self.seed, RESAMPLE, server_round])
                       .integers(2 ** 31))
            graph = random_graph(self.config, draw)
            return graph, mixing_matrix(self.config, graph)
        return graph, lazy(matrix) if self.config.lazy else matrix

    @cached_property
    def union_edges(self) -> list[tuple[int, int]]:
        """Every edge a round may use: the base graph's, or any pair for `resample`."""
        if self.kind == "resample":
            return list(nx.complete_graph(self.agents).edges())
        return list(self.base.graph.edges())

    def product(self, first: int, rounds: int) -> np.ndarray:
        """Π_{first + rounds − 1} ⋯ Π_first."""
        product = np.eye(self.agents)
        for server_round in range(first, first + rounds):
            product = self.round(server_round)[1] @ product
        return product

    def product_lambda2(self) -> float:
        """The second largest |eigenvalue| of the first window's product."""
        return second_modulus(self.product(1, self.window))

    def check(self, rounds: int) -> None:
        """Raise `TopologyError` for a round whose Π_k is not doubly stochastic, or a window
        of B rounds (the first, and every one the run completes) whose union of graphs is
        disconnected."""
        windows = range(1, max(rounds, self.window) - self.window + 2, self.window)
        for first in windows:
            union = nx.empty_graph(self.agents)
            for server_round in range(first, first + self.window):
                graph, matrix = self.round(server_round)
                problem = doubly_stochastic_problem(matrix, graph)
                if problem is not None:
                    raise TopologyError(f"schedule {self.kind}, round {server_round}: "
                                        f"{problem}")
                union.add_edges_from(graph.edges())
            if self.agents > 1 and not nx.is_connected(union):
                last = first + self.window - 1
                raise TopologyError(
                    f"schedule {self.kind}: the union of the graphs of rounds {first}..{last} "
                    f"has {nx.number_connected_components(union)} components; the agents "
                    "never mix across them. Raise topology.schedule_window (B) or use a "
                    "denser graph")

    def summary(self) -> dict[str, float | int | str]:
        """What `decentral-bench topology` prints of the schedule."""
        return {"schedule": self.kind, "period": self.period or "none (random)",
                "window": self.window, "product_lambda2": self.product_lambda2()}
