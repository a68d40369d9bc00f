"""Benchmark harness: the Flower path against a plain PyTorch loop doing the same maths.

For each workload it runs, one after the other in one process, (b) the
matrix-form loop of `decentral_bench.reference` and (a) the Flower simulation
of the same scenario: same agents, partitions, minibatches, update rule and
mixing. Both must end with the same parameters; the figures say what the
framework costs on top of the maths.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from decentral_bench.data import partition_indices, steps_per_epoch
from decentral_bench.engine import RoundReport
from decentral_bench.flower.simulation import simulate
from decentral_bench.plan import MethodPlan
from decentral_bench.reference import reference_gossip
from decentral_bench.scenario import parse


def _scenario(name: str, dataset: dict, model: dict, agents: int, batch_size: int,
              lr: float, local_steps: int | str, rounds: int) -> dict:
    return {
        "name": name, "dataset": dataset, "model": model,
        "topology": {"kind": "ring" if agents > 5 else "complete", "agents": agents},
        # Agents evaluate only after the last round, which the figures leave out, on a
        # small subset: the harness times rounds, not evaluation.
        "training": {"rounds": rounds, "batch_size": batch_size, "lr": lr,
                     "local_steps": local_steps, "eval_every": 10_000, "eval_samples": 256},
        "methods": [{"name": "CDSGD", "algorithm": "cdsgd"}],
    }


DIGITS = {"name": "digits", "partition": "iid"}
FASHION = {"name": "fashion_mnist", "partition": "iid"}
MLP = {"name": "mlp", "hidden": [64]}
CNN = {"name": "cnn_paper"}
EPOCH = "epoch"  # local_steps placeholder: one pass over the agent's data per round

WORKLOADS: dict[str, dict] = {
    "digits-mlp-5": _scenario("digits-mlp-5", DIGITS, MLP, 5, 32, 0.1, 1, 40),
    "digits-mlp-32": _scenario("digits-mlp-32", DIGITS, MLP, 32, 32, 0.1, 1, 40),
    "fmnist-cnn-5-step": _scenario("fmnist-cnn-5-step", FASHION, CNN, 5, 128, 0.01, 1, 12),
    "fmnist-cnn-16-step": _scenario("fmnist-cnn-16-step", FASHION, CNN, 16, 128, 0.01, 1, 12),
    "fmnist-cnn-5-epoch": _scenario("fmnist-cnn-5-epoch", FASHION, CNN, 5, 128, 0.01, EPOCH, 4),
    "fmnist-cnn-16-epoch": _scenario("fmnist-cnn-16-epoch", FASHION, CNN, 16, 128, 0.01, EPOCH,
                                     4),
}


@dataclass
class PathFigures:
    """What one path (Flower or the plain loop) did on one workload."""

    wall_s: float
    startup_s: float
    round_s: float          # median time per round after the first (warm-up) round
    samples_per_s: float
    peak_rss_mb: float
    round_times: list[float] = field(default_factory=list)


@dataclass
class WorkloadResult:
    workload: str
    agents: int
    rounds: int
    steps_per_round: int
    flower: PathFigures
    plain: PathFigures
    ratio: float            # flower.round_s / plain.round_s
    overhead_per_round_s: float
    max_parameter_difference: float
    parameters_match: bool


def build_plan(workload: str, rounds: int | None = None, train_samples: int | None = None,
               cpus_per_agent: int = 1) -> MethodPlan:
    """The scenario of a workload, with one epoch per round resolved to a step count."""
    data = json.loads(json.dumps(WORKLOADS[workload]))
    data["resources"] = {"cpus_per_agent": cpus_per_agent}
    if rounds is not None:
        data["training"]["rounds"] = rounds
    if train_samples is not None and data["dataset"]["name"] != "digits":
        data["dataset"]["train_samples"] = train_samples
    if data["training"]["local_steps"] == EPOCH:
        probe = data | {"training": {**data["training"], "local_steps": 1}}
        scenario = parse(probe, workload)
        parts = partition_indices(scenario.dataset, scenario.training.seed,
                                  scenario.topology.agents)
        data["training"]["local_steps"] = steps_per_epoch(min(len(p) for p in parts),
                                                          data["training"]["batch_size"])
    return MethodPlan.of(parse(data, workload), "CDSGD")


def _actors_peak_rss_mb() -> float:
    """Peak resident memory of the live Flower actor processes, summed (Linux /proc)."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if "ray::ClientAppA" in text.split("\n", 1)[0]:
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024


