"""AD-PSGD (asynchronous gossip on the simulated clock): the event schedule's order, its
synchronous equivalent, staleness and stragglers, the rule's passive and active steps, bad
input. The Flower and vectorized engines against the event-by-event matrix form are the
equality matrix's `ad-psgd` case (tests/test_equality_matrix.py)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import observed_run, tiny_scenario
from typer.testing import CliRunner

from decentral_bench.cli import entry as cli
from decentral_bench.engines.reference_async import pairwise_average
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.network.asynchrony import build_schedule, steps_per_second
from decentral_bench.network.clock import NetworkClock
from decentral_bench.network.topology import build_topology
from decentral_bench.scenario import TopologyConfig
from decentral_bench.scenario.network import NetworkConfig
from strategies.ad_psgd import ADPSGD


def _schedule(network: dict, agents: int = 8, rounds: int = 6, kind: str = "ring"):
    topology = build_topology(TopologyConfig(kind=kind, agents=agents))  # type: ignore[arg-type]
    matrix = topology.mixing_matrix
    neighbours = [[int(l) for l in np.flatnonzero(matrix[j]) if l != j] for j in range(agents)]
    clock = NetworkClock(NetworkConfig.model_validate(network), 0, agents, 32,
                         list(topology.graph.edges()))
    return build_schedule(clock, neighbours, rounds, message_bytes=4000.0, seed=0), clock, \
        matrix


def test_equal_compute_and_no_latency_is_the_round_robin_equivalent() -> None:
    """Equal compute times, no latency: virtual round k is agent 0's, 1's, ..., 7's k-th
    step, in that order, each on its own minibatch k − 1, and a tick closes at the first
    event that shares an agent with it."""
    schedule, _, matrix = _schedule({"compute": {"step_seconds": "10 ms"}})
    for k, ticks in enumerate(schedule.ticks_per_round, start=1):
        events = [(a, p, s) for tick in ticks
                  for a, p, s in zip(tick.active, tick.passive, tick.steps, strict=True)]
        assert [a for a, _, _ in events] == list(range(8))
        assert all(s == k - 1 for _, _, s in events)
        assert all(matrix[a, p] > 0 and a != p for a, p, _ in events)
        for tick in ticks:
            members = tick.active + tick.passive
            assert len(set(members)) == len(members)  # a matching
        assert schedule.rounds[k - 1].ends_s == pytest.approx(0.01 * k)
    # staleness: round 1 reads x_0, so agent i's gradient is i steps old; later ones N − 1
    assert schedule.rounds[0].staleness == list(range(8))
    assert all(r.staleness == [7] * 8 for r in schedule.rounds[1:])


def test_a_straggler_slows_a_synchronous_round_tenfold_but_ad_psgd_by_one_in_n() -> None:
    """One agent of 16 at 10× the compute time: the barrier waits for it every round; the
    other agents go on, so AD-PSGD's gradient steps per second drop by about 1/N."""
    base = {"compute": {"step_seconds": "10 ms"}}
    slow = {"compute": {"step_seconds": "10 ms",
                        "stragglers": {"fraction": 1 / 16, "slowdown": 10}}}
    agents, steps = 16, np.ones(16)
    fast_schedule, fast_clock, matrix = _schedule(base, agents, rounds=40)
    slow_schedule, slow_clock, _ = _schedule(slow, agents, rounds=40)
    everyone = range(agents)
    sync_fast = fast_clock.gossip_round(1, matrix, everyone, np.full(agents, 4000), steps)
    sync_slow = slow_clock.gossip_round(1, matrix, everyone, np.full(agents, 4000), steps)
    assert sync_slow.total_s / sync_fast.total_s == pytest.approx(10.0)
    drop = 1 - steps_per_second(slow_schedule) / steps_per_second(fast_schedule)
    assert 0.5 / agents < drop < 1.5 / agents  # 0.9 / 16 in the limit


def test_latency_and_bandwidth_time_the_pairwise_exchange() -> None:
    """No compute: each step is one two-way exchange, λ + s / bandwidth (1 ms + 4,000 bytes
    at 8 Mbit/s = 1 MB/s: 4 ms), so round k ends at 5k ms."""
    schedule, _, _ = _schedule({"latency": "1 ms", "agent_uplink": "8 Mbit/s",
                                "agent_downlink": "8 Mbit/s"})
    assert [r.ends_s for r in schedule.rounds] == pytest.approx([0.005 * k
                                                                for k in range(1, 7)])
    assert schedule.rounds[0].communication_s == pytest.approx(0.005)


