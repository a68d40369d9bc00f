"""Failure injection: schedules, time-varying Π_k, server loss, and agents that raise."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from conftest import observed_run, tiny_scenario
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from decentral_bench.engines.flower import client_app as product_client
from decentral_bench.engines.flower.simulation import FlowerEngine
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.network.failures import FailureSchedule
from decentral_bench.network.topology import build_topology, check_assumption_2
from decentral_bench.scenario import FailuresConfig, TopologyConfig
from strategies.gossip_router import GossipRouter
from strategies.protocol import MIXING_KEY, neighbour_key


def _schedule(failures: dict, agents: int = 10, seed: int = 0) -> FailureSchedule:
    config = TopologyConfig(kind="erdos_renyi", agents=agents, p=0.5)
    return FailureSchedule(FailuresConfig.model_validate(failures), config,
                           build_topology(config, 0), seed)


def test_link_drops_are_deterministic_under_the_seed() -> None:
    failures = {"links": {"drop_probability": 0.3}}
    first, again, other = _schedule(failures), _schedule(failures), _schedule(failures, seed=1)
    rounds = range(1, 30)
    assert [first.dropped_edges(k) for k in rounds] == [again.dropped_edges(k) for k in rounds]
    assert [first.dropped_edges(k) for k in rounds] != [other.dropped_edges(k) for k in rounds]
    edges = first.topology.graph.number_of_edges()
    dropped = np.mean([len(first.dropped_edges(k)) for k in range(1, 400)])
    assert dropped == pytest.approx(0.3 * edges, rel=0.1)


def test_crash_windows() -> None:
    schedule = _schedule({"agents": [{"agent": 2, "round": 3, "recover": 5},
                                     {"agent": 7, "round": 4}]})
    assert [sorted(schedule.crashed(k)) for k in range(1, 8)] == [
        [], [], [2], [2, 7], [7], [7], [7]]


def test_round_mixing_satisfies_assumption_2_on_each_component() -> None:
    schedule = _schedule({"links": {"drop_probability": 0.6},
                          "agents": [{"agent": 0, "round": 1}]})
    split_seen = False
    for k in range(1, 40):
        network = schedule.network(k)
        assert 0 not in network.alive
        assert network.mixing_matrix[0].tolist() == [1.0] + [0.0] * 9  # crashed: isolated
        for edge in schedule.dropped_edges(k):
            assert not network.graph.has_edge(*edge)
            assert network.mixing_matrix[edge] == 0.0
        components = list(nx.connected_components(network.graph.subgraph(network.alive)))
        split_seen |= len(components) > 1
        for component in components:
            nodes = sorted(component)
            block = network.mixing_matrix[np.ix_(nodes, nodes)]
            check_assumption_2(block, nx.convert_node_labels_to_integers(
                network.graph.subgraph(nodes), ordering="sorted"))
    assert split_seen  # the test did meet disconnected rounds


def test_router_sends_nothing_over_a_dropped_edge_or_to_a_crashed_agent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from flwr.app import ArrayRecord
    from flwr.supercore.task_identity import TaskIdentity

    # Messages carry the run's identity; outside a Flower run, give them one.
    for key in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, key, 1)

    schedule = _schedule({"links": {"drop_probability": 0.4},
                          "agents": [{"agent": 3, "round": 1}]})
    router = GossipRouter(schedule.topology.mixing_matrix, {j: 100 + j for j in range(10)})
    published = {j: ArrayRecord([np.full(2, j, dtype=np.float32)]) for j in range(10)}
    for k in range(1, 20):
        network = schedule.network(k)
        messages = router.messages(published, _config(), k, network.mixing_matrix, network.alive)
        assert sorted(m.metadata.dst_node_id - 100 for m in messages) == sorted(network.alive)
        for message in messages:
            agent = message.metadata.dst_node_id - 100
            senders = {int(key.split(".")[1]) for key in message.content.array_records}
            assert senders == set(message.content[MIXING_KEY]["agents"])
            for sender in senders - {agent}:
                assert network.graph.has_edge(agent, sender)
                assert tuple(sorted((agent, sender))) not in schedule.dropped_edges(k)
            assert neighbour_key(3) not in message.content or agent == 3


def _config():
    from flwr.app import ConfigRecord

    return ConfigRecord({"scenario": "{}", "method": "x"})


# ---------------------------------------------------------------- through Flower

def _run(plan: MethodPlan, client: ClientApp = product_client.app):
    return observed_run(plan, FlowerEngine(client=client))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["local", "halt"])
def test_fedavg_server_failure(mode: str) -> None:
    scenario = tiny_scenario(
        methods=[{"name": "FedAvg", "algorithm": "fedavg"}],
        training={"rounds": 6, "batch_size": 32, "lr": 0.1, "seed": 0},
        failures={"server": {"round": 3, "mode": mode}})
    final, rounds, events = _run(MethodPlan.of(scenario, "FedAvg"))
    assert any(k == 3 and "server failed after round 3" in text for k, text in events)
    if mode == "halt":
        assert sorted(rounds) == [1, 2, 3]
        return
    assert sorted(rounds) == [1, 2, 3, 4, 5, 6]
    assert [rounds[k]["aggregated"] for k in range(1, 7)] == [1, 1, 1, 0, 0, 0]
    assert all(rounds[k]["bytes_moved"] == 0 for k in (4, 5, 6))  # no server, no traffic
    assert all(rounds[k]["test_accuracy_mean"] > 0 for k in (4, 5, 6))  # metrics go on
    # Local models drift apart once nobody averages them.
    assert rounds[6]["consensus_distance"] > rounds[4]["consensus_distance"]
    assert sorted(final) == [0, 1, 2, 3]  # each agent's own model


raising_app = ClientApp()


@raising_app.query()
def _identify(message: Message, context: Context) -> Message:
    return product_client.identify(message, context)


@raising_app.train()
def _train(message: Message, context: Context) -> Message:
    if int(message.content["config"]["server-round"]) == 2 and \
            int(context.node_config["partition-id"]) == 1:
        raise RuntimeError("simulated crash of agent 1")
    return product_client.train(message, context)


@pytest.mark.slow
def test_a_client_that_raises_fails_only_its_round() -> None:
    scenario = tiny_scenario(training={"rounds": 4, "batch_size": 16, "lr": 0.1, "seed": 0})
    final, rounds, events = _run(MethodPlan.of(scenario, "CDSGD"), client=raising_app)
    assert sorted(rounds) == [1, 2, 3, 4]
    assert [rounds[k]["agents_failed"] for k in range(1, 5)] == [0, 1, 0, 0]
    assert rounds[2]["agents_reporting"] == 3
    assert any(k == 2 and "agent 1 failed" in text and "simulated crash" in text
               for k, text in events)
    assert sorted(final) == [0, 1, 2, 3]


@pytest.mark.slow
def test_gossip_run_with_crashes_and_link_drops() -> None:
    scenario = tiny_scenario(
        topology={"kind": "complete", "agents": 5},
        methods=[{"name": "CDMSGD", "algorithm": "cdmsgd"}],
        training={"rounds": 6, "batch_size": 16, "lr": 0.05, "seed": 0},
        failures={"agents": [{"agent": 4, "round": 2, "recover": 4}],
                  "links": {"drop_probability": 0.3, "seed": 9}})
    plan = MethodPlan.of(scenario, "CDMSGD")
    _, rounds, _ = _run(plan)
    schedule = FailureSchedule(scenario.failures, scenario.topology, plan.topology, 0)
    for k in range(1, 7):
        expected = schedule.network(k)
        assert rounds[k]["alive_agents"] == len(expected.alive) == (4 if k in (2, 3) else 5)
        assert rounds[k]["agents_reporting"] == len(expected.alive)
        assert rounds[k]["alive_edges"] == expected.metrics()["alive_edges"]
        assert rounds[k]["components"] >= 1
    assert "round_lambda2" in rounds[1]


def test_survivors_mix_over_the_alive_graph_with_metropolis_weights() -> None:
    """A 5-ring with agent 2 down is the path 3–4–0–1. Metropolis weights worked out by
    hand: 1/(1 + max(d_j, d_l)) on its edges (degrees 1, 2, 2, 1: every edge 1/3), the rest
    of each row on the diagonal; the crashed agent's row and column are e_2."""
    config = TopologyConfig(kind="ring", agents=5)
    schedule = FailureSchedule(FailuresConfig.model_validate(
        {"agents": [{"agent": 2, "round": 2, "recover": 4}]}), config,
        build_topology(config, 0), 0)
    third = 1 / 3
    expected = np.array([
        [third, third, 0, 0, third],
        [third, 2 * third, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 0, 2 * third, third],
        [third, 0, 0, third, third],
    ])
    for k in (2, 3):
        np.testing.assert_allclose(schedule.network(k).mixing_matrix, expected, atol=1e-12)
    for k in (1, 4):
        np.testing.assert_allclose(schedule.network(k).mixing_matrix,
                                   schedule.topology.mixing_matrix, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["polyak", "nesterov"])
