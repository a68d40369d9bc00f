"""The simulated clock on cases computed by hand (docs/network/time-model.md has the
formulas): a 4-agent ring, a star, FedAvg with 3 of 5 agents sampled, a straggler, an
all-reduce, consensus control's exchanges, crashes and lost links, per-link overrides;
seeded draws; and more bandwidth never makes a round slower."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decentral_bench.network.clock import (
    NetworkClock,
    RoundTime,
    arrival_times,
    draw_latencies,
    straggler_count,
)
from decentral_bench.network.topology import metropolis_weights
from decentral_bench.scenario.network import NetworkConfig
from strategies.consensus_control import ControlOutcome

MB = 1_000_000  # a message of 1 MB
LINK = "100 Mbit/s"  # 12.5 MB/s: 1 MB in 0.08 s
SERVER = "1 Gbit/s"  # 125 MB/s: 1 MB in 0.008 s


def network(**keys: object) -> NetworkConfig:
    settings = {"latency": "10 ms", "agent_uplink": LINK, "agent_downlink": LINK,
                "server_uplink": SERVER, "server_downlink": SERVER,
                "compute": {"step_seconds": "50 ms"}, **keys}
    return NetworkConfig.model_validate(settings)


def gossip(graph: nx.Graph, config: NetworkConfig, alive: set[int] | None = None,
           control: ControlOutcome | None = None, server_round: int = 1,
           steps: float = 1.0) -> RoundTime:
    agents = graph.number_of_nodes()
    members = set(range(agents)) if alive is None else alive
    clock = NetworkClock(config, seed=0, agents=agents, batch_size=32, edges=graph.edges())
    alive_graph = graph.subgraph(members).copy()
    alive_graph.add_nodes_from(range(agents))
    return clock.gossip_round(server_round, metropolis_weights(alive_graph), members,
                              np.full(agents, MB), np.full(agents, steps), control)


def close(got: RoundTime, compute: float, communication: float) -> None:
    assert got.compute_s == pytest.approx(compute, abs=1e-12)
    assert got.communication_s == pytest.approx(communication, abs=1e-12)


def test_a_4_agent_ring() -> None:
    """Each agent sends 1 MB to two neighbours over its uplink (2 MB at 12.5 MB/s:
    0.16 s) and receives 2 MB over its downlink (0.16 s): 50 ms + 10 ms + 0.16 s."""
    close(gossip(nx.cycle_graph(4), network()), 0.05, 0.17)
    close(gossip(nx.cycle_graph(4), network(), steps=3), 0.15, 0.17)  # local_steps 3


def test_a_star_waits_for_its_hub() -> None:
    """The hub of a 5-agent star sends 4 MB and receives 4 MB: 0.32 s each way; the
    leaves wait for its message to arrive."""
    close(gossip(nx.star_graph(4), network()), 0.05, 0.01 + 0.32)
    # A bigger downlink at every agent does not help: the hub's uplink is the bottleneck.
    close(gossip(nx.star_graph(4), network(agent_downlink="1 Gbit/s")), 0.05, 0.01 + 0.32)


def test_fedavg_with_3_of_5_agents_sampled() -> None:
    """Agents 0, 2, 4 take 10, 20 and 30 steps of 50 ms. Down: 10 ms + max(3 MB / 125 MB/s,
    1 MB / 12.5 MB/s) = 0.09 s; up the same; the slowest agent computes 1.5 s."""
    clock = NetworkClock(network(), seed=0, agents=5, batch_size=32)
    steps = np.array([10.0, 99.0, 20.0, 99.0, 30.0])  # agents 1 and 3 are not sampled
    sizes = np.full(5, MB)
    close(clock.fedavg_round(1, {0, 2, 4}, MB, sizes, steps), 1.5, 0.18)
    # A 10 Mbit/s server (1.25 MB/s) serializes the three models: 2.4 s down, 2.4 s up.
    slow = NetworkClock(network(server_uplink="10 Mbit/s", server_downlink="10 Mbit/s"),
                        seed=0, agents=5, batch_size=32)
    close(slow.fedavg_round(1, {0, 2, 4}, MB, sizes, steps), 1.5, 2 * (0.01 + 2.4))
    # After the server is lost the agents only compute.
    close(clock.local_round(4, {0, 1, 2}, steps), 99 * 0.05, 0.0)


def test_a_straggler_holds_every_agent() -> None:
    """One straggler of four (⌊0.25 × 4 + 1/2⌋ = 1) at 5× computes 0.25 s: its
    neighbours' messages wait for it, and the round waits for them (a barrier)."""
    config = network(compute={"step_seconds": "50 ms",
                              "stragglers": {"fraction": 0.25, "slowdown": 5}})
    close(gossip(nx.cycle_graph(4), config), 0.25, 0.17)
    clock = NetworkClock(config, seed=0, agents=4, batch_size=32)
    assert clock.compute.stragglers(1).sum() == 1
    assert np.array_equal(clock.compute.stragglers(1), clock.compute.stragglers(7))


