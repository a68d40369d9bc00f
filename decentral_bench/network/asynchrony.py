"""Asynchronous gossip's events on the simulated clock (AD-PSGD, Lian et al., ICML 2018).

Each agent i loops on its own clock, with no barrier: it reads its point x̂_i = x_i,
computes a minibatch gradient g_i(x̂_i) (c_i seconds: `ComputeModel.step_seconds`, its
straggling and jitter included), averages with one neighbour j drawn uniformly from its
graph neighbours (x_i, x_j ← (x_i + x_j) / 2, after the exchange's e seconds), then
applies its gradient, x_i ← x_i − α g_i(x̂_i), and starts its next step. Its s-th step
(from 0) therefore ends at

    T_i,s = T_i,s−1 + c_i,s + e_i,s,   T_i,−1 = 0,

where c_i,s = t_0 σ_i,s+1 ε_i,s+1 (the compute model's round s + 1) and e_i,s is the
two-way exchange: each direction takes λ + max(s / U, s / D, s / B) (its latency drawn
per event from the generator seeded (seed, 14, i, s), one per direction; `links_file`
latencies and bandwidths apply), and e is the slower direction.

What is modelled: the pairwise average is atomic at T_i,s (both agents hold the average
from then on), and every agent initiates its own averages; j is passive in i's event (it
only averages). The authors' implementation splits the graph into active and passive
agents (a bipartite graph) so that two agents never wait on each other's locks; on the
simulated clock no lock is taken, so the split is not needed and not modelled. The
gradient is stale: x_i may have been averaged by its neighbours since i read it. The
staleness of a gradient is the number of gradient steps every agent applied between its
read and its application.

Events happen in the order of (T, s, i): time first, ties by step count, then agent.
With no compute time and no latency every T is 0, so the agents take turns: virtual round
k is agent 0's, 1's, ..., (N − 1)'s k-th step, in that order (the synchronous equivalent,
see docs/methods/directed-async.md). Consecutive events on disjoint pairs commute, so a
*tick* groups a run of consecutive events no two of which share an agent: the vectorized
engine applies a tick's averages at once (a matching), the Flower router sends its
messages in one exchange; a tick never crosses the end of a virtual round. Virtual round k
ends with the (kN)-th gradient step of all agents, N gradient steps being one synchronous
round's worth, so epochs and step sizes count as in a synchronous run.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from decentral_bench.network.clock import NetworkClock, draw_latencies

ASYNC_LATENCY, PARTNER = 14, 31
POINTS_PER_EVENT = 2  # what an event carries over the modelled network: i → j and j → i


@dataclass(frozen=True)
class Tick:
    """Events that commute: agent `active[e]` averages with `passive[e]` and applies its
    gradient, taken on its minibatch `steps[e]`, in virtual round `virtual_round`."""

    virtual_round: int
    active: list[int]
    passive: list[int]
    steps: list[int]


@dataclass
class VirtualRound:
    """What one virtual round (N gradient steps of all agents) took on the clock."""

    steps_per_agent: np.ndarray  # the gradient steps each agent applied in it
    ends_s: float = 0.0  # simulated time of its last event
    compute_s: float = 0.0  # the share of its seconds spent computing (see `round_seconds`)
    communication_s: float = 0.0
    staleness: list[int] = field(default_factory=list)  # of each gradient it applied


@dataclass(frozen=True)
class AsyncSchedule:
    """Every tick of a run and what its virtual rounds took (see the module docstring)."""

    ticks: list[Tick]
    rounds: list[VirtualRound]

    @cached_property
    def ticks_per_round(self) -> list[list[Tick]]:
        """The ticks of virtual round k at index k − 1."""
        grouped: list[list[Tick]] = [[] for _ in self.rounds]
        for tick in self.ticks:
            grouped[tick.virtual_round - 1].append(tick)
        return grouped

    def metrics(self, virtual_round: int) -> dict[str, float]:
        """Round k's figures: staleness (mean, max), the fewest gradient steps an agent took,
        and its events' ticks."""
        summary = self.rounds[virtual_round - 1]
        return {
            "staleness_mean": float(np.mean(summary.staleness)),
            "staleness_max": float(np.max(summary.staleness)),
            "agent_steps_min": float(summary.steps_per_agent.min()),
            "ticks": float(len(self.ticks_per_round[virtual_round - 1])),
        }


