"""Which Flower node is which agent: nodes answer a query with their `partition-id`.

Nodes register asynchronously (in a deployment, SuperNodes may join late), so
discovery asks each node once, as it appears, until every agent has a node or
the wait runs out. A node is left out, with the reason logged, when it has no
usable `partition-id`, when its partition-id is taken by a node that answered
first, when the id is not an agent of this topology, or when it does not
answer; the run fails only when an agent is left without a node.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from strategies.protocol import IDENTIFY_TYPE, IDENTITY_KEY, int_value

logger = logging.getLogger(__name__)

SkipSink = Callable[[int, str], None]  # node id, why it is left out


@dataclass(frozen=True)
class NodeWait:
    """How long to wait for the agents' nodes, how often to look for new ones, and what
    to tell the user when some never come (it depends on where the run is)."""

    # The simulation engine makes every node at its start; what is slow is the actors'
    # first answer (each imports torch and loads its data): over 60 s seen with four
    # actors on two busy cores. A deployment's wait comes from the run config instead.
    timeout: float = 300.0
    poll: float = 0.05
    advice: str = ""


def readable_reason(reason: str) -> str:
    """A ClientApp's error as a person would say it: Flower wraps an exception's message
    as `<class 'ValueError'>:<'message'>`; this keeps the message."""
    wrapped = re.fullmatch(r"<class '[\w.]+'>:<'(.*)'>", reason, flags=re.DOTALL)
    return wrapped.group(1) if wrapped else reason


def simulation_advice(agents: int) -> str:
    return ("give the federation one SuperNode per agent, e.g. `flwr federation "
            f"simulation-config @none/default local --num-supernodes {agents}`")


def deployment_advice(agents: int) -> str:
    return ("start one SuperNode per missing agent J with --node-config \"partition-id=J "
            f"num-partitions={agents}\", or let late nodes join for longer with the run "
            "config key wait-for-nodes (seconds)")


def _identity_queries(nodes: list[int]) -> list[Message]:
    return [Message(RecordDict(), dst_node_id=node, message_type=IDENTIFY_TYPE)
            for node in nodes]


def _answers(grid: Grid, nodes: list[int], timeout: float) -> dict[int, Message]:
    """Each node's reply to the identity query (nodes that did not answer are absent)."""
    queries = _identity_queries(nodes)
    replies = list(grid.send_and_receive(queries, timeout=timeout))
    node_of_query = {query.metadata.message_id: query.metadata.dst_node_id
                     for query in queries}
    return {node_of_query[reply.metadata.reply_to_message_id]: reply for reply in replies
            if reply.metadata.reply_to_message_id in node_of_query}


class Discovery:
    """The agent ↔ node map as it is being found, and the nodes left out so far."""

    def __init__(self, agents: int, on_skip: SkipSink | None) -> None:
        self.agents = agents
        self.node_of_agent: dict[int, int] = {}
        self.skipped: dict[int, str] = {}
        self.on_skip = on_skip

    def skip(self, node: int, reason: str) -> None:
        self.skipped[node] = reason
        logger.warning("node %s left out: %s", node, reason)
        if self.on_skip is not None:
            self.on_skip(node, reason)

    def place(self, node: int, reply: Message | None, waited: float) -> None:
        """Give `node` the agent its reply names, or leave it out and say why."""
        if reply is None:
            self.skip(node, f"did not answer the identity query within {waited:.0f} s")
        elif reply.has_error():
            self.skip(node, readable_reason(str(reply.error.reason)))
        else:
            partition = int_value(reply.content.config_records[IDENTITY_KEY], "partition-id")
            if partition >= self.agents:
                self.skip(node, f"partition-id {partition} is not an agent of this topology "
                                f"(0..{self.agents - 1}); it stays idle")
            elif partition in self.node_of_agent:
                self.skip(node, f"partition-id {partition} is already node "
                                f"{self.node_of_agent[partition]}'s")
            else:
                self.node_of_agent[partition] = node

    @property
    def missing(self) -> list[int]:
        return sorted(set(range(self.agents)) - set(self.node_of_agent))

    def shortage(self, connected: int, wait: NodeWait) -> RuntimeError:
        """The error when agents are still without a node after the wait."""
        skipped = "; ".join(f"node {node}: {reason}" for node, reason in self.skipped.items())
        return RuntimeError(
            f"the topology has {self.agents} agents (partition-id 0..{self.agents - 1}) but "
            f"after waiting {wait.timeout:.0f} s agents {self.missing} have no node "
            f"({connected} nodes connected{'; left out: ' + skipped if skipped else ''})"
            f"{'; ' + wait.advice if wait.advice else ''}")


def discover_agents(grid: Grid, agents: int, wait: NodeWait | None = None,
                    on_skip: SkipSink | None = None) -> dict[int, int]:
    """Map agent index j (the node's partition id) to its Flower node id.

    Every node is asked once, as it connects; nodes that cannot serve an agent are
    left out with their reason (`on_skip`). Returns as soon as agents 0..agents−1 all
    have a node; raises when some still have none after `wait.timeout` seconds.
    """
    wait = wait or NodeWait()
    started = time.monotonic()
    discovery = Discovery(agents, on_skip)
    asked: set[int] = set()
    while True:
        connected = list(grid.get_node_ids())
        fresh = sorted(set(connected) - asked)
        if fresh:
            asked.update(fresh)
            remaining = max(wait.timeout - (time.monotonic() - started), 1.0)
            answers = _answers(grid, fresh, remaining)
            for node in fresh:
                discovery.place(node, answers.get(node), remaining)
        if not discovery.missing:
            return discovery.node_of_agent
        if time.monotonic() - started > wait.timeout:
            raise discovery.shortage(len(connected), wait)
        time.sleep(wait.poll)
