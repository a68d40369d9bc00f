"""Turns each engine's `RoundReport` into that round's metrics.

The observer sees every agent's published point and reported figures, the way
an omniscient monitor of a real deployment would. Nothing it computes flows
back into training (consensus control, which is defined by reading Ξ², reads
it through its own controller; see DESIGN.md, decision 5). When some agents
attack (the plan names them), every per-agent figure, Ξ² and the average model
are over the honest agents only: the attackers' own models are left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from decentral_bench.engines import stopping
from decentral_bench.engines.base import EventSink, RoundReport
from decentral_bench.engines.timing import RoundTimer
from decentral_bench.experiment.metrics import (
    agent_statistics,
    average_parameters,
    consensus_distance,
)
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.training import evaluate, select_device
from strategies.consensus_control import ControlOutcome

AGENT_METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "minibatch_loss",
                 "grad_norm_sq", "client_time_s")

RoundSink = Callable[[int, dict[str, float]], None]


class Diverged(RuntimeError):
    """The training loss turned NaN or infinite."""


class AverageModelEvaluator:
    """Test loss and accuracy of a parameter set on the scenario's held-out split."""

    def __init__(self, plan: MethodPlan) -> None:
        dataset = plan.dataset
        self.device = select_device(plan.scenario.resources.device)
        self.model = plan.build_model().to(self.device)
        self.features = dataset.test_x.to(self.device, plan.dtype)
        self.labels = dataset.test_y.to(self.device)

    def __call__(self, parameters: Sequence[torch.Tensor]) -> tuple[float, float]:
        return evaluate(self.model, [p.to(self.device) for p in parameters],
                        self.features, self.labels)


class RoundObserver:
    """Computes per-round metrics from the engine's reports and hands them to `sink`.

    Metrics: mean/std/min/max over (honest) agents of their reported losses and
    accuracies; test loss/accuracy of the average model x̄; consensus
    distance Ξ² of the points; how many agents attack; bytes moved; round wall time; the
    round's network when failures change it; with a `network:` section the
    round's simulated time (`sim_time_s` so far, this round's `compute_time_s`,
    `communication_time_s` and their sum `modelled_round_time_s`); on a real
    deployment (`deployed`) the measured wall time beside it
    (`measured_round_time_s`, `measured_time_s` so far). The agents' figures,
    x̄ and Ξ² are over the honest agents only; bytes and times count every agent.
    """

    def __init__(self, plan: MethodPlan, sink: RoundSink,
                 on_event: EventSink | None = None, deployed: bool = False) -> None:
        self.plan = plan
        self.sink = sink
        self.on_event = on_event
        self.deployed = deployed
        self.evaluate_average = AverageModelEvaluator(plan)
        self.timer = RoundTimer(plan) if plan.scenario.network is not None else None
        self.bytes_total = 0
        self.gossip_steps_total = 0
        self.sim_time = 0.0
        self.measured_time = 0.0
        self.previous_lambda2: float | None = None

    def event(self, server_round: int, text: str) -> None:
        """Something worth a line in the run's event log (a failure, a stop)."""
        if self.on_event is not None:
            self.on_event(server_round, text)

    def _control_metrics(self, server_round: int, control: ControlOutcome,
                         after: float) -> dict[str, float]:
        """Ξ² before and after consensus control (the observer's own Ξ² of the reported
        points is the after), the exchanges and the adaptive target."""
        self.gossip_steps_total += control.steps
        metrics = {
            "consensus_distance": control.before,
            "consensus_distance_controlled": after,
            "gossip_steps": float(control.steps),
            "gossip_steps_total": float(self.gossip_steps_total),
        }
        if control.target is not None:
            metrics["consensus_target"] = control.target
        if control.capped:
            self.event(server_round, f"consensus control stopped at max_gossip_steps "
                                     f"({control.steps}) with Ξ² {after:.3g} above its target "
                                     f"{control.target:.3g}")
        return metrics

    def honest(self, report: RoundReport) -> RoundReport:
        """The report without the attackers' points and figures (itself when none)."""
        attackers = self.plan.attackers
        if not attackers:
            return report
        keep = [i for i, agent in enumerate(report.agents) if agent not in attackers]
        rows = torch.as_tensor(keep, dtype=torch.long)
        return replace(report, agents=[report.agents[i] for i in keep],
                       points=[p[rows.to(p.device)] for p in report.points],
                       agent_metrics={agent: figures for agent, figures
                                      in report.agent_metrics.items()
                                      if agent not in attackers})

    def _time_metrics(self, report: RoundReport) -> dict[str, float]:
        """The round's simulated seconds, and on a deployment its measured ones."""
        metrics: dict[str, float] = {}
        if self.timer is not None:
            timed = self.timer(report)
            self.sim_time += timed.total_s
            metrics.update({"sim_time_s": self.sim_time, "compute_time_s": timed.compute_s,
                            "communication_time_s": timed.communication_s,
                            "modelled_round_time_s": timed.total_s})
        if self.deployed:
            self.measured_time += report.wall_time_s
            metrics.update({"measured_round_time_s": report.wall_time_s,
                            "measured_time_s": self.measured_time})
        return metrics

    def observe(self, report: RoundReport) -> None:
        """Measure a finished round, over its honest agents, and hand its metrics to the
        sink. A stop asked for by a signal ends the run here, at the latest
        (`stopping`)."""
        stopping.check()
        timed = self._time_metrics(report)  # attackers compute and send as well
        report = self.honest(report)
        server_round = report.server_round
        for agent, reason in sorted(report.failed.items()):
            self.event(server_round, f"agent {agent} failed: {reason}")
        self.bytes_total += report.bytes_moved
        metrics: dict[str, float] = {
            "round_time_s": report.wall_time_s,
            "lr": self.plan.lr_at(server_round),
            "epochs": server_round * self.plan.epochs_per_round,
            "bytes_moved": float(report.bytes_moved),
            "bytes_moved_total": float(self.bytes_total),
            "router_bytes_moved": float(report.router_bytes),
            "agents_reporting": float(len(report.agents)),
            "agents_failed": float(len(report.failed)),
            **timed,
        }
        if self.plan.attackers:
            metrics["attackers"] = float(len(self.plan.attackers))
        if self.plan.scenario.training.lr_schedule == "step" or report.control is not None:
            metrics["phase"] = float(self.plan.phase(server_round))
        for key, value in report.network.items():
            if key == "round_lambda2":  # logged when the round's Π changes
                if value != self.previous_lambda2:
                    metrics[key] = value
                    self.previous_lambda2 = value
            else:
                metrics[key] = value
        metrics.update(agent_statistics(list(report.agent_metrics.values()), AGENT_METRICS))
        if "grad_norm_sq_mean" in metrics:
            metrics["critical_distance_proxy"] = \
                2.0 * metrics["lr"] ** 2 * metrics["grad_norm_sq_mean"]
        if report.points:
            distance = consensus_distance(report.points)
            metrics["consensus_distance"] = distance
            metrics["consensus_xi"] = math.sqrt(distance)
            if report.control is not None:
                metrics.update(self._control_metrics(server_round, report.control, distance))
            if self.plan.evaluates(server_round):
                mean_model = report.average if report.average is not None \
                    else average_parameters(report.points)
                loss, accuracy = self.evaluate_average(mean_model)
                metrics["average_model_test_loss"] = loss
                metrics["average_model_test_accuracy"] = accuracy
        self.sink(server_round, metrics)
        minibatch_loss = metrics.get("minibatch_loss_mean")
        if minibatch_loss is not None and not math.isfinite(minibatch_loss):
            raise Diverged(f"diverged at round {server_round}")
