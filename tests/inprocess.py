"""A Flower grid that delivers in process: the ServerApp side (`run_method`, the gossip
router, Flower's stock strategies) and the real ClientApp, without Ray's transport.

Each message is handed to the ClientApp's handler for its type (`train`, `evaluate`,
`query`) with the destination node's own `Context`, which persists across messages as a
node's does; its reply is stored until pulled. Used where a test needs the Flower engine's
computation many times over (one run per method) in seconds; the slow tests run the same
computation through Flower's simulation engine.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

from flwr.app import Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from decentral_bench.engines.base import FinalParameters, ReportSink
from decentral_bench.engines.flower import client_app
from decentral_bench.engines.flower.server_app import run_method
from decentral_bench.experiment.plan import MethodPlan

HANDLERS: dict[str, Callable[[Message, Context], Message]] = {
    MessageType.TRAIN: client_app.train,
    MessageType.EVALUATE: client_app.measure,
    MessageType.QUERY: client_app.identify,
}


class InProcessGrid(Grid):
    """One node per agent, node id 100 + agent, each with its own Context."""

    def __init__(self, agents: int) -> None:
        self.contexts = {100 + agent: Context(run_id=1, node_id=100 + agent, state=RecordDict(),
                                              node_config={"partition-id": agent},
                                              run_config={})
                         for agent in range(agents)}
        self.replies: dict[str, Message] = {}
        self.numbers = itertools.count()

    def set_run(self, run: Run) -> None:
        raise NotImplementedError

    @property
    def run(self) -> Run:
        raise NotImplementedError

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            message_id = f"m{next(self.numbers)}"
            message.metadata.__dict__["_message_id"] = message_id
            reply = HANDLERS[message.metadata.message_type](
                message, self.contexts[message.metadata.dst_node_id])
            reply.metadata.__dict__["_message_id"] = f"r{message_id}"
            self.replies[message_id] = reply
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self.replies.pop(i) for i in list(message_ids) if i in self.replies]

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))


def run_in_process(plan: MethodPlan, report: ReportSink) -> FinalParameters:
    """`plan` on the Flower engine's ServerApp side and ClientApp, delivered in process."""
    return run_method(InProcessGrid(plan.agents), plan, report)
