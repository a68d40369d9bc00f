"""The simulated clock: how long a round takes on the scenario's network, in seconds.

A pure function of the `network:` section, its seed, the round's number and what the
round moves (the engines report it; `decentral_bench.engines.timing` feeds it here), so it
is reproducible and the same on both engines. Notation for round k:

- A_k the alive agents; s_j the bytes of agent j's message (its encoded size);
- U_j, D_j an agent's uplink and downlink (`agent_uplink`, `agent_downlink`), U_S, D_S
  the server's; B_jl the bandwidth of link j–l (`links_file`); ∞ where not given;
- λ a message's latency (constant, or drawn per message; a link's own in `links_file`);
- t_0 one minibatch step's time (`step_seconds`, or batch / `samples_per_second`).

**Compute.** Agent j takes n_j minibatch steps in round k and needs

    c_j = n_j · t_0 · σ_j,k · ε_j,k

with σ_j,k = `slowdown` for the ⌊f N + 1/2⌋ stragglers (drawn once with the seed, or
every round with `resample`) and 1 for the others, and ε_j,k = exp(jitter · z_j,k),
z ~ N(0, 1) drawn per agent and round (1 without jitter). `ComputeModel.step_seconds`
gives t_0 σ_j,k ε_j,k as a function of (seed, agent, round): the per-agent times an
event-driven simulation needs.

**A gossip exchange** over Π_k: agent j, ready at r_j, sends s_j to each out-neighbour
l (π_lj ≠ 0, both alive). Its uplink serializes its out_j = Σ_{l∈out(j)} s_j bytes, l's
downlink its in_l = Σ_{j∈in(l)} s_j bytes, so the message j → l has arrived by

    a_jl = r_j + λ_jl + max(out_j / U_j, in_l / D_l, s_j / B_jl)

and agent l has everything at T_l = max(r_l, max_{j∈in(l)} a_jl). The exchange ends when
the slowest agent has everything (a barrier): T = max_{l∈A_k} T_l.

**A synchronous gossip round** (CDSGD, CDMSGD, ...) is the training exchange with
r_j = c_j, then consensus control's m_k gossip-only exchanges, each from r_j = 0;
centralized SGD (one agent, no neighbours) takes c_0. Exact averaging (consensus control
`exact`) is a ring all-reduce over the n = |A_k| alive agents: 2(n − 1) steps, each
moving a chunk of s / n bytes (s = max_j s_j) between ring neighbours,

    AR = Σ_{2(n − 1) steps} max λ + 2(n − 1) · (s / n) / min_{j∈A_k} min(U_j, D_j)

(the all-reduce routes over any pair of agents: links_file does not apply).

**A FedAvg round** with the m sampled agents P: the server sends the model (s bytes)
through its uplink, each agent computes, the uploads share the server's downlink:

    R = max_{j∈P} [ λ + max(m s / U_S, s / D_j) + c_j + λ + max(s_j / U_j, Σ_P s_i / D_S) ]

After the server is lost (mode `local`) the agents train alone: R = max_j c_j.

Every round reports `compute_time_s` = max_j c_j (the slowest alive agent's computing)
and `communication_time_s` = R − compute_time_s (what the exchanges add to it); both
are per round, and `sim_time_s` sums R over the rounds. More bandwidth never makes a
round slower: every term above falls or stays as a U, D or B grows.

Draws: latencies of round k's i-th exchange come from a generator seeded (seed, 11, k,
i), one per directed edge of the graph in order; the server's from (seed, 12, k); the
all-reduce's from (seed, 13, k); stragglers from (seed, 21) or (seed, 21, k); jitter
from (seed, 22, k). So a crash or a dropped link changes no other message's latency.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np

from decentral_bench.scenario.network import (
    ComputeConfig,
    LatencyConfig,
    NetworkConfig,
    read_links,
)
from strategies.consensus_control import ControlOutcome

LINK_LATENCY, SERVER_LATENCY, ALL_REDUCE_LATENCY, STRAGGLERS, JITTER = 11, 12, 13, 21, 22


@dataclass(frozen=True)
class RoundTime:
    """A round's simulated seconds: the slowest agent's computing and the rest."""

    compute_s: float
    communication_s: float

    @property
    def total_s(self) -> float:
        return self.compute_s + self.communication_s


def straggler_count(fraction: float, agents: int) -> int:
    """⌊fraction × N + 1/2⌋: the number of stragglers among N agents."""
    return math.floor(fraction * agents + 0.5)


class ComputeModel:
    """Each agent's time for a minibatch step, round by round (see the module docstring)."""

    def __init__(self, config: ComputeConfig | None, seed: int, agents: int,
                 batch_size: int) -> None:
        self.config = config
        self.seed = seed
        self.agents = agents
        if config is None:
            self.base = 0.0
        elif config.step_seconds is not None:
            self.base = float(config.step_seconds)
        else:
            self.base = batch_size / float(config.samples_per_second or 1.0)
        self.fixed = None if config is None or config.stragglers is None or \
            config.stragglers.resample else self._draw_stragglers([seed, STRAGGLERS])

    def _draw_stragglers(self, key: list[int]) -> np.ndarray:
        stragglers = self.config.stragglers if self.config is not None else None
        chosen = np.zeros(self.agents, dtype=bool)
        if stragglers is not None:
            count = straggler_count(stragglers.fraction, self.agents)
            chosen[np.random.default_rng(key).permutation(self.agents)[:count]] = True
        return chosen

    def stragglers(self, server_round: int) -> np.ndarray:
        """Which agents straggle in `server_round` (a boolean per agent)."""
        if self.fixed is not None:
            return self.fixed
        return self._draw_stragglers([self.seed, STRAGGLERS, server_round])

    def step_seconds(self, server_round: int) -> np.ndarray:
        """t_0 σ_j,k ε_j,k: each agent's time for one minibatch step in `server_round`."""
        times = np.full(self.agents, self.base)
        config = self.config
        if config is None or self.base == 0.0:
            return times
        if config.stragglers is not None:
            times[self.stragglers(server_round)] *= config.stragglers.slowdown
        if config.jitter is not None:
            noise = np.random.default_rng([self.seed, JITTER, server_round])
            times *= np.exp(config.jitter * noise.standard_normal(self.agents))
        return times

    def seconds(self, server_round: int, steps: np.ndarray) -> np.ndarray:
        """c_j = n_j t_0 σ_j,k ε_j,k for `steps` n_j per agent."""
        return steps * self.step_seconds(server_round)