def _self_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _figures(wall: float, startup: float, round_times: list[float], samples_per_round: int,
             peak_rss_mb: float) -> PathFigures:
    # Steady state: not the first round (warm-up), not the last (the Flower path evaluates
    # every agent on its data and the test set after the last round; the loop does not).
    steady = round_times[1:-1] or round_times
    round_s = float(np.median(steady))
    return PathFigures(wall_s=wall, startup_s=startup, round_s=round_s,
                       samples_per_s=samples_per_round / round_s, peak_rss_mb=peak_rss_mb,
                       round_times=[round(t, 4) for t in round_times])


def run_plain(plan: MethodPlan) -> tuple[PathFigures, dict]:
    """(b): the matrix-form loop, timed round by round."""
    started = time.perf_counter()
    round_times: list[float] = []
    final = reference_gossip(plan, on_round=round_times.append)
    wall = time.perf_counter() - started
    samples = plan.agents * plan.local_steps * plan.batch_size
    return _figures(wall, wall - sum(round_times), round_times, samples,
                    _self_peak_rss_mb()), final


def run_flower(plan: MethodPlan) -> tuple[PathFigures, dict]:
    """(a): the Flower simulation, timed by the engine round by round."""
    round_times: list[float] = []
    first_round_end: list[float] = []
    actor_rss: list[float] = []

    def sink(report: RoundReport) -> None:
        round_times.append(report.wall_time_s)
        if report.server_round == 1:
            first_round_end.append(time.perf_counter())
        if report.server_round == plan.rounds:
            actor_rss.append(_actors_peak_rss_mb())

    started = time.perf_counter()
    final = simulate(plan, sink)
    wall = time.perf_counter() - started
    startup = first_round_end[0] - round_times[0] - started
    samples = plan.agents * plan.local_steps * plan.batch_size
    return _figures(wall, startup, round_times, samples,
                    _self_peak_rss_mb() + (actor_rss[0] if actor_rss else 0.0)), final


def run_workload(workload: str, rounds: int | None = None, train_samples: int | None = None,
                 cpus_per_agent: int = 1) -> WorkloadResult:
    """Both paths on one workload, plain loop first, and their comparison."""
    plan = build_plan(workload, rounds, train_samples, cpus_per_agent)
    plain, plain_final = run_plain(plan)
    flower, flower_final = run_flower(plan)
    difference = max(float(np.max(np.abs(a - b)))
                     for agent in plain_final
                     for a, b in zip(flower_final[agent], plain_final[agent], strict=True))
    return WorkloadResult(
        workload=workload, agents=plan.agents, rounds=plan.rounds,
        steps_per_round=plan.local_steps, flower=flower, plain=plain,
        ratio=flower.round_s / plain.round_s,
        overhead_per_round_s=flower.round_s - plain.round_s,
        max_parameter_difference=difference, parameters_match=difference <= 1e-5)


def environment() -> dict[str, str]:
    """The versions and the machine the figures were taken with."""
    return {"python": platform.python_version(), "torch": torch.__version__,
            "flwr": version("flwr"), "cpus": str(len(os.sched_getaffinity(0))),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "torch_threads": str(torch.get_num_threads())}


def write_json(results: list[WorkloadResult], path: Path) -> None:
    """The figures, for comparing versions."""
    path.write_text(json.dumps({"environment": environment(),
                                "results": [asdict(result) for result in results]}, indent=2))
