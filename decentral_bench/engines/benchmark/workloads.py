"""The benchmark's workloads: small scenarios of one CDSGD method, and which paths run them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from decentral_bench.experiment.data import partition_indices, steps_per_epoch
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.scenario import parse

PATHS = ("flower", "plain", "vectorized", "deterministic", "funcloop")
EPOCH = "epoch"  # local_steps placeholder: one pass over the agent's data per round


@dataclass(frozen=True)
class Workload:
    """A scenario (as YAML data), the paths that time it, and whether they run interleaved
    (all at once, taking turns round by round) or, too large for that, one after another."""

    scenario: dict[str, Any]
    paths: tuple[str, ...] = PATHS
    interleaved: bool = True


def _workload(name: str, dataset: str, model: dict, agents: int, batch_size: int, lr: float,
              local_steps: int | str, rounds: int, paths: tuple[str, ...] = PATHS,
              interleaved: bool = True) -> Workload:
    return Workload({
        "name": name, "dataset": {"name": dataset, "partition": "iid"}, "model": model,
        "topology": {"kind": "ring" if agents > 5 else "complete", "agents": agents},
        # Agents evaluate only after the last round, which the figures leave out, on a
        # small subset: the harness times rounds, not evaluation.
        "training": {"rounds": rounds, "batch_size": batch_size, "lr": lr,
                     "local_steps": local_steps, "eval_every": 10_000, "eval_samples": 256},
        "methods": [{"name": "CDSGD", "algorithm": "cdsgd"}],
    }, paths, interleaved)


MLP = {"name": "mlp", "hidden": [64]}
CNN = {"name": "cnn_paper"}
# A per-agent path at this size would take hours.
BATCHED = ("vectorized", "deterministic", "funcloop")

WORKLOADS: dict[str, Workload] = {
    "digits-mlp-5": _workload("digits-mlp-5", "digits", MLP, 5, 32, 0.1, 1, 40),
    "digits-mlp-32": _workload("digits-mlp-32", "digits", MLP, 32, 32, 0.1, 1, 40),
    "digits-mlp-64": _workload("digits-mlp-64", "digits", MLP, 64, 16, 0.1, 1, 40),
    "fmnist-mlp-32": _workload("fmnist-mlp-32", "fashion_mnist", MLP, 32, 32, 0.1, 1, 40),
    "fmnist-mlp-64": _workload("fmnist-mlp-64", "fashion_mnist", MLP, 64, 32, 0.1, 1, 40),
    "fmnist-mlp-1024": _workload("fmnist-mlp-1024", "fashion_mnist", MLP, 1024, 32, 0.1, 1,
                                 20, BATCHED),
    # One after another: the minimal program alone holds about 10 stacks of 0.83 GB.
    "fmnist-mlp-4096": _workload("fmnist-mlp-4096", "fashion_mnist", MLP, 4096, 32, 0.1, 1,
                                 10, BATCHED, interleaved=False),
    # The engine alone: the minimal program would hold about 16 GB.
    "fmnist-mlp-8192": _workload("fmnist-mlp-8192", "fashion_mnist", MLP, 8192, 32, 0.1, 1,
                                 6, ("vectorized",), interleaved=False),
    "fmnist-cnn-5-step": _workload("fmnist-cnn-5-step", "fashion_mnist", CNN, 5, 128, 0.01, 1,
                                   12),
    "fmnist-cnn-16-step": _workload("fmnist-cnn-16-step", "fashion_mnist", CNN, 16, 128, 0.01,
                                    1, 12),
    "fmnist-cnn-5-epoch": _workload("fmnist-cnn-5-epoch", "fashion_mnist", CNN, 5, 128, 0.01,
                                    EPOCH, 4),
    "fmnist-cnn-16-epoch": _workload("fmnist-cnn-16-epoch", "fashion_mnist", CNN, 16, 128,
                                     0.01, EPOCH, 4),
}
DEFAULT = tuple(name for name in WORKLOADS if name.startswith("digits"))


def build_plan(workload: str, rounds: int | None = None, train_samples: int | None = None,
               cpus_per_agent: int = 1, device: str = "auto") -> MethodPlan:
    """The scenario of a workload, with one epoch per round resolved to a step count."""
    data = json.loads(json.dumps(WORKLOADS[workload].scenario))
    data["resources"] = {"cpus_per_agent": cpus_per_agent, "device": device}
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