def test_a_crashed_agent_is_frozen_and_the_run_equals_the_matrix_form_with_pi_k(
        variant: str) -> None:
    """Agent 2 is down in rounds 2–3 and links drop: it publishes nothing while down, its
    point stays what it published in round 1, and every agent ends where the matrix form
    with the rounds' Π_k (and frozen rows for the agents down) says."""
    from decentral_bench.engines.flower.simulation import simulate
    from decentral_bench.engines.reference import reference_gossip

    scenario = tiny_scenario(
        topology={"kind": "ring", "agents": 5},
        methods=[{"name": "M", "algorithm": "cdmsgd", "variant": variant,
                  "momentum_buffer": "iterates"}],
        training={"rounds": 5, "batch_size": 16, "lr": 0.1, "seed": 2, "local_steps": 2},
        failures={"agents": [{"agent": 2, "round": 2, "recover": 4}],
                  "links": {"drop_probability": 0.3, "seed": 4}})
    plan = MethodPlan.of(scenario, "M")
    reports = []
    final = simulate(plan, report=reports.append)
    assert [report.agents for report in reports] == [
        [0, 1, 2, 3, 4], [0, 1, 3, 4], [0, 1, 3, 4], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]
    expected = reference_gossip(plan)
    for agent in range(5):
        for got, want in zip(final[agent], expected[agent], strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert any(schedule_drops for schedule_drops in
               (plan.failure_schedule.dropped_edges(k) for k in range(1, 6)))