def draw_latencies(latency: LatencyConfig, key: list[int], shape: int | tuple[int, ...],
                   ) -> np.ndarray:
    """Latencies of `shape` messages, drawn from the generator seeded `key`."""
    if latency.kind == "constant":
        return np.full(shape, float(latency.seconds))
    draws = np.random.default_rng(key)
    if latency.kind == "lognormal":
        median, sigma = float(latency.median or 0.0), float(latency.sigma or 0.0)
        return median * np.exp(sigma * draws.standard_normal(shape))
    low, high = float(latency.low or 0.0), float(latency.high or 0.0)
    return low + (high - low) * draws.random(shape)


def arrival_times(senders: np.ndarray, receivers: np.ndarray, sizes: np.ndarray,
                  ready: np.ndarray, uplink: np.ndarray, downlink: np.ndarray,
                  latency: np.ndarray, link_bandwidth: np.ndarray) -> np.ndarray:
    """T_l of every agent for one exchange of messages senders[i] → receivers[i]:
    a_jl = r_j + λ_jl + max(out_j / U_j, in_l / D_l, s_j / B_jl), T_l = max(r_l, a_jl)."""
    agents = len(ready)
    sent = sizes[senders].astype(float)
    out_bytes = np.bincount(senders, weights=sent, minlength=agents)
    in_bytes = np.bincount(receivers, weights=sent, minlength=agents)
    transfer = np.maximum(np.maximum(out_bytes[senders] / uplink[senders],
                                     in_bytes[receivers] / downlink[receivers]),
                          sent / link_bandwidth)
    done = ready.astype(float)
    np.maximum.at(done, receivers, ready[senders] + latency + transfer)
    return done


def all_reduce_seconds(latencies: np.ndarray, message_bytes: float,
                       bottleneck: float) -> float:
    """A ring all-reduce of `message_bytes` among n agents: `latencies` holds the 2(n − 1)
    steps' messages (one row a step), each step moving s / n bytes at `bottleneck` bytes/s."""
    steps = len(latencies)
    if steps == 0:
        return 0.0
    agents = steps // 2 + 1
    return float(latencies.max(axis=1).sum()) + steps * message_bytes / agents / bottleneck


def _bandwidth(value: float | None) -> float:
    return math.inf if value is None else float(value)


