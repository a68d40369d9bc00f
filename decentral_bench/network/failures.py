"""Failure injection: which agents and links are down in each round, and the Π_k that follows.

A crashed agent neither trains nor publishes; a dropped link carries no
message. The survivors mix over their alive neighbours with the mixing rule
recomputed on the alive graph (Metropolis–Hastings for `uniform` and
`matrix`, which need not survive the loss of edges), so each connected
component's Π_k stays symmetric and doubly stochastic (Assumption 2 per
component). Everything is deterministic under the scenario seed.

A time-varying graph (`topology.schedule`, `decentral_bench.network.schedules`) gives each
round's graph and Π_k here too, so every engine that reads the round's network follows
it; failures are not modelled on a schedule (`validate` says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import networkx as nx
import numpy as np

from decentral_bench.network.schedules import GraphSchedule, second_modulus
from decentral_bench.network.topology import (
    Topology,
    lazy,
    max_degree_weights,
    metropolis_weights,
    second_eigenvalue,
    spectrum,
)
from decentral_bench.scenario import FailuresConfig, TopologyConfig


@dataclass(frozen=True)
class RoundNetwork:
    """The network of one round: who is up, which edges carry messages, and Π_k."""

    graph: nx.Graph
    alive: frozenset[int]
    mixing_matrix: np.ndarray

    @cached_property
    def lambda2(self) -> float:
        """λ2 of Π_k (1 when the alive graph is disconnected); for an asymmetric Π_k (a
        one-peer exponential round) its second largest |eigenvalue|."""
        if not np.allclose(self.mixing_matrix, self.mixing_matrix.T):
            return second_modulus(self.mixing_matrix)
        return second_eigenvalue(spectrum(self.mixing_matrix))

    def metrics(self) -> dict[str, float]:
        alive_graph = self.graph.subgraph(self.alive)
        return {
            "alive_agents": float(len(self.alive)),
            "alive_edges": float(alive_graph.number_of_edges()),
            "components": float(nx.number_connected_components(alive_graph))
            if self.alive else 0.0,
        }


def recomputed_mixing(config: TopologyConfig, graph: nx.Graph) -> np.ndarray:
    """Π_k on a (possibly disconnected) alive graph; isolated agents keep their own point."""
    matrix = max_degree_weights(graph) if config.mixing == "max_degree" \
        else metropolis_weights(graph)
    return lazy(matrix) if config.lazy else matrix


class FailureSchedule:
    """Crashes and link drops of a scenario, round by round."""

    def __init__(self, failures: FailuresConfig, topology_config: TopologyConfig,
                 topology: Topology, seed: int, schedule: GraphSchedule | None = None) -> None:
        self.failures = failures
        self.schedule = schedule
        self.topology_config = topology_config
        self.topology = topology
        links = failures.links
        self.link_seed = links.seed if links is not None and links.seed is not None else seed

    @property
    def changes_network(self) -> bool:
        return bool(self.failures.agents) or self.failures.links is not None \
            or self.schedule is not None

    @property
    def edges(self) -> list[tuple[int, int]]:
        """Every edge a round may send over (a schedule's union)."""
        if self.schedule is not None:
            return self.schedule.union_edges
        return list(self.topology.graph.edges())

    def crashed(self, server_round: int) -> set[int]:
        """Agents down in `server_round`."""
        return {crash.agent for crash in self.failures.agents
                if crash.round <= server_round
                and (crash.recover is None or server_round < crash.recover)}

    def alive(self, server_round: int) -> frozenset[int]:
        """Agents up in `server_round`: the one place the alive set is computed."""
        return frozenset(range(self.topology.agents)) - self.crashed(server_round)

    def dropped_edges(self, server_round: int) -> set[tuple[int, int]]:
        """Edges that fail in `server_round`, each independently with the drop probability."""
        links = self.failures.links
        if links is None or links.drop_probability == 0.0:
            return set()
        edges = sorted(tuple(sorted(edge)) for edge in self.topology.graph.edges())
        draws = np.random.default_rng([self.link_seed, 5, server_round]).random(len(edges))
        return {edge for edge, draw in zip(edges, draws, strict=True)
                if draw < links.drop_probability}

    def network(self, server_round: int) -> RoundNetwork:
        """The round's alive graph and its Π_k (the static Π when nothing failed)."""
        alive = self.alive(server_round)
        if self.schedule is not None:
            graph, matrix = self.schedule.round(server_round)
            return RoundNetwork(graph, alive, matrix)
        dropped = self.dropped_edges(server_round)
        if len(alive) == self.topology.agents and not dropped:
            return RoundNetwork(self.topology.graph, alive, self.topology.mixing_matrix)
        graph = nx.Graph()
        graph.add_nodes_from(range(self.topology.agents))
        graph.add_edges_from(edge for edge in self.topology.graph.edges()
                             if tuple(sorted(edge)) not in dropped
                             and edge[0] in alive and edge[1] in alive)
        return RoundNetwork(graph, alive, recomputed_mixing(self.topology_config, graph))

    def describe(self, rounds: int) -> dict:
        """The whole schedule, for the run's artifact."""
        return {
            "server": None if self.failures.server is None
            else self.failures.server.model_dump(),
            "rounds": [{"round": k, "crashed": sorted(self.crashed(k)),
                        "dropped_edges": sorted([list(e) for e in self.dropped_edges(k)])}
                       for k in range(1, rounds + 1)
                       if self.crashed(k) or self.dropped_edges(k)],
        }
