"""A tap on the simulated network: observes every message, changes none.

`NetworkTap` wraps the Grid a ServerApp is given. Strategies send through it
unchanged; it counts the bytes of the arrays that cross the network and keeps
the replies of the current round, which `round_report` turns into the
engine-neutral `RoundReport` the observer measures. No algorithm reads what
the tap records.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ArrayRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from decentral_bench.engines.base import RoundReport, stack_points
from decentral_bench.engines.flower.arrays import from_record, record_bytes
from decentral_bench.engines.flower.engine_patch import messages_pushed, replies_stored
from decentral_bench.engines.flower.nodes import readable_reason
from strategies.protocol import EVALUATE_TYPE, METRICS_KEY, MODEL_KEY, PUBLISHED_KEY


def array_bytes(message: Message) -> int:
    """Bytes of the parameter data a message carries (the arrays' values, not the `.npy`
    headers and record keys Flower also ships). Evaluation requests are measurement, not
    traffic of the simulated network: they count nothing."""
    if message.has_error() or message.metadata.message_type == EVALUATE_TYPE:
        return 0
    return sum(record_bytes(record) for record in message.content.array_records.values())


@dataclass
class Traffic:
    """What crossed the network since the tap was last drained."""

    bytes_sent: int = 0
    bytes_received: int = 0
    destinations: dict[str, int] = field(default_factory=dict)  # message id → node id
    replies: list[Message] = field(default_factory=list)
    # sent message's id → the point its reply carried as it crossed the network (a strategy
    # may consume the reply's records: Flower's FedMedian pops their arrays as it aggregates)
    points: dict[str, ArrayRecord] = field(default_factory=dict)

    @property
    def router_bytes(self) -> int:
        return self.bytes_sent + self.bytes_received


class NetworkTap(Grid):
    """A Grid that forwards to `grid` and records the traffic.

    Nodes in `down_nodes` (crashed agents) are hidden from the strategy, as a
    dead machine would be. In our simulations it sleeps until the engine has
    stored as many replies as it awaits (`flower_engine.replies_stored`) and
    then pulls them; elsewhere (a deployment's SuperLink), and as a fallback, it
    polls after `pull_interval` seconds, doubling the pause up to
    `max_pull_interval` while no reply comes, instead of the grids' fixed 0.1 s
    (in memory) or 3 s (a SuperLink). Both only shorten the wait for replies that
    have already arrived.
    """

    def __init__(self, grid: Grid, pull_interval: float = 0.005,
                 stop: threading.Event | None = None, max_pull_interval: float = 0.2) -> None:
        self.grid = grid
        self.pull_interval = pull_interval
        self.max_pull_interval = max_pull_interval
        self.stop = stop or threading.Event()  # set: abandon the wait (the user pressed Ctrl-C)
        self.traffic = Traffic()
        self.down_nodes: set[int] = set()  # crashed agents' nodes: hidden from strategies

    def set_run(self, run: Run) -> None:
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        return self.grid.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return [node for node in self.grid.get_node_ids() if node not in self.down_nodes]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        self.traffic.bytes_sent += sum(array_bytes(message) for message in messages)
        message_ids = list(self.grid.push_messages(messages))
        for message_id, message in zip(message_ids, messages, strict=True):
            self.traffic.destinations[message_id] = message.metadata.dst_node_id
        messages_pushed.set()  # wake the simulation engine's pick-up loop (engine_patch)
        return message_ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self.grid.pull_messages(message_ids))
        self.traffic.bytes_received += sum(array_bytes(reply) for reply in replies)
        self.traffic.replies.extend(replies)
        for reply in replies:
            point = carried_point(reply)
            if point is not None:
                self.traffic.points[str(reply.metadata.reply_to_message_id)] = point
        return replies

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        stored_before = replies_stored.count
        pending = set(self.push_messages(messages))
        all_stored = stored_before + len(pending)
        deadline = None if timeout is None else time.monotonic() + timeout
        received: list[Message] = []
        pause = self.pull_interval
        while pending:
            if self.stop.is_set():
                raise RuntimeError("the simulation was stopped while waiting for replies")
            replies = list(self.pull_messages(pending))
            received.extend(replies)
            pending.difference_update(reply.metadata.reply_to_message_id for reply in replies)
            if not pending or (deadline is not None and time.monotonic() >= deadline):
                break
            if replies_stored.active and replies_stored.count < all_stored:
                # Replies the engine never stores (expired messages) are found within 0.1 s.
                replies_stored.wait_for(all_stored, 0.1)
            else:  # not our engine, or the count includes replies to other pushes
                time.sleep(pause)
                pause = self.pull_interval if replies else min(2 * pause,
                                                               self.max_pull_interval)
        return received

    def drain(self) -> Traffic:
        """The traffic recorded since the last drain; the tap starts afresh."""
        traffic, self.traffic = self.traffic, Traffic()
        return traffic


def carried_point(reply: Message) -> ArrayRecord | None:
    """A copy of the point a training reply carries (its model, or its published message
    where that is its model); None for errors and evaluation replies. The copy holds the
    same arrays, so it costs no data."""
    if reply.has_error() or reply.metadata.message_type == EVALUATE_TYPE:
        return None
    key = MODEL_KEY if MODEL_KEY in reply.content else PUBLISHED_KEY
    if key not in reply.content:
        return None
    return ArrayRecord(dict(reply.content.array_records[key].items()))


def round_report(server_round: int, traffic: Traffic, agent_of_node: dict[int, int],
                 network: dict[str, float] | None = None) -> RoundReport:
    """What a round's traffic shows: each agent's last model (its published point, after
    consensus control's exchanges when there are any, or the model its reply carries) and
    the metrics it reported, and the agents whose message got an error or no reply (named
    by agent index, found from the node each message was sent to)."""
    answered = {str(reply.metadata.reply_to_message_id): reply for reply in traffic.replies}
    failed: dict[int, str] = {}
    points: dict[int, list[np.ndarray]] = {}
    metrics: dict[int, dict[str, float]] = {}
    for message_id, node in traffic.destinations.items():  # in the order they were sent
        agent = agent_of_node[node]
        reply = answered.get(message_id)
        if reply is None:
            failed[agent] = "no reply before the timeout"
        elif reply.has_error():
            failed[agent] = readable_reason(str(reply.error.reason))
        else:
            point = traffic.points.get(message_id)
            if point is not None:
                points[agent] = from_record(point, writable=False)
            metrics.setdefault(agent, {}).update(
                {key: float(value) for key, value in
                 reply.content.metric_records[METRICS_KEY].items()
                 if isinstance(value, int | float)})
    agents = sorted(points)
    return RoundReport(
        server_round=server_round, agents=agents,
        points=stack_points([points[agent] for agent in agents]),
        agent_metrics={agent: metrics[agent] for agent in agents},
        failed=failed, router_bytes=traffic.router_bytes, network=dict(network or {}))