def pair_exchange_seconds(clock: NetworkClock, first: int, second: int, size: float,
                          latencies: np.ndarray) -> float:
    """Both directions of one pairwise exchange of `size` bytes between neighbours, each
    with its own latency: the slower one's λ + max(s / U, s / D, s / B)."""
    index = clock.edge_index(np.array([first, second]), np.array([second, first]))
    own = clock.link_latency[index]
    latency = np.where(np.isnan(own), latencies, own)
    bandwidth = np.minimum(np.minimum(clock.uplink[[first, second]],
                                      clock.downlink[[second, first]]),
                           clock.link_bandwidth[index])
    return float(np.max(latency + size / bandwidth))


def build_schedule(clock: NetworkClock, neighbours: list[list[int]], rounds: int,
                   message_bytes: float, seed: int) -> AsyncSchedule:
    """The events of `rounds` virtual rounds of N agents over the graph whose neighbour
    lists are `neighbours`, timed by `clock`, the partners drawn from the run's `seed`
    (see the module docstring)."""
    agents = len(neighbours)
    lonely = [agent for agent, choices in enumerate(neighbours) if not choices]
    if lonely:
        raise ValueError(f"agent {lonely[0]} has no neighbour to average with: asynchronous "
                         "gossip needs every agent to have one (a connected graph of at least "
                         "2 agents)")
    total = rounds * agents
    compute_cache: dict[int, np.ndarray] = {}

    def compute(agent: int, step: int) -> float:
        times = compute_cache.get(step + 1)
        if times is None:
            if len(compute_cache) > 4 * agents:
                compute_cache.clear()
            times = compute_cache[step + 1] = clock.compute.step_seconds(step + 1)
        return float(times[agent])

    def plan_step(agent: int, step: int, start: float) -> tuple[float, int, float, float]:
        choices = neighbours[agent]
        partner = choices[int(np.random.default_rng([seed, PARTNER, agent, step])
                              .integers(len(choices)))]
        latencies = draw_latencies(clock.config.latency,
                                   [clock.seed, ASYNC_LATENCY, agent, step], 2)
        working = compute(agent, step)
        talking = pair_exchange_seconds(clock, agent, partner, message_bytes, latencies)
        return start + working + talking, partner, working, talking

    read_at = [0] * agents  # gradient steps applied when each agent read its point
    pending = {}
    queue: list[tuple[float, int, int]] = []
    for agent in range(agents):
        pending[agent] = plan_step(agent, 0, 0.0)
        heapq.heappush(queue, (pending[agent][0], 0, agent))
    ticks: list[Tick] = []
    summaries = [VirtualRound(np.zeros(agents, dtype=np.int64)) for _ in range(rounds)]
    applied, busy = 0, set[int]()
    current: Tick | None = None
    working_total = talking_total = 0.0
    previous_end = 0.0
    while applied < total:
        when, step, agent = heapq.heappop(queue)
        _, partner, working, talking = pending.pop(agent)
        virtual_round = applied // agents + 1
        if current is None or current.virtual_round != virtual_round or \
                agent in busy or partner in busy:
            current = Tick(virtual_round, [], [], [])
            ticks.append(current)
            busy = set()
        current.active.append(agent)
        current.passive.append(partner)
        current.steps.append(step)
        busy.update((agent, partner))
        summary = summaries[virtual_round - 1]
        summary.staleness.append(applied - read_at[agent])
        summary.steps_per_agent[agent] += 1
        working_total += working
        talking_total += talking
        applied += 1
        read_at[agent] = applied
        if applied % agents == 0:  # the virtual round ends with this event
            summary.ends_s = when
            spent = when - previous_end
            share = working_total / (working_total + talking_total) \
                if working_total + talking_total > 0 else 1.0
            summary.compute_s, summary.communication_s = spent * share, spent * (1 - share)
            previous_end, working_total, talking_total = when, 0.0, 0.0
        pending[agent] = plan_step(agent, step + 1, when)
        heapq.heappush(queue, (pending[agent][0], step + 1, agent))
    return AsyncSchedule(ticks, summaries)


def steps_per_second(schedule: AsyncSchedule) -> float:
    """Gradient steps of all agents per simulated second, over the whole schedule."""
    seconds = schedule.rounds[-1].ends_s
    steps = sum(len(round_.staleness) for round_ in schedule.rounds)
    return steps / seconds if seconds > 0 else math.inf
