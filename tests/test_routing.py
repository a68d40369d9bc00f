"""Routing over a real Flower simulation on a 5-node ring.

A ClientApp that wraps the product's ClientApp echoes a digest of every array
it received (and of what it published), so the assertions are about what
nodes actually got, not only about what the router meant to send.
"""

from __future__ import annotations

import hashlib

import pytest
from conftest import tiny_scenario
from flwr.app import ArrayRecord, ConfigRecord, Context, Message
from flwr.clientapp import ClientApp
from flwr.simulation import run_simulation

from decentral_bench.engines.flower import client_app as product_client
from decentral_bench.engines.flower.arrays import to_record
from decentral_bench.engines.flower.network_tap import NetworkTap
from decentral_bench.engines.flower.server_app import run_method
from decentral_bench.engines.flower.simulation import backend_config
from decentral_bench.experiment.plan import MethodPlan
from strategies.protocol import MIXING_KEY, PUBLISHED_KEY, neighbour_key

pytestmark = pytest.mark.slow

echo_app = ClientApp()


def digest(record: ArrayRecord) -> str:
    return hashlib.sha256(b"".join(array.data for array in record.values())).hexdigest()


@echo_app.query()
def identify(message: Message, context: Context) -> Message:
    return product_client.identify(message, context)


@echo_app.train()
def train(message: Message, context: Context) -> Message:
    agents = [int(a) for a in message.content[MIXING_KEY]["agents"]]
    received = [digest(message.content[neighbour_key(a)]) for a in agents]
    keys = sorted(k for k in message.content.array_records)
    reply = product_client.train(message, context)
    reply.content["echo"] = ConfigRecord({
        "agent": int(context.node_config["partition-id"]),
        "received_agents": agents,
        "received_keys": keys,
        "received_digests": received,
        "published_digest": digest(reply.content[PUBLISHED_KEY]),
    })
    return reply


class RecordingGrid(NetworkTap):
    """Keeps every reply of the run."""

    def __init__(self, grid) -> None:
        super().__init__(grid)
        self.all_replies: list[Message] = []

    def pull_messages(self, message_ids):
        replies = list(super().pull_messages(message_ids))
        self.all_replies.extend(replies)
        return replies


def test_nodes_receive_exactly_their_neighbours_arrays_bit_identical() -> None:
    from flwr.serverapp import ServerApp

    scenario = tiny_scenario(topology={"kind": "ring", "agents": 5},
                             training={"rounds": 4, "batch_size": 16, "lr": 0.1, "seed": 1})
    plan = MethodPlan.of(scenario, "CDSGD")
    recorded: list[RecordingGrid] = []
    server = ServerApp()

    @server.main()
    def _main(grid, context) -> None:
        recorder = RecordingGrid(grid)
        recorded.append(recorder)
        run_method(recorder, plan, report=lambda _: None)

    run_simulation(server_app=server, client_app=echo_app, num_supernodes=5,
                   backend_config=backend_config(plan))

    echoes = [dict(reply.content["echo"]) for reply in recorded[0].all_replies
              if "echo" in reply.content]
    assert len(echoes) == 5 * 4
    rounds = [echoes[i:i + 5] for i in range(0, len(echoes), 5)]
    published = {agent: digest(to_record(plan.initial_parameters)) for agent in range(5)}
    for round_echoes in rounds:
        for echo in round_echoes:
            agent = echo["agent"]
            ring_neighbours = sorted({(agent - 1) % 5, agent, (agent + 1) % 5})
            assert sorted(echo["received_agents"]) == ring_neighbours
            assert echo["received_keys"] == sorted(neighbour_key(a) for a in ring_neighbours)
            for neighbour, received in zip(echo["received_agents"], echo["received_digests"],
                                           strict=True):
                assert received == published[neighbour]
        published = {echo["agent"]: echo["published_digest"] for echo in round_echoes}
