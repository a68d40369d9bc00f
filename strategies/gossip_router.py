"""The serverless strategy of CDSGD: a router that never aggregates.

The ServerApp plays the network, nothing more. In round k it sends node j one
message holding exactly the arrays that the members of Nb(j) (j included)
published in round k−1, with their weights π_jl; node j mixes them, takes its
own gradient step and publishes x_{k+1}^j in its reply. The router keeps only
the latest published arrays of each node, to forward them; it never averages.
Consensus control's extra exchanges travel the same way, flagged gossip-only
(its all-reduce, too: every alive agent is sent every alive point, weighted 1/n,
and averages them itself). A rule whose agents start on their own is asked for each
agent's first message before round 1 (`start`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from strategies.neighbourhood import neighbourhood
from strategies.protocol import (
    CONFIG_KEY,
    EVALUATE_TYPE,
    GOSSIP_ONLY_KEY,
    MIXING_KEY,
    PUBLISHED_KEY,
    ROUND_KEY,
    START_KEY,
    TRAIN_TYPE,
    neighbour_key,
)


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
                 alive: Collection[int] | None = None,
                 gossip_only: bool = False) -> list[Message]:
        """One message per alive agent with its neighbours' arrays and weights, nothing else.

        Nb(j) is row j's support in Π_k (`mixing_matrix`, default the static Π),
        and j itself, as the paper defines it, even where a user's Π sets π_jj = 0:
        the agent takes its gradient at its own point p_k^j. A `gossip_only` message
        (consensus control) asks the agent to mix and move, without a gradient step.
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
            if gossip_only:
                round_config[GOSSIP_ONLY_KEY] = True
            content[CONFIG_KEY] = round_config
            messages.append(Message(content, dst_node_id=self.node_of_agent[agent],
                                    message_type=TRAIN_TYPE,
                                    group_id=str(server_round)))
        return messages

    def start(self, grid: Grid, config: ConfigRecord, timeout: float = 3600.0,
              ) -> dict[int, ArrayRecord]:
        """Ask every agent for its first message (`START_KEY`): each computes its start
        state from x_0 itself. Returns the messages; raises if an agent fails."""
        messages = []
        for agent, node in sorted(self.node_of_agent.items()):
            start_config = ConfigRecord(dict(config))
            start_config[START_KEY] = True
            start_config["agent"] = agent
            messages.append(Message(RecordDict({CONFIG_KEY: start_config}), dst_node_id=node,
                                    message_type=TRAIN_TYPE, group_id="0"))
        replies = list(grid.send_and_receive(messages, timeout=timeout))
        failed = [reply for reply in replies if reply.has_error()]
        if failed or len(replies) < len(messages):
            reasons = "; ".join(sorted({str(reply.error.reason) for reply in failed})) \
                or "no reply before the timeout"
            raise RuntimeError(f"an agent failed to start: {reasons}")
        return {self.agent_of_node[reply.metadata.src_node_id]:
                reply.content.array_records[PUBLISHED_KEY] for reply in replies}

    def evaluate(self, grid: Grid, published: Mapping[int, ArrayRecord], config: ConfigRecord,
                 server_round: int, alive: Collection[int],
                 timeout: float = 3600.0) -> list[Message]:
        """Ask every alive agent to evaluate its latest point (sent back to it under
        `PUBLISHED_KEY`): how a round ends when consensus control moved the points after
        the training step. Returns the replies, which carry only metrics."""
        messages = []
        for agent in sorted(alive):
            round_config = ConfigRecord(dict(config))
            round_config[ROUND_KEY] = server_round
            content = RecordDict({PUBLISHED_KEY: published[agent], CONFIG_KEY: round_config})
            messages.append(Message(content, dst_node_id=self.node_of_agent[agent],
                                    message_type=EVALUATE_TYPE, group_id=str(server_round)))
        return list(grid.send_and_receive(messages, timeout=timeout))

    def exchange(self, grid: Grid, published: dict[int, ArrayRecord], config: ConfigRecord,
                 server_round: int, mixing_matrix: np.ndarray, alive: Collection[int],
                 gossip_only: bool = False, timeout: float = 3600.0) -> list[Message]:
        """One exchange: every alive agent gets Nb_k(j)'s points in `published` and replies
        with its new point, which replaces its entry there. An agent whose reply is an
        error (or missing) has failed: it publishes nothing new and its neighbours keep
        mixing its last point. Raises only when every agent failed. Returns the replies."""
        replies = list(grid.send_and_receive(
            self.messages(published, config, server_round, mixing_matrix, alive, gossip_only),
            timeout=timeout))
        delivered = [reply for reply in replies if not reply.has_error()]
        if alive and not delivered:
            reasons = "; ".join(sorted({str(reply.error.reason) for reply in replies})) \
                or "no reply before the timeout"
            raise RuntimeError(f"round {server_round}: every agent failed: {reasons}")
        for reply in delivered:
            published[self.agent_of_node[reply.metadata.src_node_id]] = \
                reply.content.array_records[PUBLISHED_KEY]
        return replies
