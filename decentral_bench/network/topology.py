"""Communication graphs and the agent interaction (mixing) matrix Π.

Agents are the nodes 0..N-1 of an undirected networkx graph. Π must satisfy
Assumption 2 of Jiang et al. (2017): (a) π_jl = 0 off the edges, (b) Π
symmetric, (c) null(I − Π) = span(1), (d) I ⪰ Π ≻ −I; with non-negative
entries and rows summing to 1 it is doubly stochastic. λ2(Π) governs consensus
(Proposition 1), λN the step-size bound. The paper's remark that λN ≥ 0 does not
follow from (d): the Metropolis ring has λN = −1/3 on every even ring; the lazy
form (I + Π)/2 (`lazy: true`) moves every eigenvalue into [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import networkx as nx
import numpy as np

from decentral_bench.network.families import (
    TopologyError,
    build_digraph,
    build_graph,
    random_graph,
    required,
)
from decentral_bench.scenario import TopologyConfig
from decentral_bench.scenario.graph import DIRECTED_KINDS

__all__ = ["Topology", "TopologyError", "build_graph", "build_topology", "check_assumption_2"]

# Tolerances of the Assumption-2 checks.
ENTRY_TOLERANCE = 1e-9       # |π_jl − π_lj|, |Σ_l π_jl − 1|, entries off the support
EIGEN_TOLERANCE = 1e-9       # λ2 < 1 − tol, λN > −1 + tol, λ1 ≤ 1 + tol
TARGET_TOLERANCE = 0.05      # |λ2 achieved − target_lambda2| for a reachable target
SNAP_TOLERANCE = 1e-12       # eigenvalues this close to an integer are reported as it


def lazy(matrix: np.ndarray) -> np.ndarray:
    """The lazy mixing matrix (I + Π) / 2: same graph, eigenvalues moved into [0, 1]."""
    return (np.eye(len(matrix)) + matrix) / 2.0


def spectrum(matrix: np.ndarray) -> np.ndarray:
    """Eigenvalues of a symmetric Π in decreasing order; those within `SNAP_TOLERANCE` of
    an integer (λ1 = 1, the complete graph's λ2 = 0) are set to it, so that rounding
    noise such as −3.7e−17 does not reach a report."""
    values = np.sort(np.linalg.eigvalsh(matrix))[::-1]
    nearest = np.round(values)
    return np.where(np.abs(values - nearest) <= SNAP_TOLERANCE, nearest, values) + 0.0


def second_eigenvalue(values: np.ndarray) -> float:
    """λ2 of a spectrum in decreasing order (0 for a single agent)."""
    return float(values[1]) if len(values) > 1 else 0.0


@dataclass(frozen=True)
class Topology:
    """A graph with its mixing matrix and the spectrum that governs consensus."""

    graph: nx.Graph
    mixing_matrix: np.ndarray
    note: str = ""
    directed: bool = False  # Π column-stochastic on a directed graph (push-sum)

    @property
    def agents(self) -> int:
        return self.graph.number_of_nodes()

    @cached_property
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of Π in decreasing order, λ1 = 1 ≥ λ2 ≥ ... ≥ λN (of a directed
        graph's asymmetric Π: their moduli, decreasing)."""
        if self.directed:
            return np.sort(np.abs(np.linalg.eigvals(self.mixing_matrix)))[::-1]
        return spectrum(self.mixing_matrix)

    @property
    def lambda2(self) -> float:
        """Second largest eigenvalue of Π (0 for a single agent)."""
        return second_eigenvalue(self.eigenvalues)

    @property
    def lambda_n(self) -> float:
        """Smallest eigenvalue of Π."""
        return float(self.eigenvalues[-1])

    def summary(self) -> dict[str, float | int | str]:
        """Size and spectrum: what `decentral-bench topology` prints and MLflow records."""
        degrees = [degree for _, degree in self.graph.degree()]
        return {
            "agents": self.agents,
            "edges": self.graph.number_of_edges(),
            "degree_min": min(degrees),
            "degree_max": max(degrees),
            "degree_mean": float(np.mean(degrees)),
            "lambda2": self.lambda2,
            "lambda_n": self.lambda_n,
            "spectral_gap": 1.0 - self.lambda2,
            "step_size_factor": 1.0 - self.lambda_n,
            **({"note": self.note} if self.note else {}),
        }


# ---------------------------------------------------------------- mixing rules


def metropolis_weights(graph: nx.Graph) -> np.ndarray:
    """Metropolis–Hastings: π_jl = 1 / (1 + max(d_j, d_l)) on edges, the rest on the diagonal.

    Symmetric and doubly stochastic on any graph; 1/N on a complete graph, 1/3 on a ring.
    """
    n = graph.number_of_nodes()
    matrix = np.zeros((n, n))
    degree = dict(graph.degree())
    for j, l in graph.edges():
        if j != l:
            matrix[j, l] = matrix[l, j] = 1.0 / (1.0 + max(degree[j], degree[l]))
    matrix[np.diag_indices(n)] = 1.0 - matrix.sum(axis=1)
    return matrix


def max_degree_weights(graph: nx.Graph) -> np.ndarray:
    """π_jl = 1 / (1 + d_max) on edges, the rest on the diagonal."""
    n = graph.number_of_nodes()
    weight = 1.0 / (1.0 + max((d for _, d in graph.degree()), default=0))
    matrix = nx.to_numpy_array(graph, nodelist=range(n), weight=None) * weight
    np.fill_diagonal(matrix, 0.0)
    matrix[np.diag_indices(n)] = 1.0 - matrix.sum(axis=1)
    return matrix


def uniform_weights(graph: nx.Graph) -> np.ndarray:
    """π_jl = 1 / |Nb(j)| on Nb(j) (self included): symmetric only on regular graphs."""
    degrees = {d for _, d in graph.degree()}
    if len(degrees) > 1:
        raise TopologyError(
            f"mixing 'uniform' (1/|Nb(j)|) is not symmetric on this graph: degrees range "
            f"{min(degrees)}..{max(degrees)}; use mixing: metropolis")
    n = graph.number_of_nodes()
    adjacency = nx.to_numpy_array(graph, nodelist=range(n), weight=None)
    np.fill_diagonal(adjacency, 1.0)
    return adjacency / adjacency.sum(axis=1, keepdims=True)


def read_matrix(path: str) -> np.ndarray:
    """A user-supplied Π from a .npy or .csv file."""
    if path.endswith(".npy"):
        return np.load(path).astype(float)
    return np.loadtxt(path, delimiter=",", ndmin=2).astype(float)


def mixing_matrix(config: TopologyConfig, graph: nx.Graph) -> np.ndarray:
    """Π for `graph` under the scenario's mixing rule (lazy: (I + Π) / 2)."""
    if config.mixing == "metropolis":
        matrix = metropolis_weights(graph)
    elif config.mixing == "max_degree":
        matrix = max_degree_weights(graph)
    elif config.mixing == "uniform":
        matrix = uniform_weights(graph)
    else:
        matrix = read_matrix(required(config.matrix_file, "matrix_file"))
    return lazy(matrix) if config.lazy else matrix


# ---------------------------------------------------------------- Assumption 2


def check_assumption_2(matrix: np.ndarray, graph: nx.Graph) -> None:
    """Raise `TopologyError` naming the first condition of Assumption 2 that Π breaks.

    Tolerances: entries and sums to `ENTRY_TOLERANCE`, eigenvalues to `EIGEN_TOLERANCE`.
    """
    n = graph.number_of_nodes()
    if matrix.shape != (n, n):
        raise TopologyError(f"the mixing matrix is {matrix.shape[0]}×{matrix.shape[1]} "
                            f"but the graph has {n} agents")
    if not np.all(np.isfinite(matrix)):
        raise TopologyError("the mixing matrix has non-finite entries")
    allowed = nx.to_numpy_array(graph, nodelist=range(n), weight=None) > 0
    np.fill_diagonal(allowed, True)
    outside = np.argwhere(~allowed & (np.abs(matrix) > ENTRY_TOLERANCE))
    if len(outside):
        entries = ", ".join(f"π[{j},{l}]={matrix[j, l]:.3g}" for j, l in outside[:5])
        raise TopologyError(f"Assumption 2(a) violated: non-zero weight between agents that "
                            f"share no edge: {entries}")
    negative = np.argwhere(matrix < -ENTRY_TOLERANCE)
    if len(negative):
        entries = ", ".join(f"π[{j},{l}]={matrix[j, l]:.3g}" for j, l in negative[:5])
        raise TopologyError(f"Π has negative weights ({entries}): a mixing matrix is doubly "
                            "stochastic, every entry non-negative")
    asymmetric = np.argwhere(np.abs(matrix - matrix.T) > ENTRY_TOLERANCE)
    if len(asymmetric):
        j, l = asymmetric[0]
        raise TopologyError(f"Assumption 2(b) violated: Π is not symmetric: π[{j},{l}]="
                            f"{matrix[j, l]:.6g} but π[{l},{j}]={matrix[l, j]:.6g}")
    sums = matrix.sum(axis=1)
    bad_rows = np.flatnonzero(np.abs(sums - 1.0) > ENTRY_TOLERANCE)
    if len(bad_rows):
        rows = ", ".join(f"row {j} sums to {sums[j]:.6g}" for j in bad_rows[:5])
        raise TopologyError(f"Π is not stochastic (rows must sum to 1): {rows}")
    values = spectrum(matrix)
    if values[0] > 1.0 + EIGEN_TOLERANCE:
        raise TopologyError(f"Assumption 2(d) violated: I ⪰ Π fails, λ1 = {values[0]:.6g} > 1")
    if n > 1 and values[1] >= 1.0 - EIGEN_TOLERANCE:
        raise TopologyError(f"Assumption 2(c) violated: null(I − Π) is larger than span(1): "
                            f"λ2 = {values[1]:.6g} (the graph or Π is disconnected)")
    if values[-1] <= -1.0 + EIGEN_TOLERANCE:
        raise TopologyError(f"Assumption 2(d) violated: Π ≻ −I fails, λN = {values[-1]:.6g}; "
                            "use lazy: true")


# ---------------------------------------------------------------- building


def _checked(config: TopologyConfig, graph: nx.Graph, note: str = "") -> Topology:
    if graph.number_of_nodes() > 1 and not nx.is_connected(graph):
        parts = nx.number_connected_components(graph)
        raise TopologyError(f"the {config.kind} graph on {config.agents} agents is disconnected "
                            f"({parts} components); the paper assumes a connected graph")
    matrix = mixing_matrix(config, graph)
    check_assumption_2(matrix, graph)
    if config.mixing == "matrix":  # edges a user's Π gives no weight carry no messages
        graph = support_graph(matrix)
    return Topology(graph=graph, mixing_matrix=matrix, note=note)


def support_graph(matrix: np.ndarray) -> nx.Graph:
    """The graph of the links Π uses: j–l for every π_jl ≠ 0, j ≠ l."""
    graph = nx.empty_graph(len(matrix))
    graph.add_edges_from((int(j), int(l)) for j, l in np.argwhere(np.triu(matrix, 1) != 0))
    return graph


def _family_candidates(config: TopologyConfig) -> list[tuple[str, dict]]:
    n = config.agents
    if config.kind == "erdos_renyi":
        low = min(1.0, 0.5 * math.log(max(n, 2)) / max(n, 2)) if n > 2 else 1.0
        return [(f"p={p:.4g}", {"p": float(p)}) for p in np.linspace(low, 1.0, 60)]
    if config.kind == "random_regular":
        return [(f"degree={d}", {"degree": d}) for d in range(2, n) if (n * d) % 2 == 0]
    return [(f"k={k}", {"k": k}) for k in range(2, n, 2)]


def _closest_to_target(config: TopologyConfig, seed: int) -> Topology:
    """Within the family's free parameter, the connected graph whose λ2 is nearest the target."""
    target = required(config.target_lambda2, "target_lambda2")
    best: tuple[float, Topology] | None = None
    reached: list[float] = []
    for label, parameter in _family_candidates(config):
        try:
            graph = random_graph(config, seed, **parameter)
            topology = _checked(config, graph, note=f"{label} for target λ2 = {target:g}")
        except TopologyError:
            continue
        reached.append(topology.lambda2)
        if best is None or abs(topology.lambda2 - target) < best[0]:
            best = (abs(topology.lambda2 - target), topology)
    if best is None or best[0] > TARGET_TOLERANCE:
        span = f"{min(reached):.3f}..{max(reached):.3f}" if reached else "nothing"
        raise TopologyError(
            f"target_lambda2 = {target:g} is out of reach for {config.kind} on {config.agents} "
            f"agents with mixing '{config.mixing}': λ2 spans {span} "
            f"(tolerance {TARGET_TOLERANCE})")
    return best[1]


def column_stochastic(graph: nx.DiGraph) -> np.ndarray:
    """Push-sum's Π of a directed graph: sender j splits its mass equally over itself and
    its out-neighbours, p_lj = 1 / (d_j^out + 1) (row l = what l receives); every column
    sums to 1."""
    n = graph.number_of_nodes()
    matrix = np.eye(n)
    for j in range(n):
        share = 1.0 / (graph.out_degree(j) + 1)
        matrix[j, j] = share
        for l in graph.successors(j):
            matrix[l, j] = share
    return matrix


def directed_topology(config: TopologyConfig) -> Topology:
    """A directed family: its links (as an undirected graph, for the clock and the plots)
    and its column-stochastic Π."""
    graph = build_digraph(config)
    return Topology(graph=nx.Graph(graph), mixing_matrix=column_stochastic(graph),
                    note="directed: Π column-stochastic (push-sum)", directed=True)


def build_topology(config: TopologyConfig, seed: int = 0) -> Topology:
    """The graph and checked mixing matrix a scenario's `topology` section describes.

    Random families are drawn with `config.seed`, else `seed` (the training seed).
    """
    if config.kind in DIRECTED_KINDS:
        return directed_topology(config)
    seed = config.seed if config.seed is not None else seed
    if config.target_lambda2 is not None:
        return _closest_to_target(config, seed)
    return _checked(config, build_graph(config, seed))


def single_agent() -> Topology:
    """The one-node graph with Π = [1]: centralized SGD as CDSGD."""
    graph = nx.Graph()
    graph.add_node(0)
    return Topology(graph=graph, mixing_matrix=np.ones((1, 1)))
