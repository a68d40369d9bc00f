"""The graph families a scenario's `topology.kind` names, on agents 0..N−1.

Random families (Erdős–Rényi, random regular, small world) are drawn with a
seed and redrawn with the next seeds until connected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import networkx as nx

from decentral_bench.scenario import TopologyConfig

T = TypeVar("T")
MAX_CONNECT_ATTEMPTS = 200   # random draws before a family is declared hopeless


class TopologyError(ValueError):
    """A graph or mixing matrix that the paper's assumptions rule out."""


def _exponential_graph(n: int) -> nx.Graph:
    """Node i linked to i + 2^m (mod n), m = 0..⌈log2 n⌉−1, made undirected."""
    graph = nx.empty_graph(n)
    hops = math.ceil(math.log2(n)) if n > 1 else 0
    for node in range(n):
        for m in range(hops):
            other = (node + 2 ** m) % n
            if other != node:
                graph.add_edge(node, other)
    return graph


def _read_edges(config: TopologyConfig) -> list[tuple[int, int]]:
    if not isinstance(config.edges, str):
        return [(edge[0], edge[1]) for edge in config.edges or ()]
    edges = []
    for number, line in enumerate(Path(config.edges).read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].replace(",", " ").split()
        if not text:
            continue
        if len(text) != 2 or not all(part.lstrip("-").isdigit() for part in text):
            raise TopologyError(f"{config.edges}, line {number}: expected two agent numbers "
                                f"'j l', got {line.strip()!r}")
        edges.append((int(text[0]), int(text[1])))
    return edges


def _edge_list_graph(config: TopologyConfig) -> nx.Graph:
    graph = nx.empty_graph(config.agents)
    for j, l in _read_edges(config):
        if not (0 <= j < config.agents and 0 <= l < config.agents):
            raise TopologyError(f"edge ({j}, {l}) names an agent outside 0..{config.agents - 1}")
        if j != l:
            graph.add_edge(j, l)
    return graph


def build_digraph(config: TopologyConfig) -> nx.DiGraph:
    """The directed graph of a directed family: j → j + 1 (`directed_ring`), j → j + 2^m
    for m = 0..⌈log₂ N⌉ − 1 (`directed_exponential`), or the listed pairs j → l."""
    n = config.agents
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n))
    if config.kind == "directed_edges":
        for j, l in _read_edges(config):
            if not (0 <= j < n and 0 <= l < n):
                raise TopologyError(f"edge ({j}, {l}) names an agent outside 0..{n - 1}")
            if j != l:
                graph.add_edge(j, l)
    else:
        hops = [1] if config.kind == "directed_ring" else \
            [2 ** m for m in range(math.ceil(math.log2(n)) if n > 1 else 0)]
        graph.add_edges_from((j, (j + hop) % n) for j in range(n) for hop in hops
                             if (j + hop) % n != j)
    if n > 1 and not nx.is_strongly_connected(graph):
        parts = nx.number_strongly_connected_components(graph)
        raise TopologyError(f"the {config.kind} graph on {n} agents is not strongly connected "
                            f"({parts} strongly connected components): push-sum needs a "
                            "directed path from every agent to every other")
    return graph


def _seeded_connected(draw: Callable[[int], nx.Graph], n: int, what: str, seed: int) -> nx.Graph:
    """Re-draw a random graph with seeds seed, seed+1, ... until it is connected."""
    for attempt in range(MAX_CONNECT_ATTEMPTS):
        graph = draw(seed + attempt)
        if nx.is_connected(graph):
            return graph
    raise TopologyError(f"{what} on {n} agents was disconnected in all {MAX_CONNECT_ATTEMPTS} "
                        f"draws; make the graph denser")


def random_graph(config: TopologyConfig, seed: int, p: float | None = None,
                  degree: int | None = None, k: int | None = None) -> nx.Graph:
    n = config.agents
    if config.kind == "erdos_renyi":
        p = required(config.p if p is None else p, "p")
        if n > 1 and p < 0.5 * math.log(n) / n:
            raise TopologyError(
                f"erdos_renyi with p = {p:g} on {n} agents is almost never connected; "
                f"use p well above ln(N)/N = {math.log(n) / n:.3g}")
        return _seeded_connected(lambda s: nx.erdos_renyi_graph(n, p, seed=s), n,
                                 f"erdos_renyi(p={p:g})", seed)
    if config.kind == "random_regular":
        degree = required(config.degree if degree is None else degree, "degree")
        if degree >= n or (n * degree) % 2:
            raise TopologyError(f"no {degree}-regular graph on {n} agents: the degree must be "
                                "below N and N × degree even")
        return _seeded_connected(lambda s: nx.random_regular_graph(degree, n, seed=s), n,
                                 f"random_regular(degree={degree})", seed)
    k = required(config.k if k is None else k, "k")
    rewiring = required(config.p, "p")
    if k >= n:
        raise TopologyError(f"small_world needs k below the number of agents ({n}), got {k}")
    return _seeded_connected(lambda s: nx.watts_strogatz_graph(n, k, rewiring, seed=s), n,
                             f"small_world(k={k}, p={rewiring:g})", seed)


def required(value: T | None, key: str) -> T:
    """A family parameter that scenario validation guarantees is set."""
    if value is None:
        raise TopologyError(f"topology.{key} is needed by this graph family")
    return value


def build_graph(config: TopologyConfig, seed: int = 0) -> nx.Graph:
    """The undirected graph named by `config.kind` on `config.agents` nodes."""
    n = config.agents
    kind = config.kind
    if kind == "complete":
        return nx.complete_graph(n)
    if kind == "ring":
        return nx.cycle_graph(n) if n > 2 else nx.path_graph(n)
    if kind == "path":
        return nx.path_graph(n)
    if kind == "star":
        return nx.star_graph(n - 1)
    if kind == "torus":
        rows, cols = config.rows, config.cols
        if rows is None:
            side = math.isqrt(n)
            if side * side != n:
                raise TopologyError(f"a torus of {n} agents needs rows and cols "
                                    "(or a square number of agents)")
            rows = cols = side
        grid = nx.grid_2d_graph(rows, cols, periodic=True)
        return nx.convert_node_labels_to_integers(nx.Graph(grid), ordering="sorted")
    if kind == "hypercube":
        return nx.convert_node_labels_to_integers(
            nx.hypercube_graph(int(math.log2(n))) if n > 1 else nx.empty_graph(1),
            ordering="sorted")
    if kind == "exponential":
        return _exponential_graph(n)
    if kind == "edges":
        return _edge_list_graph(config)
    return random_graph(config, seed)
