"""Time-varying graphs (`topology.schedule`): each round's Π_k against its definition, the
per-round and per-window checks, bad input, the clock on a one-peer round, and the
vectorized engine against the matrix form on a schedule (the Flower engine against the
vectorized one is in tests/test_vectorized.py's slow cases)."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from conftest import observed_run, tiny_scenario
from typer.testing import CliRunner

from decentral_bench.cli import entry as cli
from decentral_bench.engines.reference import reference_gossip
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.network.families import TopologyError
from decentral_bench.network.schedules import GraphSchedule
from decentral_bench.network.topology import build_topology
from decentral_bench.scenario import TopologyConfig


def _schedule(**topology: object) -> GraphSchedule:
    config = TopologyConfig(**topology)  # type: ignore[arg-type]
    return GraphSchedule(config, build_topology(config, 0), seed=5)


def test_one_peer_exponential_averages_exactly_in_log2_n_rounds() -> None:
    """8 agents: rounds 1, 2, 3 send to i + 1, i + 2, i + 4 with weight ½; their product
    is J = 11ᵀ/8, so any starting points are averaged exactly after 3 rounds."""
    schedule = _schedule(kind="exponential", agents=8, schedule="one_peer_exponential")
    assert schedule.period == 3
    for server_round, hop in ((1, 1), (2, 2), (3, 4), (4, 1)):
        _, matrix = schedule.round(server_round)
        expected = np.eye(8) / 2
        for i in range(8):
            expected[(i + hop) % 8, i] = 0.5
        np.testing.assert_array_equal(matrix, expected)
        assert np.count_nonzero(matrix - np.diag(np.diag(matrix))) == 8  # one message each
    np.testing.assert_allclose(schedule.product(1, 3), np.full((8, 8), 1 / 8), atol=1e-15)
    points = np.random.default_rng(0).normal(size=(8, 3))
    np.testing.assert_allclose(schedule.product(2, 3) @ points,
                               np.tile(points.mean(axis=0), (8, 1)), atol=1e-12)
    assert schedule.product_lambda2() == 0.0
    schedule.check(rounds=10)


def test_random_matching_is_a_seeded_matching_averaged_pairwise() -> None:
    schedule = _schedule(kind="complete", agents=8, schedule="random_matching")
    graphs = [schedule.round(k)[0] for k in range(1, 6)]
    for graph in graphs:
        assert all(degree == 1 for _, degree in graph.degree())  # perfect on K_8
    assert len({tuple(sorted(g.edges())) for g in graphs}) > 1  # drawn again each round
    graph, matrix = schedule.round(3)
    for j, l in graph.edges():
        assert matrix[j, l] == matrix[l, j] == matrix[j, j] == 0.5
    np.testing.assert_array_equal(matrix, matrix.T)
    again = _schedule(kind="complete", agents=8, schedule="random_matching")
    np.testing.assert_array_equal(again.round(3)[1], matrix)  # a function of seed and round
    ring = _schedule(kind="ring", agents=7, schedule="random_matching")
    for k in range(1, 6):
        graph = ring.round(k)[0]
        assert set(map(frozenset, graph.edges())) <= set(map(frozenset, nx.cycle_graph(7).edges()))
        assert nx.maximal_matching(graph) and len(graph.edges()) in (2, 3)  # maximal on C_7


def test_resample_draws_a_new_random_regular_graph_each_round() -> None:
    schedule = _schedule(kind="random_regular", agents=10, degree=3, schedule="resample")
    first, second = schedule.round(1), schedule.round(2)
    assert sorted(first[0].edges()) != sorted(second[0].edges())
    for graph, matrix in (first, second):
        assert {degree for _, degree in graph.degree()} == {3}
        np.testing.assert_allclose(matrix, matrix.T)
        np.testing.assert_allclose(matrix.sum(axis=0), 1.0)
    assert len(schedule.union_edges) == 45  # any pair may be linked in some round


def test_a_window_whose_union_is_disconnected_is_refused() -> None:
    """One round of a matching on a ring never connects it; the default window of 2N
    rounds of perfect matchings on K_4 does (in every window of this seed)."""
    with pytest.raises(TopologyError, match=r"union of the graphs of rounds 1\.\.1 has 4 "
                                            r"components.*schedule_window"):
        _schedule(kind="ring", agents=8, schedule="random_matching", schedule_window=1).check(5)
    _schedule(kind="complete", agents=4, schedule="random_matching").check(12)


@pytest.mark.parametrize(("topology", "failures", "message"), [
    ({"kind": "exponential", "agents": 6, "schedule": "one_peer_exponential"}, None,
     "needs a power of two agents"),
    ({"kind": "ring", "agents": 8, "schedule": "one_peer_exponential"}, None,
     "runs on kind exponential"),
    ({"kind": "ring", "agents": 8, "schedule": "resample"}, None,
     "draws a random family again"),
    ({"kind": "ring", "agents": 8, "schedule": "random_matching", "schedule_window": 1}, None,
     "union of the graphs of rounds 1..1"),
    ({"kind": "ring", "agents": 8, "schedule": "random_matching"},
     {"agents": [{"agent": 1, "round": 2}]}, "failures are not modelled on a time-varying"),
])
def test_validate_rejects_a_bad_schedule(tmp_path: Path, topology: dict,
                                         failures: dict | None, message: str) -> None:
    scenario = {"name": "s", "dataset": {"name": "digits"}, "topology": topology,
                "training": {"rounds": 4}, "methods": [{"name": "C", "algorithm": "cdsgd"}],
                **({"failures": failures} if failures else {})}
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(scenario))
    result = CliRunner().invoke(cli.cli, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "s.yaml" in result.output and "topology" in result.output
    assert message in " ".join(result.output.split())


def test_topology_prints_the_period_and_the_products_lambda2(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({"name": "s", "methods": [{"name": "C", "algorithm": "cdsgd"}],
                                "topology": {"kind": "exponential", "agents": 16,
                                             "schedule": "one_peer_exponential"}}))
    result = CliRunner().invoke(cli.cli, ["topology", str(path), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert (shown["schedule"], shown["period"], shown["window"]) == \
        ("one_peer_exponential", 4, 4)
    assert shown["product_lambda2"] == 0.0


SCHEDULES = {
    "one-peer-exponential": {"kind": "exponential", "agents": 8,
                             "schedule": "one_peer_exponential"},
    "random-matching": {"kind": "ring", "agents": 6, "schedule": "random_matching"},
    "resample": {"kind": "random_regular", "agents": 6, "degree": 3, "schedule": "resample"},
}


@pytest.mark.parametrize("case", sorted(SCHEDULES))
def test_a_schedule_on_the_vectorized_engine_equals_the_matrix_form(case: str) -> None:
    plan = MethodPlan.of(tiny_scenario(topology=SCHEDULES[case], training={
        "rounds": 4, "batch_size": 16, "lr": 0.1, "seed": 3}), "CDSGD")
    final, rounds, _ = observed_run(plan, VectorizedEngine())
    expected = reference_gossip(plan)
    for agent in expected:
        for got, want in zip(final[agent], expected[agent], strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    logged = {k: rounds[k]["round_lambda2"] for k in rounds if "round_lambda2" in rounds[k]}
    assert 1 in logged  # logged when it changes: the round's own Π_k, as the schedule gives
    for k, value in logged.items():
        assert value == pytest.approx(plan.failure_schedule.network(k).lambda2)


def test_a_one_peer_round_sends_one_message_per_agent_on_the_clock() -> None:
    """One message of s bytes per agent through its 1 MB/s uplink: 10 ms + s / 1 MB/s,
    where the static exponential graph of 8 sends 5 (its degree)."""
    network = {"latency": "10 ms", "agent_uplink": "1 MB/s", "compute": {"step_seconds": "0 s"}}
    size = 4 * (64 * 16 + 16 + 16 * 10 + 10)
    timed = {}
    for schedule in ("one_peer_exponential", None):
        topology = {"kind": "exponential", "agents": 8,
                    **({"schedule": schedule} if schedule else {})}
        plan = MethodPlan.of(tiny_scenario(topology=topology, network=network,
                                           training={"rounds": 2, "seed": 3}), "CDSGD")
        timed[schedule] = observed_run(plan, VectorizedEngine())[1][2]
    assert timed["one_peer_exponential"]["communication_time_s"] == \
        pytest.approx(0.01 + size / 1e6)
    assert timed[None]["communication_time_s"] == pytest.approx(0.01 + 5 * size / 1e6)
    assert timed["one_peer_exponential"]["bytes_moved"] == 8 * size
