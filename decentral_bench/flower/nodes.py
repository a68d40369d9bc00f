"""Which Flower node is which agent: nodes answer a query with their `partition-id`."""

from __future__ import annotations

import time

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from strategies.protocol import IDENTIFY_TYPE, IDENTITY_KEY, int_value


def wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    """The node ids once at least `count` nodes have connected (they register asynchronously)."""
    deadline = time.monotonic() + timeout
    node_ids = list(grid.get_node_ids())
    while len(node_ids) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(node_ids)} nodes connected within {timeout:.0f} s "
                               f"but the scenario needs {count} (one per agent); give the "
                               "federation that many SuperNodes, e.g. `flwr federation "
                               f"simulation-config @none/default local --num-supernodes {count}`")
        time.sleep(0.01)
        node_ids = list(grid.get_node_ids())
    return node_ids


def discover_agents(grid: Grid, agents: int, timeout: float = 60.0) -> dict[int, int]:
    """Map agent index j (the node's partition id) to its Flower node id.

    Sends every node a query; each answers with its `partition-id`. Agents
    0..agents−1 must all be present; nodes with larger ids are left idle.
    """
    node_ids = wait_for_nodes(grid, agents, timeout)
    queries = [Message(RecordDict(), dst_node_id=node, message_type=IDENTIFY_TYPE)
               for node in node_ids]
    node_of_agent: dict[int, int] = {}
    for reply in grid.send_and_receive(queries, timeout=timeout):
        if reply.has_error():
            raise RuntimeError(f"node {reply.metadata.src_node_id} did not identify itself: "
                               f"{reply.error.reason}")
        partition = int_value(reply.content.config_records[IDENTITY_KEY], "partition-id")
        if partition < agents:
            node_of_agent[partition] = reply.metadata.src_node_id
    missing = sorted(set(range(agents)) - set(node_of_agent))
    if missing:
        raise RuntimeError(f"the topology has {agents} agents but only {len(node_ids)} nodes "
                           f"answered; agents without a node: {missing}")
    return node_of_agent