def test_stragglers_drawn_again_each_round_with_resample() -> None:
    config = network(compute={"samples_per_second": 640, "jitter": 0.2, "stragglers": {
        "fraction": 0.1, "slowdown": 4, "resample": True}})
    clock = NetworkClock(config, seed=5, agents=100, batch_size=32)
    draws = [clock.compute.stragglers(k) for k in range(1, 6)]
    assert all(draw.sum() == 10 for draw in draws)
    assert len({tuple(np.flatnonzero(draw)) for draw in draws}) == 5
    times = clock.compute.step_seconds(3)
    again = NetworkClock(config, seed=5, agents=100, batch_size=32).compute.step_seconds(3)
    np.testing.assert_array_equal(times, again)  # a function of (seed, agent, round)
    # 32 samples at 640/s: 50 ms a step, times a log-normal factor of median 1.
    assert np.median(times[~draws[2]]) == pytest.approx(0.05, rel=0.1)
    assert np.median(times[draws[2]]) == pytest.approx(0.2, rel=0.5)
    assert [straggler_count(f, 8) for f in (0.0, 0.05, 0.1, 0.5, 1.0)] == [0, 0, 1, 4, 8]


def test_an_all_reduce_and_gossip_only_exchanges() -> None:
    """Exact averaging of 4 agents: 2(N − 1) = 6 steps of a 1/4 MB chunk at 12.5 MB/s
    (0.02 s) and 10 ms each, after the training exchange; fixed control's 2 exchanges
    each take 10 ms + 0.16 s from a common start."""
    exact = ControlOutcome(phase=1, steps=1, before=1.0, after=0.0, target=None, exact=True)
    close(gossip(nx.cycle_graph(4), network(), control=exact), 0.05, 0.17 + 6 * 0.03)
    fixed = ControlOutcome(phase=1, steps=2, before=1.0, after=0.5, target=None)
    close(gossip(nx.cycle_graph(4), network(), control=fixed), 0.05, 0.17 + 2 * 0.17)


def test_centralized_sgd_has_compute_time_only() -> None:
    close(gossip(nx.empty_graph(1), network(), steps=2), 0.1, 0.0)


def test_crashes_and_lost_links_change_what_is_sent() -> None:
    """A crashed leaf of the star, or its lost link: the hub sends and receives 3 MB
    (0.24 s), not 4; the cut-off leaf waits for nobody."""
    close(gossip(nx.star_graph(4), network(), alive={0, 1, 2, 3}), 0.05, 0.01 + 0.24)
    cut = nx.star_graph(4)
    cut.remove_edge(0, 4)
    clock = NetworkClock(network(), seed=0, agents=5, batch_size=32,
                         edges=nx.star_graph(4).edges())
    close(clock.gossip_round(1, metropolis_weights(cut), range(5), np.full(5, MB),
                             np.ones(5)), 0.05, 0.01 + 0.24)