def test_the_schedule_is_seeded() -> None:
    network = {"latency": {"kind": "lognormal", "median": "5 ms", "sigma": 0.5},
               "compute": {"step_seconds": "10 ms", "jitter": 0.2}}
    first, _, _ = _schedule(network)
    second, _, _ = _schedule(network)
    assert [(t.active, t.passive, t.steps) for t in first.ticks] == \
        [(t.active, t.passive, t.steps) for t in second.ticks]
    other, _, _ = _schedule({**network, "seed": 5})  # another network: other times
    assert [r.ends_s for r in other.rounds] != [r.ends_s for r in first.rounds]


def test_an_agent_without_a_neighbour_is_refused() -> None:
    clock = NetworkClock(NetworkConfig.model_validate({"latency": "1 ms"}), 0, 3, 32, [(0, 1)])
    with pytest.raises(ValueError, match="agent 2 has no neighbour"):
        build_schedule(clock, [[1], [0], []], 2, 4000.0, seed=0)


def test_the_rule_averages_then_applies_the_gradient_read_before() -> None:
    """Active: x ← (x_i + x_j)/2 − α g(x̂), x̂ ← x. Passive (`translate`): x moves, x̂ stays."""
    rule = ADPSGD()
    state = rule.restore([torch.tensor([1.0, 2.0])], {"read": [torch.tensor([0.0, 4.0])]})
    mixed = [torch.tensor([3.0, 3.0])]
    new, _ = rule.advance(state, mixed, 0.5, lambda p, s: ([2 * p[0]], 0.0), 0.25, 0)
    assert new["x"][0].tolist() == [3.0, 1.0]  # (3, 3) − ¼ · 2 · (0, 4)
    assert new["read"][0] is new["x"][0]
    moved = rule.translate(state, [torch.tensor([1.0, -1.0])])
    assert moved["x"][0].tolist() == [2.0, 1.0] and moved["read"][0].tolist() == [0.0, 4.0]
    assert rule.restore([torch.ones(2)], {})["read"][0].tolist() == [1.0, 1.0]  # x̂ = x_0
    assert pairwise_average(3, 0, 2, torch.float64, torch.device("cpu")).tolist() == \
        [[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]]


def test_a_run_logs_staleness_and_simulated_time_per_virtual_round() -> None:
    scenario = tiny_scenario(
        topology={"kind": "ring", "agents": 4},
        methods=[{"name": "AD", "algorithm": "ad_psgd"}],
        network={"compute": {"step_seconds": "10 ms",
                             "stragglers": {"fraction": 0.25, "slowdown": 5}}})
    plan = MethodPlan.of(scenario, "AD")
    final, rounds, _ = observed_run(plan, VectorizedEngine())
    assert sorted(rounds) == list(range(1, 6))
    times = [rounds[k]["sim_time_s"] for k in range(1, 6)]
    assert times == pytest.approx([plan.async_schedule.rounds[k].ends_s for k in range(5)])
    assert all(later > earlier for earlier, later in itertools.pairwise(times))
    assert rounds[5]["staleness_max"] >= rounds[5]["staleness_mean"] > 0
    model = 64 * 16 + 16 + 16 * 10 + 10
    assert rounds[5]["bytes_moved"] == 2 * 4 * 4 * model  # N events, both ways
    assert not np.allclose(final[0][0], plan.initial_parameters[0])


@pytest.mark.parametrize(("extra", "message"), [
    ({}, "add one, e.g. network:"),
    ({"network": {"latency": "1 ms"}, "topology": {"kind": "exponential", "agents": 8,
                                                   "schedule": "one_peer_exponential"}},
     "takes no time-varying schedule"),
    ({"network": {"latency": "1 ms"}, "topology": {"kind": "directed_ring", "agents": 5}},
     "use algorithm: sgp (push-sum)"),
    ({"network": {"latency": "1 ms"}, "training": {"rounds": 3, "local_steps": 2}},
     "takes one gradient step per gossip round"),
    ({"network": {"latency": "1 ms"}, "topology": {"kind": "complete", "agents": 1}},
     "needs at least 2 agents"),
])
def test_validate_rejects_what_ad_psgd_cannot_run(tmp_path: Path, extra: dict,
                                                   message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({"name": "s", "dataset": {"name": "digits"},
                                "topology": {"kind": "ring", "agents": 4},
                                "training": {"rounds": 3},
                                "methods": [{"name": "AD", "algorithm": "ad_psgd"}], **extra}))
    result = CliRunner().invoke(cli.cli, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "s.yaml" in result.output
    assert message in " ".join(result.output.split())
