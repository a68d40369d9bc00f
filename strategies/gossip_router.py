"""The serverless strategy of CDSGD: a router that never aggregates.

The ServerApp plays the network, nothing more. In round k it sends node j one
message holding exactly the arrays that the members of Nb(j) (j included)
published in round k−1, with their weights π_jl; node j mixes them, takes its
own gradient step and publishes x_{k+1}^j in its reply. The router keeps only
the latest published arrays of each node, to forward them; it never averages.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from decentral_bench.topology import neighbourhood
from strategies.protocol import (
    CONFIG_KEY,
    MIXING_KEY,
    PUBLISHED_KEY,
    ROUND_KEY,
    TRAIN_TYPE,
    neighbour_key,
)

RoundCallback = Callable[[int, list[Message]], None]
# Π_k and the agents that are up in round k, for time-varying networks (failures).
NetworkAt = Callable[[int], tuple[np.ndarray, Collection[int]]]


class GossipRouter:
    """Routes published parameters along the edges of a communication graph.

    Parameters
    ----------
    mixing_matrix : np.ndarray
        Π, N×N. Row j's non-zero entries define Nb(j) and the weights π_jl.
    node_of_agent : Mapping[int, int]
        Flower node id of each agent index.
    """

    def __init__(self, mixing_matrix: np.ndarray, node_of_agent: Mapping[int, int]) -> None:
        self.mixing_matrix = np.asarray(mixing_matrix, dtype=float)
        self.node_of_agent = dict(node_of_agent)
        self.agent_of_node = {node: agent for agent, node in self.node_of_agent.items()}

    def messages(self, published: Mapping[int, ArrayRecord], config: ConfigRecord,
                 server_round: int, mixing_matrix: np.ndarray | None = None,
                 alive: Collection[int] | None = None) -> list[Message]:
        """One message per alive agent with its neighbours' arrays and weights, nothing else.

        Nb(j) is row j's support in Π_k (`mixing_matrix`, default the static Π),
        and j itself, as the paper defines it, even where a user's Π sets π_jj = 0:
        the agent takes its gradient at its own point p_k^j.
        """
        matrix = self.mixing_matrix if mixing_matrix is None else mixing_matrix
        agents = sorted(self.node_of_agent) if alive is None else sorted(alive)
        messages = []
        for agent in agents:
            neighbours = neighbourhood(matrix, agent)
            content = RecordDict({neighbour_key(l): published[l] for l in neighbours})
            content[MIXING_KEY] = ConfigRecord({
                "agents": neighbours,
                "weights": [float(matrix[agent, l]) for l in neighbours],
            })
            round_config = ConfigRecord(dict(config))
            round_config[ROUND_KEY] = server_round
            round_config["agent"] = agent
            content[CONFIG_KEY] = round_config
            messages.append(Message(content, dst_node_id=self.node_of_agent[agent],
                                    message_type=TRAIN_TYPE,
                                    group_id=str(server_round)))
        return messages

    def start(self, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int,
              train_config: ConfigRecord, on_round: RoundCallback | None = None,
              timeout: float = 3600.0, network_at: NetworkAt | None = None,
              ) -> dict[int, ArrayRecord]:
        """Run `num_rounds` rounds; return each agent's last published arrays.

        Every agent starts from the same x_0 = `initial_arrays`. An agent whose
        reply is an error (or missing) has failed for that round: it publishes
        nothing new and its neighbours keep mixing its last published point.
        The run ends with an error only when every agent of a round failed.
        """
        published = {agent: initial_arrays for agent in self.node_of_agent}
        for server_round in range(1, num_rounds + 1):
            matrix, alive = (self.mixing_matrix, list(self.node_of_agent)) \
                if network_at is None else network_at(server_round)
            replies = list(grid.send_and_receive(
                self.messages(published, train_config, server_round, matrix, alive),
                timeout=timeout))
            delivered = [reply for reply in replies if not reply.has_error()]
            if alive and not delivered:
                reasons = "; ".join(sorted({str(reply.error.reason) for reply in replies})) \
                    or "no reply before the timeout"
                raise RuntimeError(f"round {server_round}: every agent failed: {reasons}")
            for reply in delivered:
                published[self.agent_of_node[reply.metadata.src_node_id]] = \
                    reply.content.array_records[PUBLISHED_KEY]
            if on_round is not None:
                on_round(server_round, replies)
        return published