class NetworkClock:
    """Rounds' simulated time on one scenario's network (see the module docstring).

    `edges` are the graph's undirected edges (pairs j, l): latencies are drawn per
    directed edge in their order, and `links_file` overrides name some of them.
    """

    def __init__(self, config: NetworkConfig, seed: int, agents: int, batch_size: int,
                 edges: Iterable[tuple[int, int]] = ()) -> None:
        self.config = config
        self.seed = config.seed if config.seed is not None else seed
        self.agents = agents
        self.compute = ComputeModel(config.compute, self.seed, agents, batch_size)
        self.uplink = np.full(agents, _bandwidth(config.agent_uplink))
        self.downlink = np.full(agents, _bandwidth(config.agent_downlink))
        directed = {(j, l) for a, b in edges for j, l in ((a, b), (b, a)) if j != l}
        self.edge_keys = np.array(sorted(j * agents + l for j, l in directed), dtype=np.int64)
        self.link_latency = np.full(len(self.edge_keys), np.nan)
        self.link_bandwidth = np.full(len(self.edge_keys), math.inf)
        for link in read_links(config.links_file) if config.links_file else ():
            for j, l in ((link.first, link.second), (link.second, link.first)):
                index = self.edge_index(np.array([j]), np.array([l]))[0]
                if link.latency is not None:
                    self.link_latency[index] = link.latency
                if link.bandwidth is not None:
                    self.link_bandwidth[index] = link.bandwidth

    def edge_index(self, senders: np.ndarray, receivers: np.ndarray) -> np.ndarray:
        """Positions of the directed edges j → l among the graph's."""
        keys = senders.astype(np.int64) * self.agents + receivers
        index = np.searchsorted(self.edge_keys, keys)
        if len(keys) and (index.max() >= len(self.edge_keys)
                          or np.any(self.edge_keys[index] != keys)):
            raise ValueError("a message travels between agents that are not neighbours in "
                             "the graph")
        return index

    def _messages(self, matrix: np.ndarray, alive: Collection[int],
                  ) -> tuple[np.ndarray, np.ndarray]:
        """(senders, receivers) of the exchange over Π_k among the alive agents."""
        receivers, senders = np.nonzero(matrix)
        members = np.zeros(self.agents, dtype=bool)
        members[list(alive)] = True
        keep = (receivers != senders) & members[receivers] & members[senders]
        return senders[keep], receivers[keep]

    def exchange_seconds(self, server_round: int, exchange: int, senders: np.ndarray,
                         receivers: np.ndarray, sizes: np.ndarray, ready: np.ndarray,
                         alive: list[int]) -> float:
        """When the slowest alive agent has every message of the exchange."""
        index = self.edge_index(senders, receivers)
        drawn = draw_latencies(self.config.latency,
                               [self.seed, LINK_LATENCY, server_round, exchange],
                               len(self.edge_keys))
        latency = np.where(np.isnan(self.link_latency), drawn, self.link_latency)[index]
        done = arrival_times(senders, receivers, sizes, ready, self.uplink, self.downlink,
                             latency, self.link_bandwidth[index])
        return float(done[alive].max()) if alive else 0.0

    def all_reduce(self, server_round: int, alive: list[int], sizes: np.ndarray) -> float:
        """Exact averaging among the alive agents, as a ring all-reduce."""
        steps = 2 * (len(alive) - 1)
        latencies = draw_latencies(self.config.latency,
                                   [self.seed, ALL_REDUCE_LATENCY, server_round],
                                   (steps, len(alive)))
        bottleneck = float(np.minimum(self.uplink[alive], self.downlink[alive]).min())
        return all_reduce_seconds(latencies, float(sizes[alive].max()), bottleneck)

    def gossip_round(self, server_round: int, matrix: np.ndarray, alive: Collection[int],
                     sizes: np.ndarray, steps: np.ndarray,
                     control: ControlOutcome | None = None) -> RoundTime:
        """A synchronous gossip round over Π_k: compute, the training exchange, then
        consensus control's gossip-only exchanges or all-reduce."""
        members = sorted(alive)
        compute = self.compute.seconds(server_round, steps)
        ready = np.zeros(self.agents)
        ready[members] = compute[members]
        senders, receivers = self._messages(matrix, members)
        total = self.exchange_seconds(server_round, 0, senders, receivers, sizes, ready,
                                      members)
        if control is not None and control.exact:
            total += self.all_reduce(server_round, members, sizes)
        elif control is not None:
            for exchange in range(1, control.steps + 1):
                total += self.exchange_seconds(server_round, exchange, senders, receivers,
                                               sizes, np.zeros(self.agents), members)
        slowest = float(compute[members].max()) if members else 0.0
        return RoundTime(slowest, total - slowest)

    def fedavg_round(self, server_round: int, participants: Collection[int],
                     model_bytes: float, sizes: np.ndarray, steps: np.ndarray) -> RoundTime:
        """A FedAvg round of the sampled `participants`: the model down through the
        server's uplink, local training, the uploads through the server's downlink."""
        members = sorted(participants)
        if not members:
            return RoundTime(0.0, 0.0)
        compute = self.compute.seconds(server_round, steps)[members]
        down_latency, up_latency = draw_latencies(
            self.config.latency, [self.seed, SERVER_LATENCY, server_round],
            (2, self.agents))[:, members]
        server_up = _bandwidth(self.config.server_uplink)
        server_down = _bandwidth(self.config.server_downlink)
        uploads = sizes[members].astype(float)
        download = down_latency + np.maximum(len(members) * model_bytes / server_up,
                                             model_bytes / self.downlink[members])
        upload = up_latency + np.maximum(uploads / self.uplink[members],
                                         uploads.sum() / server_down)
        slowest = float(compute.max())
        return RoundTime(slowest, float((download + compute + upload).max()) - slowest)

    def local_round(self, server_round: int, agents: Collection[int],
                    steps: np.ndarray) -> RoundTime:
        """Agents training alone (FedAvg after its server is lost): compute only."""
        members = sorted(agents)
        compute = self.compute.seconds(server_round, steps)
        return RoundTime(float(compute[members].max()) if members else 0.0, 0.0)