def test_links_file_overrides_latency_and_bandwidth(tmp_path: Path) -> None:
    """Link 0–1 at 8 Mbit/s (1 MB/s: a 1 MB message takes 1 s), link 2–3 with 100 ms."""
    links = tmp_path / "links.txt"
    links.write_text("# j l latency bandwidth\n0 1 - 8Mbit/s\n2 3 100ms -\n")
    config = network(links_file=str(links))
    close(gossip(nx.cycle_graph(4), config), 0.05, 0.01 + 1.0)
    links.write_text("2 3 100ms -\n")
    close(gossip(nx.cycle_graph(4), network(links_file=str(links))), 0.05, 0.1 + 0.16)


def test_latency_draws_are_seeded_per_message() -> None:
    lognormal = NetworkConfig.model_validate(
        {"latency": {"kind": "lognormal", "median": "20 ms", "sigma": 0.5}}).latency
    draws = draw_latencies(lognormal, [3, 11, 1, 0], 20_000)
    assert np.median(draws) == pytest.approx(0.02, rel=0.03)
    np.testing.assert_array_equal(draws, draw_latencies(lognormal, [3, 11, 1, 0], 20_000))
    assert not np.array_equal(draws, draw_latencies(lognormal, [3, 11, 2, 0], 20_000))
    uniform = NetworkConfig.model_validate(
        {"latency": {"kind": "uniform", "low": "10 ms", "high": "30 ms"}}).latency
    spread = draw_latencies(uniform, [0], 10_000)
    assert 0.01 <= spread.min() < 0.011 and 0.029 < spread.max() <= 0.03
    # The round with drawn latencies ends when its slowest message arrives.
    config = network(latency={"kind": "uniform", "low": "10 ms", "high": "30 ms"})
    timed = gossip(nx.cycle_graph(8), config)
    assert 0.05 + 0.16 + 0.01 < timed.total_s <= 0.05 + 0.16 + 0.03
    assert timed == gossip(nx.cycle_graph(8), config)
    assert timed != gossip(nx.cycle_graph(8), config, server_round=2)


def test_no_compute_section_means_computing_takes_no_time() -> None:
    config = NetworkConfig.model_validate({"agent_uplink": "1 MB/s"})
    close(gossip(nx.cycle_graph(4), config), 0.0, 2.0)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), agents=st.integers(2, 12),
       factor=st.floats(1.0, 100.0))
def test_a_bigger_uplink_never_makes_a_round_slower(seed: int, agents: int,
                                                    factor: float) -> None:
    """Random graphs, message sizes, ready times and bandwidths: raising any agent's
    uplink (or every link's bandwidth) never delays any agent's last message."""
    draw = np.random.default_rng(seed)
    graph = nx.gnp_random_graph(agents, 0.5, seed=int(draw.integers(1 << 30)))
    pairs = [(j, l) for a, b in graph.edges() for j, l in ((a, b), (b, a))]
    senders = np.array([j for j, _ in pairs], dtype=np.int64)
    receivers = np.array([l for _, l in pairs], dtype=np.int64)
    sizes = draw.integers(1, 10 * MB, agents)
    ready = draw.random(agents)
    uplink, downlink = draw.uniform(1e5, 1e8, agents), draw.uniform(1e5, 1e8, agents)
    latency = draw.random(len(pairs)) * 0.05
    links = draw.uniform(1e5, 1e8, len(pairs))
    before = arrival_times(senders, receivers, sizes, ready, uplink, downlink, latency, links)
    faster = uplink.copy()
    faster[draw.integers(agents)] *= factor
    after = arrival_times(senders, receivers, sizes, ready, faster, downlink, latency, links)
    assert np.all(after <= before)
    wider = arrival_times(senders, receivers, sizes, ready, uplink, downlink, latency,
                          links * factor)
    assert np.all(wider <= before)


@pytest.mark.parametrize("uplink", ["10 Mbit/s", "100 Mbit/s", "1 Gbit/s"])
def test_a_bigger_server_uplink_never_makes_fedavg_slower(uplink: str) -> None:
    steps = np.arange(1.0, 9.0)
    sizes = np.full(8, MB)
    rounds = [NetworkClock(network(server_uplink=rate), 0, 8, 32).fedavg_round(
        1, range(8), MB, sizes, steps).total_s for rate in (uplink, "10 Gbit/s")]
    assert rounds[1] <= rounds[0]
