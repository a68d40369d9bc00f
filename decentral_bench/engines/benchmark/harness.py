"""Benchmark harness: the engines against loops doing the same maths, workload by workload.

For each workload it runs its paths one after the other in one process (see
`benchmark.paths`): all must end with the same parameters (1e-5); the figures
say what each engine costs on top of the maths.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from decentral_bench.engines.base import FinalParameters
from decentral_bench.engines.benchmark.paths import RUNNERS, PathFigures
from decentral_bench.engines.benchmark.workloads import WORKLOADS, build_plan

TOLERANCE = 1e-5
TABLE_COLUMNS = ("workload", "agents", "steps/round", "path", "wall s", "start-up s", "s/round",
                 "samples/s", "peak MB", "vs flower", "same params")


@dataclass
class WorkloadResult:
    workload: str
    agents: int
    rounds: int
    steps_per_round: int
    device: str
    paths: dict[str, PathFigures]
    reference_path: str                    # the path the others' parameters are compared to
    max_parameter_difference: dict[str, float]
    parameters_match: bool

    def table_rows(self) -> list[tuple[str, ...]]:
        """One row per path, in `TABLE_COLUMNS`."""
        rows: list[tuple[str, ...]] = []
        for path, figures in self.paths.items():
            speedup = self.ratio("flower", path)
            difference = self.max_parameter_difference.get(path)
            rows.append((self.workload, str(self.agents), str(self.steps_per_round), path,
                         f"{figures.wall_s:.1f}", f"{figures.startup_s:.1f}",
                         f"{figures.round_s:.4f}", f"{figures.samples_per_s:.0f}",
                         f"{figures.peak_memory_mb:.0f}",
                         "" if speedup is None else f"{speedup:.1f}×",
                         "reference" if difference is None else
                         f"{difference <= TOLERANCE} ({difference:.1e})"))
        return rows

    def ratio(self, numerator: str, denominator: str) -> float | None:
        """round_s of one path over another's (None unless both ran)."""
        if numerator not in self.paths or denominator not in self.paths:
            return None
        return self.paths[numerator].round_s / self.paths[denominator].round_s


def _difference(got: FinalParameters, want: FinalParameters) -> float:
    return max(float(np.max(np.abs(a - b)))
               for agent in want for a, b in zip(got[agent], want[agent], strict=True))


def run_workload(workload: str, rounds: int | None = None, train_samples: int | None = None,
                 cpus_per_agent: int = 1, paths: tuple[str, ...] | None = None,
                 device: str = "auto") -> WorkloadResult:
    """The workload's paths (all it lists, or those of `paths` it lists), in the order
    plain, funcloop, vectorized, deterministic, flower, and their comparison."""
    plan = build_plan(workload, rounds, train_samples, cpus_per_agent, device)
    order = ("plain", "funcloop", "vectorized", "deterministic", "flower")
    chosen = [name for name in order
              if name in WORKLOADS[workload].paths and (paths is None or name in paths)]
    measured: dict[str, PathFigures] = {}
    finals: dict[str, FinalParameters] = {}
    for name in chosen:
        measured[name], finals[name] = RUNNERS[name](plan)
    reference = chosen[0]
    differences = {name: _difference(finals[name], finals[reference]) for name in chosen[1:]}
    used = "cuda" if "cuda" in device or (device == "auto" and torch.cuda.is_available()) \
        else "cpu"
    return WorkloadResult(
        workload=workload, agents=plan.agents, rounds=plan.rounds,
        steps_per_round=plan.local_steps, device=used, paths=measured,
        reference_path=reference, max_parameter_difference=differences,
        parameters_match=all(value <= TOLERANCE for value in differences.values()))


def environment() -> dict[str, str]:
    """The versions and the machine the figures were taken with."""
    return {"python": platform.python_version(), "torch": torch.__version__,
            "flwr": version("flwr"), "cpus": str(len(os.sched_getaffinity(0))),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "torch_threads": str(torch.get_num_threads())}


def write_json(results: list[WorkloadResult], path: Path) -> None:
    """The figures, for comparing versions."""
    rows = []
    for result in results:
        row = asdict(result)
        row["speedup_vectorized_over_flower"] = result.ratio("flower", "vectorized")
        row["vectorized_over_funcloop"] = result.ratio("vectorized", "funcloop")
        row["flower_over_plain"] = result.ratio("flower", "plain")
        row["deterministic_over_vectorized"] = result.ratio("deterministic", "vectorized")
        rows.append(row)
    path.write_text(json.dumps({"environment": environment(), "results": rows}, indent=2))
