"""What an agent keeps in its Flower context between rounds (it crosses the engine twice
per call, so it holds only what the next message cannot supply)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_scenario
from flwr.app import Context, RecordDict

from decentral_bench.engines.flower import client_app
from decentral_bench.engines.flower.arrays import from_record, to_record
from decentral_bench.engines.flower.client_rounds import KEPT_PREFIX
from decentral_bench.engines.flower.server_app import train_config
from decentral_bench.experiment.plan import MethodPlan
from strategies.gossip_router import GossipRouter
from strategies.protocol import PUBLISHED_KEY

METHODS = {
    "cdsgd": {"name": "M", "algorithm": "cdsgd"},
    "polyak": {"name": "M", "algorithm": "cdmsgd", "variant": "polyak"},
    "nesterov": {"name": "M", "algorithm": "cdmsgd", "variant": "nesterov",
                 "momentum_buffer": "iterates"},
}


@pytest.fixture(autouse=True)
def _stamped(task_identity: None) -> None:
    """Every test here builds messages outside a running app (conftest's task_identity)."""


def run_rounds(rule: str, rounds: int) -> tuple[MethodPlan, dict[int, Context], list, list]:
    """`rounds` rounds of 3 agents on a ring, ClientApp called in process. Returns the
    plan, the contexts, and per round what each agent published and what it kept."""
    plan = MethodPlan.of(tiny_scenario(topology={"kind": "ring", "agents": 3},
                                       methods=[METHODS[rule]]), "M")
    router = GossipRouter(plan.topology.mixing_matrix, {agent: agent + 10 for agent in range(3)})
    published = {agent: to_record(plan.initial_parameters) for agent in range(3)}
    contexts = {agent: Context(run_id=1, node_id=agent + 10, state=RecordDict(),
                               node_config={"partition-id": agent}, run_config={})
                for agent in range(3)}
    history, kept = [], []
    for server_round in range(1, rounds + 1):
        for message in router.messages(published, train_config(plan, 1), server_round):
            agent = message.metadata.dst_node_id - 10
            reply = client_app.train(message, contexts[agent])
            published[agent] = reply.content[PUBLISHED_KEY]
        history.append({agent: from_record(record) for agent, record in published.items()})
        kept.append({agent: from_record(record) for agent, context in contexts.items()
                     for key, record in context.state.array_records.items()
                     if key.startswith(KEPT_PREFIX)})
    return plan, contexts, history, kept


@pytest.mark.parametrize(("rule", "kept"), [("cdsgd", 0), ("polyak", 1), ("nesterov", 1)])
def test_the_context_keeps_at_most_one_parameter_list(rule: str, kept: int) -> None:
    _, contexts, _, _ = run_rounds(rule, 3)
    for context in contexts.values():
        assert len(context.state.array_records) == kept


def test_nesterov_keeps_x_k_from_which_it_published_y_k() -> None:
    """y_k = x_k + μ (x_k − x_{k−1}), with x_k and x_{k−1} the kept iterates of rounds
    k and k−1: the agent published the look-ahead and kept the iterate."""
    plan, _, published, kept = run_rounds("nesterov", 3)
    momentum = plan.option("momentum")
    assert momentum > 0
    for agent in range(3):
        for y, x, x_before in zip(published[2][agent], kept[2][agent], kept[1][agent],
                                  strict=True):
            np.testing.assert_allclose(y, x + momentum * (x - x_before), atol=1e-6)
            assert not np.allclose(y, x)
