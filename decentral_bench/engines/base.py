"""The engine seam: what every engine is given, and what it reports each round.

An engine runs one method of a scenario (a `MethodPlan`) and hands each
finished round to a sink as a `RoundReport`: engine-neutral facts, no Flower
type in sight. The observer turns reports into metrics; runner, tracking and
report never see how the round was computed. Engines: the Flower engine
(`decentral_bench.engines.flower.simulation`, the reference and default) and the
vectorized engine (`decentral_bench.engines.vectorized`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.network.failures import RoundNetwork
from strategies.consensus_control import ControlOutcome

# Each agent's final point: the last published point of every agent (gossip), the
# global model under agent 0 (FedAvg), or every agent's own model (FedAvg after a
# server loss in mode `local`).
FinalParameters = dict[int, list[np.ndarray]]


@dataclass
class RoundReport:
    """One finished round, as an omniscient monitor of the network would see it.

    `points` holds the points the reporting `agents` published this round (after
    consensus control, if any), one tensor per model parameter with the agents
    along the first dimension (in the order of `agents`). `agent_metrics` are the
    figures each agent reported (minibatch loss, squared gradient norm; train/test
    loss and accuracy on evaluation rounds). The points may be the engine's own tensors,
    valid while the sink runs: the vectorized engine writes a later round's state into
    their memory, so a sink that keeps points past its call copies them.
    """

    server_round: int
    agents: list[int]
    points: list[torch.Tensor]
    agent_metrics: dict[int, dict[str, float]]
    failed: dict[int, str] = field(default_factory=dict)  # agent → why its round failed
    bytes_moved: int = 0  # what the modelled network moves (`decentral_bench.network.traffic`)
    router_bytes: int = 0  # what the Flower router moves to simulate it
    network: dict[str, float] = field(default_factory=dict)  # alive agents, edges, λ2 of Π_k
    average: list[torch.Tensor] | None = None  # x̄ when the server holds it (FedAvg)
    control: ControlOutcome | None = None  # consensus control's exchanges, when configured
    wall_time_s: float = 0.0  # the engine's time for the round, measurement excluded
    # What the simulated clock times the round from (`decentral_bench.engines.timing`):
    round_network: RoundNetwork | None = None  # gossip: the round's alive agents and Π_k
    message_bytes: np.ndarray | None = None  # each agent's message size, indexed by agent


def average_model(final: FinalParameters) -> list[np.ndarray]:
    """x̄, the mean of the agents' final models (one model, FedAvg's global one, is its own
    mean), summed in float64 and returned in the models' dtype."""
    models = list(final.values())
    totals = [np.zeros(array.shape, dtype=np.float64) for array in models[0]]
    for model in models:
        for total, array in zip(totals, model, strict=True):
            total += array
    return [(total / len(models)).astype(array.dtype)
            for total, array in zip(totals, models[0], strict=True)]


class RunStopped(Exception):
    """The engine was told to stop before its last round (e.g. `flwr stop`): the run is
    KILLED, as after Ctrl-C, not FAILED."""


ReportSink = Callable[[RoundReport], None]
EventSink = Callable[[int, str], None]


class Engine(Protocol):
    """Runs one method of a scenario, round by round. `deployed` is True where the rounds
    cross a real network (a deployment's SuperLink): their wall time is then measured
    beside the simulated clock's."""

    name: str
    deployed: bool

    def run(self, plan: MethodPlan, report: ReportSink, on_event: EventSink) -> FinalParameters:
        """Run every round of `plan`, handing each to `report` as it finishes and
        noting events (a server failure, a stop) to `on_event`. Returns the final
        parameters."""
        ...


class RoundClock:
    """Times rounds from the end of the previous round's report to this round's."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def lap(self) -> float:
        """Seconds since the clock last restarted."""
        return time.perf_counter() - self.started

    def restart(self) -> None:
        self.started = time.perf_counter()


def stack_points(points: list[list[np.ndarray]]) -> list[torch.Tensor]:
    """Per-agent parameter lists → one tensor per parameter, agents along dimension 0."""
    if not points:
        return []
    return [torch.from_numpy(np.stack(layers)) for layers in zip(*points, strict=True)]
