"""Communication graphs and the agent interaction (mixing) matrix Π.

Agents are the nodes 0..N-1 of an undirected networkx graph. Π follows
Assumption 2 of Jiang et al. (2017): π_jl = 0 off the edges, Π symmetric,
null(I − Π) = span(1) and I ⪰ Π ≻ −I, hence doubly stochastic.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from decentral_bench.scenario import TopologyConfig


@dataclass(frozen=True)
class Topology:
    """A graph with its mixing matrix and the spectrum that governs consensus."""

    graph: nx.Graph
    mixing_matrix: np.ndarray

    @property
    def agents(self) -> int:
        return self.graph.number_of_nodes()

    def neighbours(self, agent: int) -> list[int]:
        """Nb(j): the agents whose weight in row j is non-zero, j itself included."""
        return [int(other) for other in np.flatnonzero(self.mixing_matrix[agent])]

    @property
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of Π in decreasing order, λ1 = 1 ≥ λ2 ≥ ... ≥ λN."""
        return np.sort(np.linalg.eigvalsh(self.mixing_matrix))[::-1]

    @property
    def lambda2(self) -> float:
        """Second largest eigenvalue of Π (0 for a single agent)."""
        values = self.eigenvalues
        return float(values[1]) if len(values) > 1 else 0.0

    @property
    def lambda_n(self) -> float:
        """Smallest eigenvalue of Π."""
        return float(self.eigenvalues[-1])


def build_graph(config: TopologyConfig) -> nx.Graph:
    """The undirected graph named by `config.kind` on `config.agents` nodes."""
    n = config.agents
    if config.kind == "complete":
        return nx.complete_graph(n)
    if config.kind == "ring":
        return nx.cycle_graph(n)
    raise ValueError(f"unknown topology kind {config.kind!r}")


def metropolis_weights(graph: nx.Graph) -> np.ndarray:
    """Metropolis–Hastings weights: π_jl = 1 / (1 + max(d_j, d_l)) on edges.

    The diagonal takes the rest of each row, so Π is symmetric and doubly
    stochastic. On a complete graph this is the uniform 1/N, on a ring 1/3.
    """
    n = graph.number_of_nodes()
    matrix = np.zeros((n, n))
    degree = dict(graph.degree())
    for j, l in graph.edges():
        if j == l:
            continue
        weight = 1.0 / (1.0 + max(degree[j], degree[l]))
        matrix[j, l] = matrix[l, j] = weight
    matrix[np.diag_indices(n)] = 1.0 - matrix.sum(axis=1)
    return matrix


def build_topology(config: TopologyConfig) -> Topology:
    """The graph and mixing matrix a scenario's `topology` section describes."""
    graph = build_graph(config)
    if not nx.is_connected(graph):
        raise ValueError(f"the {config.kind} graph on {config.agents} agents is not connected")
    return Topology(graph=graph, mixing_matrix=metropolis_weights(graph))


def single_agent() -> Topology:
    """The one-node graph with Π = [1]: centralized SGD as CDSGD."""
    graph = nx.Graph()
    graph.add_node(0)
    return Topology(graph=graph, mixing_matrix=np.ones((1, 1)))
