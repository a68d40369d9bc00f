"""Turns what the network tap saw in a round into that round's metrics.

The observer sees every agent's published parameters and reported metrics,
the way an omniscient monitor of a real deployment would. Nothing it
computes flows back into training.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from decentral_bench.arrays import from_record
from decentral_bench.data import load_dataset, partition_indices
from decentral_bench.metrics import agent_statistics, average_parameters, consensus_distance
from decentral_bench.models import build_model
from decentral_bench.network_tap import Traffic
from decentral_bench.plan import MethodPlan
from decentral_bench.training import evaluate, from_numpy, select_device
from strategies.gossip_router import METRICS_KEY, PUBLISHED_KEY

AGENT_METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "minibatch_loss",
                 "client_time_s")

RoundSink = Callable[[int, dict[str, float]], None]
EventSink = Callable[[int, str], None]


class Diverged(RuntimeError):
    """The training loss turned NaN or infinite."""


class AverageModelEvaluator:
    """Test loss and accuracy of a parameter set on the scenario's held-out split (server side)."""

    def __init__(self, plan: MethodPlan) -> None:
        dataset = load_dataset(plan.scenario.dataset, plan.seed)
        self.device = select_device(plan.scenario.resources.device)
        self.model = build_model(plan.scenario.model, dataset.input_shape, dataset.num_classes,
                                 plan.seed).to(self.device)
        self.features = dataset.test_x.to(self.device)
        self.labels = dataset.test_y.to(self.device)

    def __call__(self, arrays: Sequence[np.ndarray]) -> tuple[float, float]:
        return evaluate(self.model, from_numpy(list(arrays), self.device),
                        self.features, self.labels)


def epochs_per_round(plan: MethodPlan) -> float:
    """Passes over its own data an average agent makes per round."""
    if not plan.is_gossip:
        return float(plan.local_epochs)
    parts = partition_indices(plan.scenario.dataset, plan.seed, plan.agents)
    mean_size = sum(len(part) for part in parts) / len(parts)
    return plan.local_steps * min(plan.batch_size, mean_size) / mean_size


class RoundObserver:
    """Computes per-round metrics from the tap and hands them to `sink`.

    Metrics: mean/std/min/max over agents of their reported losses and
    accuracies; test loss/accuracy of the average model x̄; consensus
    distance Ξ² of the published parameters; bytes moved; round wall time.
    """

    def __init__(self, plan: MethodPlan, sink: RoundSink,
                 on_event: EventSink | None = None) -> None:
        self.plan = plan
        self.sink = sink
        self.on_event = on_event
        self.agent_of_node: dict[int, int] = {}
        self.evaluate_average = AverageModelEvaluator(plan)
        self.round_started = time.perf_counter()
        self.bytes_total = 0
        self.previous_lambda2: float | None = None
        self.epochs_per_round = epochs_per_round(plan)

    def event(self, server_round: int, text: str) -> None:
        """Something worth a line in the run's event log (a failure, a stop)."""
        if self.on_event is not None:
            self.on_event(server_round, text)

    def start(self) -> None:
        """Mark the start of the first round."""
        self.round_started = time.perf_counter()

    def observe(self, server_round: int, traffic: Traffic,
                average: Sequence[np.ndarray] | None = None,
                extra: dict[str, float] | None = None) -> dict[str, float]:
        """Measure a finished round. `average` is x̄ when the strategy already holds it;
        `extra` are the strategy's own figures of the round (alive agents, ...)."""
        round_time = time.perf_counter() - self.round_started
        failed = [reply for reply in traffic.replies if reply.has_error()]
        for reply in failed:
            agent = self.agent_of_node.get(reply.metadata.src_node_id, "?")
            self.event(server_round, f"agent {agent} failed: {reply.error.reason}")
        replies = [reply for reply in traffic.replies
                   if not reply.has_error() and PUBLISHED_KEY in reply.content]
        reports = [dict(reply.content[METRICS_KEY]) for reply in replies]
        published = [from_record(reply.content[PUBLISHED_KEY], writable=False)
                     for reply in replies]
        self.bytes_total += traffic.bytes_moved
        metrics: dict[str, float] = {
            "round_time_s": round_time,
            "lr": self.plan.lr_at(server_round),
            "epochs": server_round * self.epochs_per_round,
            "bytes_moved": float(traffic.bytes_moved),
            "bytes_moved_total": float(self.bytes_total),
            "agents_reporting": float(len(replies)),
            "agents_failed": float(len(failed)),
        }
        for key, value in (extra or {}).items():
            if key == "round_lambda2":  # logged when the round's Π changes
                if value != self.previous_lambda2:
                    metrics[key] = value
                    self.previous_lambda2 = value
            else:
                metrics[key] = value
        metrics.update(agent_statistics(reports, AGENT_METRICS))
        if published:
            metrics["consensus_distance"] = consensus_distance(published)
            if self.plan.evaluates(server_round):
                mean_model = average if average is not None else average_parameters(published)
                loss, accuracy = self.evaluate_average(mean_model)
                metrics["average_model_test_loss"] = loss
                metrics["average_model_test_accuracy"] = accuracy
        self.sink(server_round, metrics)
        loss = metrics.get("minibatch_loss_mean")
        if loss is not None and not math.isfinite(loss):
            raise Diverged(f"diverged at round {server_round}")
        self.round_started = time.perf_counter()
        return metrics
