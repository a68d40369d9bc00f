"""Benchmark harness: the engines against loops doing the same maths, workload by workload.

For each workload it runs its paths, each in a process of its own, interleaved round
by round (see `benchmark.processes` and `benchmark.paths`): all must end with the same
parameters (1e-5); the figures say what each engine costs on top of the maths, in time
(also as a multiple of the least time the machine's rates allow, `benchmark.machine`)
and in memory (its peak, per agent and in stacks: one stack is every agent's copy of
the model's parameters).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import torch

from decentral_bench.engines.benchmark.machine import RoundWork, round_work
from decentral_bench.engines.benchmark.paths import PathFigures
from decentral_bench.engines.benchmark.processes import PathJob, max_difference, run_paths
from decentral_bench.engines.benchmark.workloads import WORKLOADS, build_plan

TOLERANCE = 1e-5
ORDER = ("plain", "funcloop", "vectorized", "deterministic", "flower")
MINIMAL = "funcloop"  # the minimal program, the engines' memory and time are set against
TABLE_COLUMNS = ("workload", "agents", "path", "s/round", "× limit", "start-up s", "peak MB",
                 "MB/agent", "stacks", "vs flower", "÷ minimal", "same params")


@dataclass
class WorkloadResult:
    workload: str
    agents: int
    rounds: int
    steps_per_round: int
    device: str
    interleaved: bool
    stack_mb: float                        # one stack: every agent's parameters
    work: RoundWork                        # what a round computes and moves at least
    paths: dict[str, PathFigures]
    reference_path: str                    # the path the others' parameters are compared to
    max_parameter_difference: dict[str, float]
    parameters_match: bool

    def table_rows(self) -> list[tuple[str, ...]]:
        """One row per path, in `TABLE_COLUMNS`."""
        rows: list[tuple[str, ...]] = []
        for path, figures in self.paths.items():
            speedup = self.ratio("flower", path)
            against_minimal = self.ratio(path, MINIMAL)
            memory_against_minimal = self.memory_ratio(path, MINIMAL)
            difference = self.max_parameter_difference.get(path)
            rows.append((
                self.workload, str(self.agents), path, f"{figures.round_s:.4f}",
                f"{figures.round_s / figures.limit_s:.1f}" if figures.limit_s else "",
                f"{figures.startup_s:.1f}", f"{figures.peak_memory_mb:.0f}",
                f"{figures.peak_memory_mb / self.agents:.2f}",
                f"{figures.peak_memory_mb / self.stack_mb:.1f}",
                "" if speedup is None else f"{speedup:.1f}×",
                "" if against_minimal is None or memory_against_minimal is None or
                path == MINIMAL else f"{against_minimal:.2f} / {memory_against_minimal:.2f}",
                "reference" if difference is None else
                f"{difference <= TOLERANCE} ({difference:.1e})"))
        return rows

    def ratio(self, numerator: str, denominator: str) -> float | None:
        """round_s of one path over another's (None unless both ran)."""
        if numerator not in self.paths or denominator not in self.paths:
            return None
        return self.paths[numerator].round_s / self.paths[denominator].round_s

    def memory_ratio(self, numerator: str, denominator: str) -> float | None:
        """Peak memory of one path over another's (None unless both ran)."""
        if numerator not in self.paths or denominator not in self.paths:
            return None
        return self.paths[numerator].peak_memory_mb / self.paths[denominator].peak_memory_mb

    def notes(self) -> list[str]:
        """What the round's least time is made of, and what the paths decided."""
        lines = [f"{self.workload}: {self.steps_per_round} step(s) a round, which computes "
                 f"{self.work.gflop:.3g} GFLOP and moves at least {self.work.traffic_gb:.3g} "
                 f"GB; one stack is {self.stack_mb:.0f} MB; paths "
                 f"{'interleaved round by round' if self.interleaved else 'one after another'}"
                 f"; ÷ minimal: time / peak memory over the {MINIMAL} path's"]
        for path, figures in self.paths.items():
            lines.append(f"  {path}: limit {figures.limit_s:.4f} s/round at "
                         f"{figures.bandwidth_gb_s:.1f} GB/s and {figures.gflop_s:.0f} "
                         f"GFLOP/s measured just before it")
            lines += [f"  {path}: {note}" for note in figures.notes]
        return lines


def run_workload(workload: str, rounds: int | None = None, train_samples: int | None = None,
                 cpus_per_agent: int = 1, paths: tuple[str, ...] | None = None,
                 device: str = "auto") -> WorkloadResult:
    """The workload's paths (all it lists, or those of `paths` it lists), in the order
    plain, funcloop, vectorized, deterministic, flower, and their comparison."""
    plan = build_plan(workload, rounds, train_samples, cpus_per_agent, device)
    chosen = [name for name in ORDER
              if name in WORKLOADS[workload].paths and (paths is None or name in paths)]
    interleaved = WORKLOADS[workload].interleaved
    with tempfile.TemporaryDirectory(prefix="decentral-bench-") as folder:
        jobs = [PathJob(name, workload, rounds, train_samples, cpus_per_agent, device,
                        Path(folder)) for name in chosen]
        measured = run_paths(jobs, interleaved)
        differences = {job.path: max_difference(job, jobs[0]) for job in jobs[1:]}
    used = "cuda" if "cuda" in device or (device == "auto" and torch.cuda.is_available()) \
        else "cpu"
    parameters = sum(array.size for array in plan.initial_parameters)
    return WorkloadResult(
        workload=workload, agents=plan.agents, rounds=plan.rounds,
        steps_per_round=plan.local_steps, device=used, interleaved=interleaved,
        stack_mb=4 * parameters * plan.agents / 2**20, work=round_work(plan),
        paths=measured, reference_path=chosen[0], max_parameter_difference=differences,
        parameters_match=all(value <= TOLERANCE for value in differences.values()))


def environment() -> dict[str, str]:
    """The versions and the machine the figures were taken with."""
    return {"python": platform.python_version(), "torch": torch.__version__,
            "flwr": version("flwr"), "cpus": str(len(os.sched_getaffinity(0))),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "torch_threads": str(torch.get_num_threads()),
            "load_average": " ".join(f"{load:.1f}" for load in os.getloadavg())}


def write_json(results: list[WorkloadResult], path: Path) -> None:
    """The figures, for comparing versions."""
    rows = []
    for result in results:
        row = asdict(result)
        row["speedup_vectorized_over_flower"] = result.ratio("flower", "vectorized")
        row["vectorized_over_funcloop"] = result.ratio("vectorized", MINIMAL)
        row["vectorized_peak_over_funcloop"] = result.memory_ratio("vectorized", MINIMAL)
        row["flower_over_plain"] = result.ratio("flower", "plain")
        row["deterministic_over_vectorized"] = result.ratio("deterministic", "vectorized")
        rows.append(row)
    path.write_text(json.dumps({"environment": environment(), "results": rows}, indent=2))
